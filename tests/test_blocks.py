"""Block Kit builders: real quotes from the example booking and policies, checked against
Slack's documented limits (and the official SDK's own models), and for contact data."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.slack.ui import answers, cards, ids
from bot.slack.ui.details import details_modal
from bot.slack.ui.home import HOME_ROWS, HomeFacts, home_view
from services.quoting.booking_read import parse_snapshot
from services.quoting.engine import build_quote
from services.quoting.policy import load_policies
from services.quoting.quote import Quote, RiskFlag
from services.refunds.automation import Automation
from services.refunds.models import Case, Status
from services.refunds.writeback import PendingWriteback

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RAW = json.loads((EXAMPLES / "booking.json").read_text())
BOOK = load_policies(EXAMPLES / "policies.yml")
EMAIL = RAW["booking"]["customer"]["email"]
START = datetime.fromtimestamp(int(RAW["booking"]["order"]["items"]["item"][0]["start_date"]), UTC)
CANCELLED = START - timedelta(hours=149)
RUNNING = Automation(paused=False)
PAUSED = Automation(paused=True, reason="Stripe error rate", by="U0PAUSER",
                    at="2026-11-20T09:00:00+00:00")


def make_quote(raw: dict[str, Any] = RAW, cancelled_at: datetime = CANCELLED,
               **kwargs: Any) -> Quote:
    return build_quote(parse_snapshot(raw), BOOK, cancelled_at, **kwargs)


def make_case(quote: Quote, **changes: Any) -> Case:
    case = Case(
        id=12, booking_id=quote.booking_id, booking_code=quote.booking_code,
        status=Status.PENDING_APPROVAL, currency=quote.currency,
        cancelled_at=quote.cancelled_at, waiver=quote.waiver, source="checkfront",
        requested_by=None, quote_version=quote.version,
        refund_amount=quote.total_refund, approved_amount=None,
        status_reason="; ".join(quote.reasons), customer_hash="c0ffee",
        created_at="2026-11-20T10:00:01+00:00", updated_at="2026-11-20T10:00:02+00:00",
        revision=1,
    )
    return replace(case, **changes)


@pytest.fixture
def risky() -> Quote:
    flag = RiskFlag("repeat_refunder", "this customer had 3 other refunds in the last 90 days")
    return make_quote(risk_flags=(flag,))


# --- limit checks ---------------------------------------------------------------------------

def _text(obj: dict[str, Any] | None) -> str:
    return (obj or {}).get("text", "")


def check_element(el: dict[str, Any]) -> None:
    if el["type"] == "button":
        assert len(_text(el["text"])) <= 75
        assert len(el.get("value", "")) <= 2000
        assert len(el["action_id"]) <= 255
        assert el.get("style") in (None, "primary", "danger")
        if "confirm" in el:
            c = el["confirm"]
            assert len(_text(c["title"])) <= 100 and len(_text(c["text"])) <= 300
            assert len(_text(c["confirm"])) <= 30 and len(_text(c["deny"])) <= 30
    elif el["type"] == "plain_text_input":
        assert len(_text(el.get("placeholder"))) <= 150


def check_block(block: dict[str, Any]) -> None:
    kind = block["type"]
    if kind == "header":
        assert block["text"]["type"] == "plain_text" and len(_text(block["text"])) <= 150
    elif kind == "section":
        assert "text" in block or "fields" in block
        assert len(_text(block.get("text"))) <= 3000
        assert len(block.get("fields", [])) <= 10
        assert all(len(_text(f)) <= 2000 for f in block.get("fields", []))
    elif kind == "context":
        assert 1 <= len(block["elements"]) <= 10
        assert all(len(_text(e)) <= 3000 for e in block["elements"])
    elif kind == "actions":
        assert 1 <= len(block["elements"]) <= 25
        for el in block["elements"]:
            check_element(el)
    elif kind == "input":
        assert len(_text(block["label"])) <= 2000 and len(_text(block.get("hint"))) <= 2000
        check_element(block["element"])
    else:
        assert kind == "divider", kind
    # the official SDK models parse the block and validate it again on the way out
    assert Block.parse(block).to_dict() == block


def check_message(message: cards.Message) -> None:
    assert message.text and len(message.text) <= 300 and "\n" not in message.text
    assert 1 <= len(message.blocks) <= 50
    for block in message.blocks:
        check_block(block)


def check_modal(view: dict[str, Any]) -> None:
    assert view["type"] == "modal"
    assert len(_text(view["title"])) <= 24
    assert len(_text(view.get("submit"))) <= 24 and len(_text(view["close"])) <= 24
    assert len(view["private_metadata"]) <= 3000
    assert len(view["blocks"]) <= 100
    for block in view["blocks"]:
        check_block(block)
    assert View(**view).to_dict() == view


def all_text(message: cards.Message | dict[str, Any]) -> str:
    if isinstance(message, cards.Message):
        return message.text + json.dumps(message.blocks, ensure_ascii=False)
    return json.dumps(message, ensure_ascii=False)


def texts(message: cards.Message) -> str:
    """Every text object's text in the message, one per line."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.blocks)
    return "\n".join(found)


