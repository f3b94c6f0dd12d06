"""The quote rules 1-10, one group per rule, plus the booking snapshot they read."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from services.quoting.booking import SnapshotError
from services.quoting.booking_read import parse_snapshot
from services.quoting.quote import Decision, QuoteError, RiskFlag
from tests.quote_fixtures import (
    CANCELLED_AT,
    booking,
    item,
    notice,
    paid,
    policies,
    policy,
    quote,
    refunded,
)

KAYAK = policy("kayak", skus=["kayak"])
DEFAULT = policy("default", default=True, tiers=[(24, 100), (0, 0)])


def line_of(q, line_id: str = "1"):
    return next(ln for ln in q.lines if ln.line_id == line_id)


# Rule 1: which policy governs a line


def test_rule1_first_policy_in_file_order_wins_when_two_match_the_sku() -> None:
    book = policies(policy("first", skus=["kayak"]), policy("second", skus=["kayak"]))
    q = quote(booking([item("kayak", "100.00")]), book)
    assert line_of(q).policy_id == "first"
    assert q.policy_ids == ("first",)


def test_rule1_item_id_match_selects_the_policy_and_yaml_ints_match_text_ids() -> None:
    book = policies(policy("by-sku", skus=["bike"]), policy("by-item", item_ids=[12]))
    q = quote(booking([item("kayak", "100.00", item_id="12")]), book)
    assert line_of(q).policy_id == "by-item"


def test_rule1_file_order_decides_between_an_item_id_match_and_a_sku_match() -> None:
    book = policies(policy("by-item", item_ids=[12]), policy("by-sku", skus=["kayak"]))
    q = quote(booking([item("kayak", "100.00", item_id="12")]), book)
    assert line_of(q).policy_id == "by-item"


def test_rule1_unmatched_line_gets_the_default_policy_even_if_listed_first() -> None:
    book = policies(DEFAULT, KAYAK)
    snapshot = booking([item("kayak", "100.00", line_id="1"),
                        item("souvenir", "20.00", line_id="2")])
    q = quote(snapshot, book)
    assert line_of(q, "1").policy_id == "kayak"
    assert line_of(q, "2").policy_id == "default"
    assert q.policy_ids == ("kayak", "default")


def test_rule1_no_matching_and_no_default_policy_fails_naming_the_line() -> None:
    snapshot = booking([item("kayak", "100.00", line_id="1"),
                        item("souvenir", "20.00", item_id="77", line_id="2")])
    with pytest.raises(QuoteError) as caught:
        quote(snapshot, policies(KAYAK))
    message = str(caught.value)
    assert "line 2" in message and "souvenir" in message and "77" in message


# Rule 2: notice hours choose the tier


@pytest.mark.parametrize(
    ("hours", "percent", "refund"),
    [
        ("48", "100", "100.00"),
        ("47.99", "50", "50.00"),
        ("24", "50", "50.00"),
        ("23.99", "0", "0.00"),
        ("0.01", "0", "0.00"),
        ("200", "100", "100.00"),
    ],
)
def test_rule2_tier_is_the_largest_min_notice_not_above_the_notice(
    hours: str, percent: str, refund: str
) -> None:
    q = quote(booking([item("kayak", "100.00", hours=hours)]), policies(KAYAK))
    line = line_of(q)
    assert line.percent == percent
    assert q.amount(line.refund) == refund
    assert line.notice_hours == str(Decimal(hours).quantize(Decimal("0.01")))


def test_rule2_notice_hours_are_exact_for_fractional_seconds() -> None:
    # 0.0001 h = 0.36 s; float seconds would make 0.36 s slightly less than 0.0001 h.
    book = policies(policy("p", skus=["kayak"], tiers=[("0.0001", 100), (0, 10)]))
    start = notice(1)
    cancelled = start - timedelta(microseconds=360_000)
    q = quote(booking([item("kayak", "100.00", start=start)]), book, cancelled)
    assert line_of(q).percent == "100"


def test_rule2_shown_notice_hours_never_round_up_across_a_tier_boundary() -> None:
    start = notice(48)
    cancelled = CANCELLED_AT + timedelta(seconds=10)  # 47.9972 h of notice
    q = quote(booking([item("kayak", "100.00", start=start)]), policies(KAYAK), cancelled)
    assert line_of(q).percent == "50"
    assert line_of(q).notice_hours == "47.99"


@pytest.mark.parametrize("hours", ["0", "-1", "-72"])
def test_rule2_line_already_started_gets_zero_even_when_the_zero_tier_pays(hours: str) -> None:
    book = policies(policy("generous", skus=["kayak"], tiers=[(0, 100)]))
    q = quote(booking([item("kayak", "100.00", hours=hours)]), book)
    assert line_of(q).percent == "0"
    assert line_of(q).reason == "already started"
    assert q.total_refund == 0


def test_rule2_line_one_second_before_its_start_is_not_started() -> None:
    book = policies(policy("generous", skus=["kayak"], tiers=[(0, 100)]))
    start = CANCELLED_AT + timedelta(seconds=1)
    q = quote(booking([item("kayak", "100.00", start=start)]), book)
    assert line_of(q).percent == "100"


def test_rule2_lines_with_different_starts_and_policies_get_their_own_tiers() -> None:
    charter = policy("charter", skus=["charter"], tiers=[(168, 100), (72, 25), (0, 0)])
    snapshot = booking([
        item("kayak", "100.00", hours=72, line_id="1"),
        item("kayak", "100.00", hours=30, line_id="2"),
        item("charter", "400.00", hours=100, line_id="3"),
        item("souvenir", "20.00", hours=10, line_id="4"),
    ])
    q = quote(snapshot, policies(KAYAK, charter, DEFAULT))
    assert [ln.percent for ln in q.lines] == ["100", "50", "25", "0"]
    assert [q.amount(ln.refund) for ln in q.lines] == ["100.00", "50.00", "100.00", "0.00"]
    assert q.amount(q.entitlement) == "250.00"


# Rule 3: non-refundable skus


def test_rule3_non_refundable_sku_gets_zero_with_full_notice() -> None:
    book = policies(policy("kayak", skus=["kayak", "photos"], non_refundable=["photos"]))
    snapshot = booking([item("kayak", "100.00", line_id="1"),
                        item("photos", "30.00", "1.50", line_id="2")])
    q = quote(snapshot, book)
    photos = line_of(q, "2")
    assert (photos.percent, photos.refund, photos.tax_refund) == ("0", 0, 0)
    assert photos.reason == "non-refundable"
    assert line_of(q, "1").percent == "100"


def test_rule3_non_refundable_list_of_another_policy_does_not_apply() -> None:
    book = policies(policy("strict", skus=["other"], non_refundable=["photos"]),
                    policy("default", default=True))
    q = quote(booking([item("photos", "30.00")]), book)
    assert line_of(q).policy_id == "default"
    assert line_of(q).percent == "100"


# Rule 4: waivers


def test_rule4_waiver_replaces_percent_of_every_line_of_its_policy() -> None:
    book = policies(policy("kayak", skus=["kayak", "photos"], non_refundable=["photos"],
                           fee="10.00", waivers={"WEATHER": 100}))
    snapshot = booking([
        item("kayak", "100.00", hours=30, line_id="1"),  # 50 % tier without the waiver
        item("photos", "31.50", "1.50", line_id="2"),  # non-refundable
        item("kayak", "50.00", hours=-2, line_id="3"),  # already started
    ])
    q = quote(snapshot, book, waiver="WEATHER")
    assert [ln.percent for ln in q.lines] == ["100", "100", "100"]
    assert {ln.reason for ln in q.lines} == {"waiver WEATHER"}
    assert q.fee == 0
    assert q.amount(q.total_refund) == "181.50"


def test_rule4_waiver_percent_may_be_partial_and_code_is_case_insensitive() -> None:
    book = policies(policy("kayak", skus=["kayak"], waivers={"goodwill": 40}))
    q = quote(booking([item("kayak", "100.00", hours=1)]), book, waiver=" Goodwill ")
    assert line_of(q).percent == "40"
    assert q.waiver == "GOODWILL"


def test_rule4_waiver_cancels_only_the_fee_of_the_policy_that_offers_it() -> None:
    book = policies(
        policy("kayak", skus=["kayak"], fee="10.00", waivers={"WEATHER": 100}),
        policy("charter", skus=["charter"], fee="50.00"),
    )
    snapshot = booking([item("kayak", "100.00", hours=1, line_id="1"),
                        item("charter", "200.00", hours=100, line_id="2")])
    without = quote(snapshot, book)
    assert without.amount(without.fee) == "50.00"
    q = quote(snapshot, book, waiver="WEATHER")
    assert line_of(q, "1").percent == "100" and line_of(q, "1").reason == "waiver WEATHER"
    assert line_of(q, "2").reason.endswith("notice tier")
    assert q.amount(q.fee) == "50.00"
    assert q.amount(q.entitlement) == "250.00"


def test_rule4_waiving_the_larger_fee_leaves_the_other_policys_fee() -> None:
    book = policies(
        policy("kayak", skus=["kayak"], fee="10.00"),
        policy("charter", skus=["charter"], fee="50.00", waivers={"OPERATOR": 100}),
    )
    snapshot = booking([item("kayak", "100.00", line_id="1"),
                        item("charter", "200.00", line_id="2")])
    q = quote(snapshot, book, waiver="OPERATOR")
    assert q.amount(q.fee) == "10.00"


def test_rule4_waiver_no_policy_offers_changes_nothing_and_says_so() -> None:
    book = policies(policy("kayak", skus=["kayak"], fee="10.00", waivers={"WEATHER": 100}))
    snapshot = booking([item("kayak", "100.00", hours=30)])
    plain = quote(snapshot, book)
    q = quote(snapshot, book, waiver="STRIKE")
    assert q.total_refund == plain.total_refund
    assert q.fee == plain.fee
    assert any("STRIKE" in reason for reason in q.reasons)


# Rule 5: line refund and line tax refund, rounded half up separately


def test_rule5_item_total_includes_tax_and_tax_is_refunded_at_the_line_percent() -> None:
    q = quote(booking([item("kayak", "105.00", "5.00", hours=30)]), policies(KAYAK))
    line = line_of(q)
    assert (q.amount(line.amount), q.amount(line.tax)) == ("100.00", "5.00")
    assert (q.amount(line.refund), q.amount(line.tax_refund)) == ("50.00", "2.50")


def test_rule5_refund_tax_false_refunds_no_tax() -> None:
    book = policies(policy("kayak", skus=["kayak"], refund_tax=False))
    q = quote(booking([item("kayak", "105.00", "5.00")]), book)
    assert (line_of(q).refund, line_of(q).tax_refund) == (10000, 0)
    assert q.amount(q.entitlement) == "100.00"


def test_rule5_amount_and_tax_round_half_up_separately() -> None:
    # amount 0.25 × 50 % = 12.5 c -> 13; tax 0.05 × 50 % = 2.5 c -> 3; together 16, not 15.
    q = quote(booking([item("kayak", "0.30", "0.05", hours=30)]), policies(KAYAK))
    assert (line_of(q).refund, line_of(q).tax_refund) == (13, 3)
    assert q.entitlement == 16


def test_rule5_rounding_is_per_line_not_per_booking() -> None:
    snapshot = booking([item("kayak", "0.01", hours=30, line_id=str(n)) for n in range(1, 4)])
    q = quote(snapshot, policies(KAYAK))
    assert [ln.refund for ln in q.lines] == [1, 1, 1]  # 0.5 c each rounds up
    assert q.entitlement == 3


def test_rule5_fractional_percent_from_yaml_is_exact() -> None:
    book = policies(policy("kayak", skus=["kayak"], tiers=[(0, "33.3")]))
    q = quote(booking([item("kayak", "10.00")]), book)
    assert line_of(q).refund == 333  # 1000 × 33.3 % = 333.0


@pytest.mark.parametrize(
    ("currency", "total", "tax", "refund", "tax_refund", "shown"),
    [
        ("JPY", "7", "3", 2, 2, "4"),  # 4 × 50 % = 2; 3 × 50 % = 1.5 -> 2
        ("JPY", "15005", "5", 7500, 3, "7503"),  # 7500; 2.5 -> 3
        ("USD", "0.07", "0.03", 2, 2, "0.04"),
        ("KWD", "0.007", "0.003", 2, 2, "0.004"),
        ("KWD", "10.005", "0.005", 5000, 3, "5.003"),
    ],
)
def test_rule5_half_up_rounding_in_each_exponent_class(
    currency: str, total: str, tax: str, refund: int, tax_refund: int, shown: str
) -> None:
    book = policies(KAYAK, currency=currency, auto_approve_max="0", escalate_over="0")
    q = quote(booking([item("kayak", total, tax, hours=30)], currency=currency), book)
    assert (line_of(q).refund, line_of(q).tax_refund) == (refund, tax_refund)
    assert q.amount(q.total_refund) == shown


# Rule 6: fee and entitlement


def test_rule6_fee_is_the_largest_fee_of_the_applied_policies_deducted_once() -> None:
    book = policies(
        policy("kayak", skus=["kayak"], fee="10.00"),
        policy("charter", skus=["charter"], fee="50.00"),
        policy("unused", skus=["zipline"], fee="99.00"),
    )
    snapshot = booking([item("kayak", "100.00", line_id="1"),
                        item("kayak", "100.00", line_id="2"),
                        item("charter", "200.00", line_id="3")])
    q = quote(snapshot, book)
    assert q.amount(q.fee) == "50.00"
    assert q.amount(q.entitlement) == "350.00"


def test_rule6_entitlement_never_goes_below_zero() -> None:
    book = policies(policy("kayak", skus=["kayak"], fee="10.00"))
    q = quote(booking([item("kayak", "100.00", hours=30)]), book)  # 50 % of 100 - 10
    assert q.amount(q.entitlement) == "40.00"
    q = quote(booking([item("kayak", "8.00")]), book)  # 8 - 10
    assert q.entitlement == 0
    assert q.total_refund == 0
    assert q.decision is Decision.DENY


# Rule 7: net paid, retained and the refund


def test_rule7_paid_in_full_refund_is_the_entitlement() -> None:
    q = quote(booking([item("kayak", "100.00", hours=30)]), policies(KAYAK))
    assert (q.paid, q.net_paid, q.retained, q.total_refund) == (10000, 10000, 5000, 5000)


def test_rule7_deposit_is_lost_before_anything_is_refunded() -> None:
    snapshot = booking([item("kayak", "100.00", hours=30)], paid_total="30.00")
    q = quote(snapshot, policies(KAYAK))  # entitlement 50, retained 50 > deposit 30
    assert (q.net_paid, q.retained, q.total_refund) == (3000, 5000, 0)
    assert q.decision is Decision.DENY


def test_rule7_deposit_partly_refunded_when_retained_is_below_it() -> None:
    book = policies(policy("kayak", skus=["kayak"], tiers=[(0, 80)]))
    snapshot = booking([item("kayak", "100.00")], paid_total="30.00")
    q = quote(snapshot, book)  # retained 20 of the 30 paid
    assert q.amount(q.total_refund) == "10.00"


def test_rule7_prior_refund_transactions_reduce_net_paid() -> None:
    snapshot = booking(
        [item("kayak", "100.00", hours=30)],
        transactions=[paid("pi_a", "100.00", day=1), refunded("re_1", "20.00", original="pi_a")],
    )
    q = quote(snapshot, policies(KAYAK))
    assert (q.paid, q.already_refunded, q.net_paid) == (10000, 2000, 8000)
    assert q.amount(q.total_refund) == "30.00"  # 80 paid - 50 retained


def test_rule7_refund_never_exceeds_net_paid() -> None:
    snapshot = booking(
        [item("kayak", "100.00")],
        transactions=[paid("pi_a", "100.00"), refunded("re_1", "70.00")],
    )
    q = quote(snapshot, policies(KAYAK))
    assert q.entitlement == 10000
    assert q.amount(q.total_refund) == "30.00"


def test_rule7_without_transactions_net_paid_is_paid_total() -> None:
    snapshot = booking([item("kayak", "100.00")], paid_total="60.00", transactions=None)
    q = quote(snapshot, policies(KAYAK))
    assert (q.paid, q.already_refunded, q.net_paid) == (6000, 0, 6000)
    assert q.amount(q.total_refund) == "60.00"


# Rule 8: the decision


def test_rule8_nothing_paid_is_skip() -> None:
    q = quote(booking([item("kayak", "100.00")], transactions=[]), policies(KAYAK))
    assert (q.decision, q.total_refund, q.allocations) == (Decision.SKIP, 0, ())
    q = quote(booking([item("kayak", "100.00")], paid_total="0", transactions=None),
              policies(KAYAK))
    assert q.decision is Decision.SKIP


def test_rule8_refunds_already_covering_payments_is_skip() -> None:
    snapshot = booking([item("kayak", "100.00")],
                       transactions=[paid("pi_a", "100.00"), refunded("re_1", "100.00")])
    assert quote(snapshot, policies(KAYAK)).decision is Decision.SKIP


def test_rule8_paid_but_nothing_to_refund_is_deny() -> None:
    q = quote(booking([item("kayak", "100.00", hours=2)]), policies(KAYAK))
    assert (q.decision, q.total_refund) == (Decision.DENY, 0)


def test_rule8_deny_wins_over_risk_flags() -> None:
    flag = RiskFlag("repeat", "third cancellation this month")
    q = quote(booking([item("kayak", "100.00", hours=2)]), policies(KAYAK), risk_flags=(flag,))
    assert q.decision is Decision.DENY


@pytest.mark.parametrize(
    ("total", "decision"),
    [
        ("200.00", Decision.AUTO_APPROVE),  # exactly auto_approve_max
        ("200.01", Decision.NEEDS_APPROVAL),
        ("500.00", Decision.NEEDS_APPROVAL),  # exactly escalate_over
        ("500.01", Decision.NEEDS_APPROVAL),
        ("0.01", Decision.AUTO_APPROVE),
    ],
)
def test_rule8_limits_decide_between_auto_approve_and_needs_approval(
    total: str, decision: Decision
) -> None:
    q = quote(booking([item("kayak", total)]), policies(KAYAK))
    assert q.amount(q.total_refund) == total
    assert q.decision is decision


def test_rule8_refund_over_escalate_over_names_the_escalation_limit() -> None:
    q = quote(booking([item("kayak", "500.01")]), policies(KAYAK))
    assert any("escalation limit 500.00" in reason for reason in q.reasons)
    q = quote(booking([item("kayak", "500.00")]), policies(KAYAK))
    assert not any("escalation" in reason for reason in q.reasons)


def test_rule8_escalate_over_applies_even_when_auto_approve_max_is_higher() -> None:
    book = policies(KAYAK, auto_approve_max="500.00", escalate_over="500.00")
    assert quote(booking([item("kayak", "500.00")]), book).decision is Decision.AUTO_APPROVE
    q = quote(booking([item("kayak", "500.01")]), book)
    assert q.decision is Decision.NEEDS_APPROVAL


def test_rule8_any_risk_flag_needs_approval_and_is_named() -> None:
    flag = RiskFlag("new_customer", "booked 5 minutes before cancelling")
    q = quote(booking([item("kayak", "10.00")]), policies(KAYAK), risk_flags=(flag,))
    assert q.decision is Decision.NEEDS_APPROVAL
    assert "risk: booked 5 minutes before cancelling" in q.reasons
    assert q.risk_flags == (flag,)


# Rule 9: allocation over payments


def test_rule9_allocates_newest_payment_first_by_date_not_list_order() -> None:
    payments = [paid("pi_old", "100.00", day=1), paid("pi_new", "50.00", day=3)]
    q = quote(booking([item("kayak", "150.00")], transactions=payments), policies(KAYAK))
    assert [(a.payment, a.amount, a.method) for a in q.allocations] == [
        ("pi_new", 5000, "stripe"), ("pi_old", 10000, "stripe")]


def test_rule9_each_payment_is_capped_and_the_rest_goes_to_the_next() -> None:
    payments = [paid("pi_old", "100.00", day=1), paid("pi_new", "50.00", day=3)]
    snapshot = booking([item("kayak", "150.00", hours=30)], transactions=payments)
    q = quote(snapshot, policies(KAYAK))  # 50 % of 150.00
    assert [(a.payment, a.amount) for a in q.allocations] == [("pi_new", 5000), ("pi_old", 2500)]


def test_rule9_refund_naming_its_payment_reduces_that_payment() -> None:
    snapshot = booking(
        [item("kayak", "150.00")],
        transactions=[paid("pi_old", "100.00", day=1), paid("pi_new", "50.00", day=3),
                      refunded("re_1", "40.00", day=4, original="pi_new")],
    )
    q = quote(snapshot, policies(KAYAK))
    assert [(a.payment, a.amount) for a in q.allocations] == [("pi_new", 1000), ("pi_old", 10000)]


def test_rule9_refund_without_original_reduces_newest_payments_first() -> None:
    snapshot = booking(
        [item("kayak", "150.00")],
        transactions=[paid("pi_old", "100.00", day=1), paid("pi_new", "50.00", day=3),
                      refunded("re_1", "60.00", day=4)],
    )
    q = quote(snapshot, policies(KAYAK))
    assert [(a.payment, a.amount) for a in q.allocations] == [("pi_old", 9000)]


def test_rule9_cash_payment_goes_to_a_manual_allocation_and_needs_approval() -> None:
    snapshot = booking(
        [item("kayak", "100.00")],
        transactions=[paid("pi_card", "40.00", day=1), paid("CASH-7", "60.00", day=2,
                                                            gateway="Cash")],
    )
    q = quote(snapshot, policies(KAYAK))
    assert [(a.payment, a.amount, a.method) for a in q.allocations] == [
        ("pi_card", 4000, "stripe"), ("manual", 6000, "manual")]
    assert q.decision is Decision.NEEDS_APPROVAL  # 100.00 is under auto_approve_max
    assert any("60.00 must be refunded by hand" in reason for reason in q.reasons)
    assert not any("within the auto-approve limit" in reason for reason in q.reasons)


@pytest.mark.parametrize(
    ("transaction_id", "gateway", "method"),
    [
        ("pi_3Abc", "Stripe", "stripe"),
        ("ch_3Abc", "stripe", "stripe"),
        ("pi_3Abc", "STRIPE", "stripe"),
        ("PAYID-123", "PayPal", "manual"),
        ("pi_3Abc", "PayPal", "manual"),
        ("txn_3Abc", "Stripe", "manual"),
        ("in_3Abc", "Stripe", "manual"),
    ],
)
def test_rule9_only_stripe_payment_intents_and_charges_are_refundable_through_stripe(
    transaction_id: str, gateway: str, method: str
) -> None:
    snapshot = booking([item("kayak", "100.00")],
                       transactions=[paid(transaction_id, "100.00", gateway=gateway)])
    q = quote(snapshot, policies(KAYAK))
    assert [a.method for a in q.allocations] == [method]
    expected = Decision.AUTO_APPROVE if method == "stripe" else Decision.NEEDS_APPROVAL
    assert q.decision is expected


def test_rule9_without_transactions_the_whole_refund_is_manual() -> None:
    snapshot = booking([item("kayak", "100.00")], transactions=None)
    q = quote(snapshot, policies(KAYAK))
    assert [(a.payment, a.amount, a.method) for a in q.allocations] == [
        ("manual", 10000, "manual")]
    assert q.decision is Decision.NEEDS_APPROVAL
    assert any("unknown" in reason for reason in q.reasons)


def test_rule9_deny_stays_deny_with_a_cash_payment() -> None:
    snapshot = booking([item("kayak", "100.00", hours=1)],
                       transactions=[paid("CASH-1", "100.00", gateway="Cash")])
    q = quote(snapshot, policies(KAYAK))
    assert (q.decision, q.allocations) == (Decision.DENY, ())


# Rule 10: what the quote carries


def test_rule10_quote_explains_itself() -> None:
    book = policies(policy("kayak", skus=["kayak", "photos"], non_refundable=["photos"],
                           fee="10.00"), DEFAULT)
    snapshot = booking(
        [item("kayak", "210.00", "10.00", hours=53, line_id="1", name="Sunset kayak tour"),
         item("photos", "31.50", "1.50", hours=53, line_id="2"),
         item("souvenir", "10.00", hours=53, line_id="3")],
        transactions=[paid("pi_a", "251.50", day=1), refunded("re_1", "1.50", day=2)],
    )
    q = quote(snapshot, book)
    assert (q.booking_id, q.booking_code, q.currency) == ("157", "KMVQ-261124", "USD")
    assert q.policy_ids == ("kayak", "default")
    assert q.clauses == {"kayak": "clause of kayak", "default": "clause of default"}
    first = line_of(q, "1")
    assert (first.sku, first.name, first.notice_hours, first.percent) == (
        "kayak", "Sunset kayak tour", "53.00", "100")
    assert first.start == notice(53).isoformat()
    assert (first.amount, first.tax, first.refund, first.tax_refund) == (20000, 1000, 20000, 1000)
    assert first.reason == "48h+ notice tier"
    assert line_of(q, "2").reason == "non-refundable"
    assert line_of(q, "2").name == "photos"  # no name given: the sku
    assert (q.fee, q.entitlement, q.paid, q.already_refunded) == (1000, 21000, 25150, 150)
    assert (q.net_paid, q.retained, q.total_refund) == (25000, 4150, 20850)
    assert q.allocations[0].payment == "pi_a"
    assert q.decision is Decision.NEEDS_APPROVAL and q.reasons
    assert q.version and q.booking_fingerprint


def test_rule10_json_form_uses_decimal_strings_in_major_units() -> None:
    book = policies(KAYAK, currency="JPY", auto_approve_max="10000", escalate_over="50000")
    q = quote(booking([item("kayak", "7500")], currency="JPY"), book)
    data = json.loads(json.dumps(q.to_dict()))
    assert data["total_refund"] == "7500"
    assert data["decision"] == "auto_approve"
    assert data["lines"][0]["refund"] == "7500"
    assert data["allocations"] == [{"payment": "pi_full", "amount": "7500", "method": "stripe"}]
    assert data["policy_ids"] == ["kayak"]


def test_quote_is_deterministic_and_its_version_tracks_content() -> None:
    snapshot = booking([item("kayak", "100.00", hours=30)])
    assert quote(snapshot, policies(KAYAK)).version == quote(snapshot, policies(KAYAK)).version
    other = quote(snapshot, policies(KAYAK), CANCELLED_AT + timedelta(hours=10))
    assert other.version != quote(snapshot, policies(KAYAK)).version


def test_cancellation_time_without_timezone_is_refused() -> None:
    with pytest.raises(QuoteError):
        quote(booking([item("kayak", "100.00")]), policies(KAYAK),
              CANCELLED_AT.replace(tzinfo=None))


# Exponent classes end to end


@pytest.mark.parametrize(
    ("currency", "price", "fee", "limit", "refund"),
    [
        ("JPY", "15000", "500", "10000", "7000"),
        ("USD", "150.00", "5.00", "100.00", "70.00"),
        ("KWD", "150.000", "5.000", "100.000", "70.000"),
    ],
)
def test_each_exponent_class_quotes_to_the_minor_unit(
    currency: str, price: str, fee: str, limit: str, refund: str
) -> None:
    book = policies(policy("kayak", skus=["kayak"], fee=fee), currency=currency,
                    auto_approve_max=limit, escalate_over=limit)
    q = quote(booking([item("kayak", price, hours=30)], currency=currency), book)
    assert q.amount(q.total_refund) == refund
    assert q.decision is Decision.AUTO_APPROVE


# The booking snapshot


def test_snapshot_reads_json_floats_exactly() -> None:
    text = json.dumps(booking([item("paddle", "6.30", "0.30"), item("kayak", "42.00", "2.00")],
                              currency="CAD"))
    text = text.replace('"6.30"', "6.3").replace('"42.00"', "42.0").replace('"48.30"', "48.3")
    data = json.loads(text)
    assert data["booking"]["order"]["total"] == 48.3
    snapshot = parse_snapshot(data)
    assert snapshot.order_total == 4830
    assert [ln.total for ln in snapshot.lines] == [630, 4200]
    assert snapshot.paid == 4830


def test_snapshot_accepts_items_item_as_a_single_object() -> None:
    snapshot = parse_snapshot(booking(item("kayak", "100.00")))
    assert [ln.sku for ln in snapshot.lines] == ["kayak"]


def test_snapshot_accepts_numeric_timestamps_and_ignores_extra_fields() -> None:
    data = booking([item("kayak", "100.00", hours=30)])
    line = data["booking"]["order"]["items"]["item"][0]
    line["start_date"] = int(line["start_date"])
    line["x_custom"] = {"anything": [1, 2]}
    data["booking"]["x_extra"] = "ok"
    snapshot = parse_snapshot(data)
    assert snapshot.lines[0].start == notice(30)


def test_snapshot_currency_falls_back_to_the_policy_file_currency() -> None:
    q = quote(booking([item("kayak", "7500")], currency=None),
              policies(KAYAK, currency="JPY", auto_approve_max="0", escalate_over="0"))
    assert (q.currency, q.total_refund) == ("JPY", 7500)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["booking"]["order"]["items"]["item"][0].update(total="12.345"),
         "items[0].total"),
        (lambda d: d["booking"]["order"]["items"]["item"][0].pop("total"),
         "items[0].total is missing"),
        (lambda d: d["booking"]["order"]["items"]["item"][0].update(tax_total="200.00"),
         "tax_total exceeds total"),
        (lambda d: d["booking"]["order"]["items"]["item"][0].pop("start_date"),
         "items[0].start_date is missing"),
        (lambda d: d["booking"]["order"]["items"]["item"][0].update(start_date="tomorrow"),
         "not a unix timestamp"),
        (lambda d: d["booking"]["order"]["items"]["item"][0].update(start_date="1e20"),
         "out of range"),
        (lambda d: d["booking"]["order"].pop("total"), "booking.order.total is missing"),
        (lambda d: d["booking"].pop("order"), "booking.order"),
        (lambda d: d["booking"]["order"].update(items={"item": []}), "no item"),
        (lambda d: d["booking"].update({"@attributes": "157"}), "@attributes"),
        (lambda d: d.update(transactions={"transaction_id": "pi_1"}), "transactions"),
        (lambda d: d["transactions"][0].pop("date"), "transactions[0].date"),
        (lambda d: d["transactions"][0].update(amount="1.001"), "transactions[0].amount"),
    ],
)
def test_snapshot_missing_or_bad_field_is_a_clear_error(change, expected: str) -> None:
    data = booking([item("kayak", "100.00")])
    change(data)
    with pytest.raises(SnapshotError) as caught:
        parse_snapshot(data)
    assert expected in str(caught.value)
