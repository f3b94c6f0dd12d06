"""Properties of the quote engine over generated bookings, payments and policies."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.money import exponent, format_minor, to_minor
from services.quoting.booking_read import parse_snapshot
from services.quoting.quote import Decision, Quote, RiskFlag
from tests.quote_fixtures import (
    CANCELLED_AT,
    booking,
    item,
    paid,
    policies,
    policy,
    quote,
    refunded,
)

CURRENCIES = ["JPY", "USD", "KWD", "BHD", "EUR", "KRW"]
SKUS = ["kayak", "bike", "charter", "photos", "souvenir"]
PROPERTY_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def monotone_tiers(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Tiers whose percent never falls as notice grows, always covering 0 hours."""
    hours = sorted(draw(st.sets(st.integers(1, 240), max_size=3)))
    percents = sorted(draw(st.lists(st.integers(0, 100), min_size=len(hours) + 1,
                                    max_size=len(hours) + 1)))
    return list(zip([0, *hours], percents, strict=True))


@st.composite
def policy_books(draw: st.DrawFn, currency: str) -> dict[str, Any]:
    minor = st.integers(0, 5 * 10 ** (exponent(currency) + 2))
    entries = []
    for index, skus in enumerate((["kayak", "bike"], ["charter"])):
        entries.append(policy(
            f"p{index}",
            skus=skus,
            tiers=draw(monotone_tiers()),
            non_refundable=draw(st.lists(st.sampled_from(SKUS), max_size=2, unique=True)),
            fee=format_minor(draw(minor), currency),
            refund_tax=draw(st.booleans()),
            waivers={"WEATHER": draw(st.integers(0, 100))} if draw(st.booleans()) else {},
        ))
    entries.append(policy("default", default=True, tiers=draw(monotone_tiers()),
                          fee=format_minor(draw(minor), currency)))
    auto, escalate = sorted(draw(st.lists(minor, min_size=2, max_size=2)))
    return policies(*entries, currency=currency, auto_approve_max=format_minor(auto, currency),
                    escalate_over=format_minor(escalate, currency))


@st.composite
def lines(draw: st.DrawFn, currency: str) -> list[dict[str, Any]]:
    result = []
    for index in range(draw(st.integers(1, 4))):
        total = draw(st.integers(0, 10 ** (exponent(currency) + 4)))
        tax = draw(st.integers(0, total))
        seconds = draw(st.integers(-48 * 3600, 300 * 3600))
        result.append(item(
            draw(st.sampled_from(SKUS)),
            format_minor(total, currency),
            format_minor(tax, currency),
            start=CANCELLED_AT + timedelta(seconds=seconds),
            item_id=str(draw(st.integers(1, 50))),
            line_id=str(index + 1),
        ))
    return result