def modal_text(view: dict[str, Any]) -> str:
    return "\n".join(b["text"]["text"] for b in view["blocks"] if "text" in b
                     and isinstance(b["text"], dict))


def of_type(message: cards.Message, kind: str) -> list[dict[str, Any]]:
    return [b for b in message.blocks if b["type"] == kind]


def buttons(message: cards.Message) -> dict[str, dict[str, Any]]:
    return {el["action_id"]: el for b in of_type(message, "actions") for el in b["elements"]}


# --- button values ----------------------------------------------------------------------------

def test_button_value_round_trips() -> None:
    value = cards.button_value(12, "996a74698e0b")
    assert value == '{"case":12,"v":"996a74698e0b"}'
    assert cards.parse_button_value(value) == (12, "996a74698e0b")
    assert cards.parse_button_value(cards.button_value(3, None)) == (3, None)
    assert len(cards.button_value(10**12, "f" * 64)) < 2000


@pytest.mark.parametrize("value", [
    "", "nope", "[]", "12", "null", '{"case":"12","v":"x"}', '{"case":true,"v":"x"}',
    '{"case":0,"v":"x"}', '{"case":-4,"v":"x"}', '{"case":12}', '{"case":12,"v":3}',
    '{"case":12,"v":""}', '{"case":12,"v":"x","extra":1}', '{"v":"x"}',
])
def test_parse_button_value_refuses_malformed(value: str) -> None:
    with pytest.raises(ValueError):
        cards.parse_button_value(value)


def test_parse_button_value_refuses_non_strings() -> None:
    with pytest.raises(ValueError):
        cards.parse_button_value(None)  # type: ignore[arg-type]


# --- approval card ----------------------------------------------------------------------------

def test_approval_card_buttons_confirm_and_values(risky: Quote) -> None:
    case = make_case(risky)
    card = cards.approval_card(case, risky, customer_first_name="Ana", automation=RUNNING)
    check_message(card)
    found = buttons(card)
    assert list(found) == [ids.APPROVE, ids.DENY, ids.ADJUST, ids.CLAIM, ids.DETAILS]
    assert found[ids.APPROVE]["style"] == "primary"
    assert found[ids.DENY]["style"] == "danger"
    assert "style" not in found[ids.ADJUST]
    dialog = found[ids.APPROVE]["confirm"]
    assert "200.00 USD" in dialog["text"]["text"] and "KMVQ-261124" in dialog["text"]["text"]
    for element in found.values():
        assert cards.parse_button_value(element["value"]) == (12, risky.version)
    assert of_type(card, "actions")[-1] is card.blocks[-1]


