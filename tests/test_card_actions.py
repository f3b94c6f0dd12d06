"""Details, Mark refunded and the link buttons against the Slack stand-in; the Details modal
with worst-case data; the manual refund in the daily reconciliation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.cli.world import APPROVALS, FIONA, JOE, SAM, Item, World
from bot.slack.ui import ids
from bot.slack.ui.details import details_modal
from bot.slack.ui.links import CardLinks, link_buttons
from services.finance.reconcile import reconcile_day
from services.finance.runs import MISSING_IN_STRIPE
from services.refunds import cases, manual
from services.refunds.models import Status
from services.store import audit
from tests.slack_helpers import buttons, responses
from tests.slack_text_checks import EVIL, unsafe
from tests.test_blocks import check_modal, make_case, make_quote, modal_text

TZ = ZoneInfo("America/New_York")


def test_details_keep_the_totals_when_the_item_list_is_cut() -> None:
    quote = make_quote()
    data = quote.to_dict()
    line = data["lines"][0]
    data["lines"] = [{**line, "line_id": str(i), "name": f"{i:02d} " + "N" * 97}
                     for i in range(40)]
    big = type(quote).from_dict(data)
    view = details_modal(make_case(big), big)
    check_modal(view)
    text = modal_text(view)
    assert "Cancellation fee −" in text and "Retained " in text and "*Total refund " in text
    import re
    hidden = re.search(r"…and (\d+) more", text)
    shown = sum(f"{i:02d} NNNN" in text for i in range(40))
    assert shown + (int(hidden.group(1)) if hidden else 0) == 40   # a cut says how many


def test_link_buttons_point_at_checkfront_and_the_stripe_dashboard() -> None:
    quote = make_quote()
    live = {b["action_id"]: b["url"] for b in link_buttons(
        CardLinks.of("https://acme.checkfront.com/", "sk_live_x"), "KMVQ-261124", quote)}
    assert live[ids.OPEN_CHECKFRONT] == "https://acme.checkfront.com/booking/KMVQ-261124"
    assert live[ids.VIEW_STRIPE] == "https://dashboard.stripe.com/payments/pi_3QxKayak0002"
    test = {b["action_id"]: b["url"] for b in link_buttons(
        CardLinks.of("https://acme.checkfront.com", "sk_test_x"), "A/B?", quote)}
    assert test[ids.OPEN_CHECKFRONT] == "https://acme.checkfront.com/booking/A%2FB%3F"
    assert test[ids.VIEW_STRIPE].startswith("https://dashboard.stripe.com/test/payments/pi_")
    assert link_buttons(CardLinks(), "KMVQ-261124", quote) == []


async def _cash_case(world: World, code: str) -> tuple[int, dict]:
    world.paid_booking(code, [Item("kayak-tour", "210.00", "10.00", 50, "Sunset kayak")],
                       payments=[])
    world.checkfront.add_transaction(code, amount="210.00", transaction_id=f"POS-{code}",
                                     gateway_id="Cash")
    await world.cancel(code)
    await world.settle()
    assert world.slack is not None and world.sender is not None
    card = world.slack.messages_in(APPROVALS)[-1]
    case = await cases.find_open(world.bot.svc.store, code)
    assert case is not None and case.status == Status.PENDING_APPROVAL
    await world.sender.click(ids.APPROVE, buttons(card)[ids.APPROVE]["value"], FIONA,
                             message_ts=card["ts"])
    await world.settle()
    return case.id, world.slack.message(APPROVALS, card["ts"])


async def test_mark_refunded_closes_a_cash_case_once_and_reconciles_as_manual(
        sworld: World) -> None:
    store = sworld.bot.svc.store
    assert sworld.sender is not None and sworld.slack is not None
    case_id, card = await _cash_case(sworld, "HAND-1")
    case = await cases.get(store, case_id)
    assert case.status == Status.PARTIALLY_REFUNDED
    left = await manual.left_by_hand(store, case)
    assert left == case.approved_amount and sworld.stripe.refunds == []
    header = card["blocks"][0]["text"]["text"]
    assert header.startswith(f"Approved — refund {case.money(left)} USD by hand")
    found = buttons(card)
    assert ids.MARK_REFUNDED in found and ids.OPEN_CHECKFRONT in found
    assert found[ids.OPEN_CHECKFRONT]["url"].endswith("/booking/HAND-1")

    # a link click is acked and changes nothing
    answer = await sworld.sender.click(ids.OPEN_CHECKFRONT, "", JOE, message_ts=card["ts"])
    assert answer.status_code == 200

    # not an approver: refused privately, audited, no modal
    opened = len(sworld.slack.calls_to("views.open"))
    await sworld.sender.click(ids.MARK_REFUNDED, found[ids.MARK_REFUNDED]["value"], SAM,
                              message_ts=card["ts"])
    await sworld.settle()
    assert len(sworld.slack.calls_to("views.open")) == opened
    assert any("Only refund approvers" in t for t in responses(sworld))
    refused = [e for e in await audit.history(store, case_id) if e.action == "slack.refused"]
    assert refused and refused[-1].detail["action"] == ids.MARK_REFUNDED

    await sworld.sender.click(ids.MARK_REFUNDED, found[ids.MARK_REFUNDED]["value"], FIONA,
                              message_ts=card["ts"])
    await sworld.settle()
    view = sworld.slack.calls_to("views.open")[-1].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == ids.MANUAL_VIEW
    meta = view["private_metadata"]

    too_much = await sworld.sender.submit_view(ids.MANUAL_VIEW, {
        ids.AMOUNT_BLOCK: {ids.AMOUNT_INPUT: case.money(left + 1)},
        ids.METHOD_BLOCK: {ids.METHOD_INPUT: "bank_transfer"},
        ids.REFERENCE_BLOCK: {ids.REFERENCE_INPUT: "ana@example.test"}}, FIONA, meta)
    errors = too_much.json()["errors"]
    assert "left to refund" in errors[ids.AMOUNT_BLOCK]
    assert ids.REFERENCE_BLOCK in errors

    ok = await sworld.sender.submit_view(ids.MANUAL_VIEW, {
        ids.AMOUNT_BLOCK: {ids.AMOUNT_INPUT: case.money(left)},
        ids.METHOD_BLOCK: {ids.METHOD_INPUT: "bank_transfer"},
        ids.REFERENCE_BLOCK: {ids.REFERENCE_INPUT: EVIL.replace("<@U123> ", "")[:95]}},
        FIONA, meta)
    assert ok.status_code == 200 and not ok.content
    await sworld.settle()
    closed = await cases.get(store, case_id)
    assert closed.status == Status.REFUNDED_BY_HAND
    done = await manual.of_case(store, case_id)
    assert done is not None and done.amount == left and done.recorded_by == FIONA
    entries = [e for e in await audit.history(store, case_id)
               if e.action == "case.refunded_by_hand"]
    assert len(entries) == 1 and entries[0].detail["method"] == "bank_transfer"
    assert (await audit.verify(store)).ok

    updated = sworld.slack.message(APPROVALS, card["ts"])
    assert updated["blocks"][0]["text"]["text"].startswith(f"Refunded {case.money(left)} USD")
    assert ids.MARK_REFUNDED not in buttons(updated)
    replies = sworld.slack.replies(APPROVALS, card["ts"])
    assert any("Refunded by hand" in r["text"] for r in replies)

    # a second submission of the same modal is answered inside it; nothing recorded twice
    again = await sworld.sender.submit_view(ids.MANUAL_VIEW, {
        ids.AMOUNT_BLOCK: {ids.AMOUNT_INPUT: "1.00"},
        ids.METHOD_BLOCK: {ids.METHOD_INPUT: "cash"}}, FIONA, meta)
    assert "already refunded by hand" in again.json()["errors"][ids.AMOUNT_BLOCK]

    # every text the bot sent is safe (the hostile reference included)
    for call in sworld.slack.calls:
        assert not unsafe(call.params), (call.method, unsafe(call.params))

    day = datetime.fromisoformat(done.recorded_at).astimezone(TZ).date()
    run = await reconcile_day(sworld.bot.svc, day, TZ, now=datetime.now(UTC))
    assert run.counts[MISSING_IN_STRIPE] == 0
    assert run.totals["USD"]["manual"] == left


async def test_details_button_opens_the_quote_for_anyone(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    sworld.paid_booking("DET-1", [Item("kayak-tour", "790.00", "40.00", 100, "Sunset kayak")])
    await sworld.cancel("DET-1")
    await sworld.settle()
    card = sworld.slack.messages_in(APPROVALS)[-1]
    await sworld.sender.click(ids.DETAILS, buttons(card)[ids.DETAILS]["value"], SAM,
                              message_ts=card["ts"])
    await sworld.settle()
    view = sworld.slack.calls_to("views.open")[-1].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == ids.DETAILS_VIEW
    text = modal_text(view)
    assert "*Total refund " in text and "Retained " in text and "*Refund to*" in text