@st.composite
def transaction_lists(draw: st.DrawFn, currency: str) -> list[dict[str, Any]] | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None  # Checkfront said nothing about payments
    amount = st.integers(1, 10 ** (exponent(currency) + 4))
    made: list[dict[str, Any]] = []
    ids: list[str] = []
    for index in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["pi_", "ch_", "CASH-"]))
        tid = f"{kind}{index}"
        gateway = "Cash" if kind == "CASH-" else draw(st.sampled_from(["Stripe", "stripe"]))
        made.append(paid(tid, format_minor(draw(amount), currency),
                         day=draw(st.integers(0, 20)), gateway=gateway))
        ids.append(tid)
    for index in range(draw(st.integers(0, 3))):
        original = draw(st.sampled_from([None, *ids])) if ids else None
        made.append(refunded(f"re_{index}", format_minor(draw(amount) // 3, currency),
                             day=draw(st.integers(0, 20)), original=original))
    return draw(st.permutations(made))


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    currency = draw(st.sampled_from(CURRENCIES))
    items = draw(lines(currency))
    total = sum(to_minor(line["total"], currency) for line in items)
    transactions = draw(transaction_lists(currency))
    paid_total = format_minor(draw(st.integers(0, total)), currency)
    snapshot = booking(items, currency=currency, paid_total=paid_total,
                       transactions=transactions)
    waiver = draw(st.sampled_from([None, "WEATHER", "STRIKE"]))
    return snapshot, draw(policy_books(currency)), waiver


@PROPERTY_SETTINGS
@given(cases())
def test_refund_is_between_zero_and_net_paid(case: tuple[dict, dict, str | None]) -> None:
    snapshot, book, waiver = case
    q = quote(snapshot, book, waiver=waiver)
    assert 0 <= q.total_refund <= max(q.net_paid, 0)
    assert q.entitlement >= 0
    if q.net_paid <= 0:
        assert q.decision is Decision.SKIP
    elif q.total_refund == 0:
        assert q.decision is Decision.DENY


@PROPERTY_SETTINGS
@given(cases(), st.lists(st.tuples(st.text(max_size=12), st.text(max_size=40)), max_size=2))
def test_a_stored_quote_reads_back_as_the_same_quote(
    case: tuple[dict, dict, str | None], flags: list[tuple[str, str]]
) -> None:
    snapshot, book, waiver = case
    q = quote(snapshot, book, waiver=waiver)
    q = replace(q, risk_flags=tuple(RiskFlag(code, reason) for code, reason in flags))
    stored = json.loads(json.dumps(q.to_dict()))
    assert Quote.from_dict(stored) == q


@PROPERTY_SETTINGS
@given(cases(), st.integers(0, 400 * 3600), st.integers(0, 400 * 3600))
def test_cancelling_earlier_never_refunds_less(
    case: tuple[dict, dict, str | None], offset_a: int, offset_b: int
) -> None:
    snapshot, book, waiver = case
    earlier = CANCELLED_AT - timedelta(hours=200) + timedelta(seconds=min(offset_a, offset_b))
    later = CANCELLED_AT - timedelta(hours=200) + timedelta(seconds=max(offset_a, offset_b))
    first = quote(snapshot, book, earlier, waiver=waiver)
    second = quote(snapshot, book, later, waiver=waiver)
    assert first.total_refund >= second.total_refund
    for a, b in zip(first.lines, second.lines, strict=True):
        assert a.refund + a.tax_refund >= b.refund + b.tax_refund


@PROPERTY_SETTINGS
@given(cases())
def test_allocations_sum_to_the_refund_within_each_payment(
    case: tuple[dict, dict, str | None],
) -> None:
    snapshot, book, waiver = case
    q = quote(snapshot, book, waiver=waiver)
    assert sum(a.amount for a in q.allocations) == q.total_refund
    assert all(a.amount > 0 for a in q.allocations)

    parsed = parse_snapshot(snapshot)
    unrefunded = {p.transaction.id: p.unrefunded for p in parsed.payments()}
    stripe = [a for a in q.allocations if a.method == "stripe"]
    manual = [a for a in q.allocations if a.method == "manual"]
    assert len(manual) <= 1 and (not manual or q.allocations[-1] == manual[0])
    assert len({a.payment for a in stripe}) == len(stripe)
    for allocation in stripe:
        assert allocation.payment.startswith(("pi_", "ch_"))
        assert allocation.amount <= unrefunded[allocation.payment]
        # independent bound: the payment less the refunds that name it
        raw = snapshot["transactions"]
        amount = next(to_minor(t["amount"], q.currency) for t in raw
                      if t["transaction_id"] == allocation.payment and t["status"] == "PAID")
        named = sum(to_minor(t["amount"], q.currency) for t in raw
                    if t["status"] == "REFUND"
                    and t.get("original_transaction_id") == allocation.payment)
        assert allocation.amount <= amount - named
    if parsed.transactions is not None and parsed.already_refunded <= parsed.paid:
        assert sum(unrefunded.values()) == parsed.net_paid
    if manual and q.decision not in (Decision.SKIP, Decision.DENY):
        assert q.decision is Decision.NEEDS_APPROVAL


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CURRENCIES), st.integers(-(10**15), 10**15))
def test_minor_units_round_trip_through_their_decimal_string(currency: str, minor: int) -> None:
    text = format_minor(minor, currency)
    assert to_minor(text, currency) == minor
    places = exponent(currency)
    assert len(text.partition(".")[2]) == places
    assert Decimal(text) == Decimal(minor).scaleb(-places)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CURRENCIES), st.decimals(min_value=-(10**9), max_value=10**9,
                                                allow_nan=False, allow_infinity=False))
def test_to_minor_accepts_exactly_the_amounts_the_currency_can_hold(
    currency: str, value: Decimal
) -> None:
    places = exponent(currency)
    fits = value == value.quantize(Decimal(1).scaleb(-places))
    try:
        minor = to_minor(str(value), currency)
    except ValueError:
        assert not fits
    else:
        assert fits
        assert Decimal(format_minor(minor, currency)) == value