def test_approval_card_content(risky: Quote) -> None:
    case = make_case(risky)
    card = cards.approval_card(case, risky, customer_first_name="Ana", automation=RUNNING)
    header = card.blocks[0]
    assert header["type"] == "header"
    assert header["text"]["text"] == "Refund needs approval · 200.00 USD · KMVQ-261124"
    text = all_text(card)
    assert "KMVQ-261124" in text and "Ana" in text
    assert f"<!date^{int(START.timestamp())}^{{date_short_pretty}} {{time}}|" \
           "2026-11-26 15:00 UTC>" in text
    # decision first: the amount once, the itemisation, allocation and clause behind Details
    assert json.dumps(card.blocks).count("200.00 USD") == 2  # the header, the confirm dialog
    assert "*Quote*" not in text and "*Refund to*" not in text
    fields_text = json.dumps(card.blocks[2:4])
    for label in ("*Customer*", "*Product*", "*Notice*", "*Policy*"):
        assert label in fields_text
    assert "standard-48h" in fields_text
    details = details_modal(case, risky)
    check_modal(details)
    sections = [b["text"]["text"] for b in details["blocks"] if b["type"] == "section"]
    quote_text = next(s for s in sections if s.startswith("*Quote*"))
    assert "Sunset kayak tour (200.00 + 10.00 tax) — 100% (48h+ notice tier) [standard-48h] → " \
           "200.00 + 10.00 tax" in quote_text
    assert ":no_entry_sign: Photo package" in quote_text and "*not refundable*" in quote_text
    totals = next(s for s in sections if s.startswith("Order total"))
    assert "Cancellation fee −10.00 USD" in totals
    assert "*Total refund 200.00 USD*" in totals
    refund_to = next(s for s in sections if s.startswith("*Refund to*"))
    assert "`pi_3QxKayak0002` — 152.00 USD" in refund_to
    assert "`pi_3QxKayak0001` — 48.00 USD" in refund_to
    policy = next(s for s in sections if s.startswith("*Policy*"))
    assert "> Full refund 48+ hours before the start" in policy and "*default*" in policy
    card_sections = [b["text"]["text"] for b in of_type(card, "section") if "text" in b]
    why = next(s for s in card_sections if s.startswith("*Why a person is needed*"))
    assert "*repeat_refunder*" in why and "3 other refunds" in why
    assert why.count("3 other refunds") == 1  # the flag and its "risk: …" reason said once
    assert not any(b["type"] == "context" and "paused" in json.dumps(b) for b in card.blocks)
    assert card.text == ("Refund needs approval: 200.00 USD for booking KMVQ-261124, customer "
                         "Ana: this customer had 3 other refunds in the last 90 days")


def test_approval_card_says_why_in_shadow_mode() -> None:
    quote = make_quote()
    case = make_case(quote, status_reason="shadow mode: would auto-approve; "
                                          "within the auto-approve limit 200.00")
    card = cards.approval_card(case, quote, customer_first_name="Ana", automation=RUNNING)
    check_message(card)
    why = next(b["text"]["text"] for b in of_type(card, "section")
               if b.get("text", {}).get("text", "").startswith("*Why a person is needed*"))
    assert why.split("\n")[1:] == ["• shadow mode: would auto-approve",
                                   "• within the auto-approve limit 200.00 USD"]


def test_approval_card_banner_when_paused(risky: Quote) -> None:
    case = make_case(risky)
    card = cards.approval_card(case, risky, customer_first_name="Ana", automation=PAUSED)
    banner = card.blocks[1]
    assert banner["type"] == "context"
    assert "Automation paused by <@U0PAUSER>: Stripe error rate" in banner["elements"][0]["text"]


def test_manual_allocation_is_flagged_for_a_person() -> None:
    raw = copy.deepcopy(RAW)
    for t in raw["transactions"]:
        t["gateway_id"] = "Cash"
    quote = make_quote(raw)
    case = make_case(quote)
    card = cards.approval_card(case, quote, customer_first_name="Ana", automation=RUNNING)
    check_message(card)
    text = all_text(card)
    assert ":warning: *Refund by hand* — 200.00 USD" in modal_text(details_modal(case, quote))
    assert "must be refunded by hand" in text  # the quote's reason
    assert "200.00 USD of it must then be refunded by hand" in \
        buttons(card)[ids.APPROVE]["confirm"]["text"]["text"]


def test_only_the_first_name_is_shown(risky: Quote) -> None:
    card = cards.approval_card(make_case(risky), risky, customer_first_name="Ana Silva",
                                automation=RUNNING)
    assert "Ana" in all_text(card) and "Silva" not in all_text(card)


# --- outcome cards ------------------------------------------------------------------------------

# the decision time below, as Slack shows it
AT = "<!date^1795183509^{date_short_pretty} {time}|2026-11-20 14:05 UTC>"


def outcome(quote: Quote, case: Case, **kwargs: Any) -> cards.Message:
    args: dict[str, Any] = {"customer_first_name": "Ana", "decided_by": "U1ABC",
                            "decided_at": "2026-11-20T14:05:09.123456+00:00", "refunds": [],
                            "automation": RUNNING}
    message = cards.outcome_card(case, quote, **{**args, **kwargs})
    check_message(message)
    return message


def outcome_text(message: cards.Message) -> str:
    """The outcome lines: the section under the header."""
    return message.blocks[1]["text"]["text"]


def test_outcome_approved_with_adjustment(risky: Quote) -> None:
    case = make_case(risky, status=Status.APPROVED, approved_amount=15000,
                     status_reason="customer was offered a voucher for the rest")
    message = outcome(risky, case)
    assert message.blocks[0]["text"]["text"] == "Refund approved · 150.00 USD · KMVQ-261124"
    assert (f"Approved by <@U1ABC> at {AT} (adjusted from 200.00 USD: customer "
            "was offered a voucher for the rest)") in outcome_text(message)
    assert list(buttons(message)) == [ids.DETAILS]


def test_outcome_adjustment_reason_can_be_passed(risky: Quote) -> None:
    case = make_case(risky, status=Status.EXECUTING, approved_amount=15000,
                     status_reason="executing")
    message = outcome(risky, case, decided_by="maria", decision_reason="goodwill")
    text = outcome_text(message)
    assert f"Approved by maria at {AT} (adjusted from 200.00 USD: goodwill)" in text
    assert "Refunding through Stripe…" in text
    assert message.blocks[0]["text"]["text"] == "Refunding 150.00 USD… · KMVQ-261124"
    everything = texts(message)
    assert everything.count("150.00 USD") == 1  # the header's amount, not repeated below
    assert "• executing" not in everything  # an outcome's status reason is not a "reason"


def test_outcome_denied(risky: Quote) -> None:
    case = make_case(risky, status=Status.DENIED, status_reason="booked through a reseller")
    message = outcome(risky, case, decided_by="maria")
    assert f"Denied by maria at {AT}: booked through a reseller" in outcome_text(message)
    assert "Approved" not in outcome_text(message)
    assert list(buttons(message)) == [ids.DETAILS]


def test_outcome_refunded_lists_stripe_refunds(risky: Quote) -> None:
    case = make_case(risky, status=Status.REFUNDED, approved_amount=20000,
                     status_reason="refunded through Stripe")
    refunds = [
        {"stripe_refund_id": "re_3QxA", "amount": 15200, "status": "succeeded",
         "payment_ref": "pi_3QxKayak0002"},
        {"stripe_refund_id": "re_3QxB", "amount": 4800, "status": "pending",
         "payment_ref": "pi_3QxKayak0001"},
    ]
    message = outcome(risky, case, refunds=refunds)
    assert message.blocks[0]["text"]["text"] == "Refunded 200.00 USD · KMVQ-261124"
    text = outcome_text(message)
    assert f"Approved by <@U1ABC> at {AT}" in text
    assert "Through Stripe: `re_3QxA` (152.00 USD), `re_3QxB` (48.00 USD, pending)" in text
    assert "Total refund" not in json.dumps(message.blocks)
    assert list(buttons(message)) == [ids.DETAILS]


def test_outcome_failed_offers_retry(risky: Quote) -> None:
    case = make_case(risky, status=Status.FAILED, approved_amount=20000,
                     status_reason="Stripe refund re_3QxC failed: expired_or_canceled_card")
    message = outcome(risky, case)
    assert "Refund failed:* Stripe refund re_3QxC failed: expired_or_canceled_card" in \
        outcome_text(message)
    found = buttons(message)
    assert list(found) == [ids.RETRY, ids.MARK_REFUNDED, ids.DETAILS]
    assert cards.parse_button_value(found[ids.RETRY]["value"]) == (12, risky.version)
    assert "200.00 USD" in found[ids.RETRY]["confirm"]["text"]["text"]


def test_outcome_partially_refunded_names_what_is_left(risky: Quote) -> None:
    case = make_case(risky, status=Status.PARTIALLY_REFUNDED, approved_amount=20000,
                     status_reason="48.00 USD must be refunded by hand (not paid through Stripe)")
    refunds = [{"stripe_refund_id": "re_3QxA", "amount": 15200, "status": "succeeded",
                "payment_ref": "pi_3QxKayak0002"}]
    message = outcome(risky, case, refunds=refunds)
    text = outcome_text(message)
    assert message.blocks[0]["text"]["text"] == "Refunded 152.00 USD through Stripe · KMVQ-261124"
    assert "Through Stripe: `re_3QxA`" in text and "152.00" not in text
    assert "*Approved — refund 48.00 USD by hand* (not paid through Stripe)" in text
    assert list(buttons(message)) == [ids.MARK_REFUNDED, ids.DETAILS]


@pytest.mark.parametrize("status", list(Status))
def test_every_status_renders_within_limits(risky: Quote, status: Status) -> None:
    case = make_case(risky, status=status, approved_amount=20000)
    message = outcome(risky, case, automation=PAUSED)
    assert (ids.RETRY in buttons(message)) == (status == Status.FAILED)
    assert not {ids.APPROVE, ids.DENY, ids.ADJUST} & set(buttons(message))


def test_policy_decisions_render_as_text() -> None:
    quote = make_quote()
    case = make_case(quote, status=Status.AUTO_APPROVED, approved_amount=20000)
    assert f"Approved by policy at {AT}" in outcome_text(outcome(quote, case,
                                                                     decided_by="policy"))


# --- compact lines ----------------------------------------------------------------------------

def auto_refunded(booking_code: str, amount: int, notice_hours: int) -> tuple[Case, Quote]:
    quote = make_quote(cancelled_at=START - timedelta(hours=notice_hours))
    case = make_case(quote, booking_code=booking_code, status=Status.REFUNDED,
                     refund_amount=amount, approved_amount=amount)
    return case, quote


def test_compact_single_line() -> None:
    message = cards.compact_lines([auto_refunded("HBR-1001", 9500, 80)])
    check_message(message)
    assert len(message.blocks) == 1
    assert message.blocks[0]["text"]["text"] == \
        "✓ Auto-refunded 95.00 USD · HBR-1001 · standard-48h+default · 80h notice"
    assert message.text.startswith("✓ Auto-refunded 95.00 USD · HBR-1001")


def test_compact_groups_several() -> None:
    items = [auto_refunded(f"HBR-100{i}", 9500 + i, 80 + i) for i in range(3)]
    message = cards.compact_lines(items)
    check_message(message)
    assert message.text == "3 automatic refunds"
    lines = message.blocks[0]["text"]["text"].split("\n")
    assert lines[0] == "*3 automatic refunds*"
    assert lines[1:] == [
        f"✓ Auto-refunded {95 + i / 100:.2f} USD · HBR-100{i} · standard-48h+default · "
        f"{80 + i}h notice" for i in range(3)]


def test_compact_truncates_a_long_digest() -> None:
    case, quote = auto_refunded("HBR-1001", 9500, 80)
    items = [(replace(case, id=i, booking_code=f"HBR-{i:05d}"), quote) for i in range(3000)]
    message = cards.compact_lines(items)
    check_message(message)
    last = message.blocks[-1]["text"]["text"]
    assert re.search(r"…and \d+ more", last)


# --- /refund quote ----------------------------------------------------------------------------

def test_quote_message_offers_a_request() -> None:
    quote = make_quote(waiver="WEATHER")
    message = answers.quote_message(quote, booking_ref="KMVQ-261124", waiver="WEATHER",
                                   open_case=None)
    check_message(message)
    found = buttons(message)
    assert list(found) == [ids.REQUEST]
    assert json.loads(found[ids.REQUEST]["value"]) == {"b": "KMVQ-261124", "w": "WEATHER"}
    text = texts(message)
    assert "*Quote*" in text and "(waiver WEATHER)" in text and "*Waiver*\nWEATHER" in text
    assert "*Decision*\nNeeds a person's approval" in text
    assert "*Refund*\n*252.00 USD*" in text


def test_quote_message_with_an_open_case_says_so() -> None:
    quote = make_quote()
    message = answers.quote_message(quote, booking_ref="157", waiver=None,
                                   open_case={"id": 7, "status": "pending_approval"})
    check_message(message)
    assert buttons(message) == {}
    assert "Case #7 for this booking is already open (pending approval)" in all_text(message)


# --- modals and adjustments ---------------------------------------------------------------------

def test_deny_modal(risky: Quote) -> None:
    view = cards.deny_modal(make_case(risky))
    check_modal(view)
    assert view["callback_id"] == ids.DENY_VIEW
    assert json.loads(view["private_metadata"]) == {"case": 12, "v": risky.version}
    assert cards.parse_metadata(view["private_metadata"]) == {"case": 12, "v": risky.version}
    assert cards.parse_button_value(view["private_metadata"]) == (12, risky.version)
    reason = next(b for b in view["blocks"] if b.get("block_id") == ids.REASON_BLOCK)
    assert reason["type"] == "input" and reason["optional"] is False
    assert reason["element"]["action_id"] == ids.REASON_INPUT
    assert reason["element"]["multiline"] is True


def test_adjust_modal(risky: Quote) -> None:
    view = cards.adjust_modal(make_case(risky), risky)
    check_modal(view)
    assert view["callback_id"] == ids.ADJUST_VIEW
    meta = cards.parse_metadata(view["private_metadata"])
    assert meta == {"case": 12, "v": risky.version, "max": "252.00", "cur": "USD"}
    amount = next(b for b in view["blocks"] if b.get("block_id") == ids.AMOUNT_BLOCK)
    assert amount["element"]["action_id"] == ids.AMOUNT_INPUT
    assert amount["element"]["initial_value"] == "200.00"
    assert "USD" in amount["hint"]["text"] and "252.00" in amount["hint"]["text"]
    reason = next(b for b in view["blocks"] if b.get("block_id") == ids.REASON_BLOCK)
    assert reason["element"]["action_id"] == ids.REASON_INPUT and reason["optional"] is False
    # what the modal holds passes its own check
    assert cards.validate_adjustment(amount["element"]["initial_value"], meta["max"],
                                      meta["cur"]) == (20000, None)


@pytest.mark.parametrize("metadata", ['{"case":1,"v":"a","max":"1.234","cur":"USD"}',
                                      '{"case":1,"v":"a","max":"10","cur":"US"}',
                                      '{"case":1,"v":"a","max":"x","cur":"USD"}'])
def test_parse_metadata_refuses_bad_adjust_data(metadata: str) -> None:
    with pytest.raises(ValueError):
        cards.parse_metadata(metadata)


@pytest.mark.parametrize(("text", "max_text", "currency", "expected"), [
    ("120.50", "252.00", "USD", (12050, None)),
    ("1,200.5", "2000.00", "USD", (120050, None)),
    (" 75 USD ", "252.00", "USD", (7500, None)),
    ("1.234", "10.000", "KWD", (1234, None)),
    ("1000", "5000", "JPY", (1000, None)),
    ("252.00", "252.00", "USD", (25200, None)),
    ("12.345", "252.00", "USD", (None, "USD takes at most 2 decimals.")),
    ("1000.5", "5000", "JPY", (None, "JPY has no decimals.")),
    ("1.2345", "10.000", "KWD", (None, "KWD takes at most 3 decimals.")),
    ("0", "252.00", "USD", (None, "The refund must be more than zero.")),
    ("0.00", "252.00", "USD", (None, "The refund must be more than zero.")),
    ("-5", "252.00", "USD", (None, "The refund must be more than zero.")),
    ("", "252.00", "USD", (None, "Enter an amount.")),
    ("twelve", "252.00", "USD", (None, "Enter a number, like 120.50.")),
    ("1e3", "252.00", "USD", (None, "Enter a number, like 120.50.")),
    ("NaN", "252.00", "USD", (None, "Enter a number, like 120.50.")),
])
def test_validate_adjustment(text: str, max_text: str, currency: str,
                             expected: tuple[int | None, str | None]) -> None:
    assert cards.validate_adjustment(text, max_text, currency) == expected


@pytest.mark.parametrize(("max_text", "currency"), [("None", "USD"), ("10.00", ""),
                                                    ("1.5", "JPY")])
def test_validate_adjustment_with_a_broken_form(max_text: str, currency: str) -> None:
    assert cards.validate_adjustment("5", max_text, currency) == \
        (None, "This form is out of date: close it and press Adjust again.")


def test_validate_adjustment_above_net_paid() -> None:
    minor, error = cards.validate_adjustment("252.01", "252.00", "USD")
    assert minor is None and error is not None
    assert "252.00 USD" in error


# --- status, help, alerts, errors ---------------------------------------------------------------

def test_status_message(risky: Quote) -> None:
    case = make_case(risky)
    history = [f"2026-11-20 10:{i % 60:02d} policy case.event number {i}" for i in range(400)]
    message = answers.status_message(case, history)
    check_message(message)
    text = all_text(message)
    assert "Refund case #12 · KMVQ-261124" in text and "pending approval" in text
    assert re.search(r"…and \d+ more", text)
    missing = answers.status_message(None, [])
    check_message(missing)
    assert "No refund case found" in all_text(missing)


def test_help_lists_every_command_with_an_example() -> None:
    message = answers.help_message()
    check_message(message)
    text = all_text(message)
    for usage, _, example in answers.HELP_COMMANDS:
        assert f"`{usage.replace('<', '&lt;').replace('>', '&gt;')}`" in text
        assert f"`{example}`" in text
    assert "/refund quote KMVQ-261124 waiver WEATHER" in text
    for sub in ("quote", "status", "pause", "resume", "help"):
        assert f"/refund {sub}" in text


def test_automation_alerts() -> None:
    paused = cards.automation_alert(True, "3 Stripe failures in 10 minutes", "breaker",
                                     ["failures: 3", "window: 10 minutes"])
    check_message(paused)
    assert paused.blocks[0]["text"]["text"] == "Automation paused"
    text = all_text(paused)
    assert "3 Stripe failures in 10 minutes" in text and "window: 10 minutes" in text
    resume = buttons(paused)[ids.RESUME]
    assert resume["style"] == "primary" and "confirm" in resume
    resumed = cards.automation_alert(False, "errors cleared", "U0PAUSER", [])
    check_message(resumed)
    assert len(resumed.blocks) == 1 and buttons(resumed) == {}
    assert "Automation resumed by <@U0PAUSER>: errors cleared" in all_text(resumed)


def test_error_message() -> None:
    message = answers.error_message("Only approvers can approve refunds.")
    check_message(message)
    assert message.blocks[0]["text"]["text"] == ":warning: Only approvers can approve refunds."


# --- privacy and size ---------------------------------------------------------------------------

def every_message(quote: Quote, case: Case) -> list[cards.Message | dict[str, Any]]:
    out: list[cards.Message | dict[str, Any]] = [
        cards.approval_card(case, quote, customer_first_name="Ana", automation=PAUSED),
        cards.compact_lines([(replace(case, status=Status.REFUNDED), quote)] * 2),
        answers.quote_message(quote, booking_ref="KMVQ-261124", waiver=None, open_case=None),
        answers.status_message(case, ["case opened"]),
        cards.deny_modal(case), cards.adjust_modal(case, quote),
    ]
    out += [cards.outcome_card(replace(case, status=s, approved_amount=case.refund_amount),
                                quote, customer_first_name="Ana", decided_by="U1ABC",
                                decided_at="2026-11-20T14:05:00+00:00", refunds=[],
                                automation=PAUSED) for s in Status]
    return out


def test_contact_details_never_appear(risky: Quote) -> None:
    for message in every_message(risky, make_case(risky)):
        text = all_text(message)
        assert EMAIL not in text and "@example.com" not in text and "Silva" not in text


def test_contact_details_in_free_text_are_masked(risky: Quote) -> None:
    leaky = (f"customer {EMAIL} called from +1 (415) 555-0134 and read card "
             "4242 4242 4242 4242")
    case = make_case(risky, status_reason=leaky)
    for message in [*every_message(risky, case), answers.status_message(case, [leaky]),
                    answers.error_message(leaky),
                    cards.automation_alert(True, leaky, "breaker", [leaky])]:
        text = all_text(message)
        assert EMAIL not in text and "555-0134" not in text and "4242 4242" not in text


def test_huge_quotes_stay_within_limits(risky: Quote) -> None:
    quote = copy.deepcopy(risky.to_dict())
    line = quote["lines"][0]
    quote["lines"] = [{**line, "name": f"Tour {i} " + "x" * 300,
                       "start": f"2026-12-{i % 28 + 1:02d}T09:00:00+00:00"} for i in range(200)]
    quote["clauses"] = {f"policy-{i}": "A very long clause. " * 200 for i in range(30)}
    quote["reasons"] = [f"reason {i} " + "y" * 400 for i in range(100)]
    quote["risk_flags"] = [{"code": f"flag_{i}", "reason": "z" * 500} for i in range(50)]
    quote["allocations"] = [{"payment": f"pi_{i:024d}", "amount": "1.00", "method": "stripe"}
                            for i in range(200)]
    quote = Quote.from_dict(quote)
    case = make_case(quote, booking_code="B" * 400, status_reason="r" * 5000,
                     waiver="W" * 300)
    for message in every_message(quote, case):
        if isinstance(message, cards.Message):
            check_message(message)
        else:
            check_modal(message)
    card = cards.approval_card(case, quote, customer_first_name="Ana", automation=PAUSED)
    assert card.blocks[-1]["type"] == "actions"
    assert re.search(r"…and \d+ more", all_text(card))


# --- the Home tab and the write-back alert ----------------------------------------------------

def test_home_view_within_limits_with_long_lists(risky: Quote) -> None:
    waiting = [(make_case(risky, id=n, booking_code=f"HBR-{n:04d}"),
                f"https://slack.com/archives/C0A/p{n}") for n in range(1, 40)]
    kept = [(PendingWriteback(n, 3, "Checkfront answered 503 " * 20,
                              "2026-11-20T10:30:00+00:00"), waiting[n][0]) for n in range(12)]
    facts = HomeFacts(automation=PAUSED, waiting=waiting[:HOME_ROWS], waiting_total=39,
                      disputes=[], writebacks=kept, drawn_at="2026-11-20T10:00:00+00:00")

    for approver in (True, False):
        view = home_view(facts, approver=approver)
        assert view["type"] == "home" and len(view["blocks"]) <= 100
        for block in view["blocks"]:
            check_block(block)
        assert View(**view).to_dict() == view
        text = json.dumps(view, ensure_ascii=False)
        assert "Page 1 of 4" in text and "Waiting for approval (39)" in text   # paged
        assert "no dispute waiting on Stripe" in text
        assert (ids.HOME_RESUME in text) == approver


def test_writeback_alert_within_limits(risky: Quote) -> None:
    case = make_case(risky, status=Status.REFUNDED, approved_amount=9500)
    message = cards.writeback_alert(case, PendingWriteback(
        case.id, 1, "x" * 5000, "2026-11-20T10:30:00+00:00"))
    check_message(message)
    assert "Checkfront not updated yet" in all_text(message)
