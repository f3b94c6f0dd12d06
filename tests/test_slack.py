"""The Slack bot over real HTTP: signed requests into the real Bolt app, its Web API client
pointed at the local Slack stand-in, Stripe and Checkfront stand-ins behind it."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from bot.cli.world import APPROVALS, FIONA, JOE, MARIA, SAM, Item, World
from bot.slack.ui import cards, ids
from services.refunds import cases
from services.refunds.automation import automation_state, set_automation
from services.refunds.models import Case, Status
from services.store import audit
from tests.outage import quick_checkfront_retries
from tests.slack_helpers import all_text, buttons, responses


async def pending_card(world: World, code: str, total: str = "840.00", tax: str = "40.00",
                       hours: float = 96) -> tuple[Case, dict[str, Any]]:
    """A high-value cancellation whose approval card is in the approvals channel."""
    world.paid_booking(code, [Item("kayak-tour", total, tax, hours_ahead=hours)])
    await world.cancel(code)
    await world.settle()
    case = (await cases.list_cases(world.bot.svc.store))[0]
    assert case.status == Status.PENDING_APPROVAL
    assert world.slack is not None
    card = world.slack.messages_in(APPROVALS)[-1]
    return case, card


async def test_pending_case_posts_a_card_with_the_quote_and_three_buttons(sworld: World) -> None:
    case, card = await pending_card(sworld, "CARD-1")

    text = all_text(card)
    assert "CARD-1" in text and "830.00" in text
    assert "standard-48h" in text  # the policy on the card; its clause is behind Details
    assert "@example.test" not in text  # no customer email anywhere
    found = buttons(card)
    assert {ids.APPROVE, ids.DENY, ids.ADJUST, ids.DETAILS} <= set(found)
    assert sworld.sender is not None and sworld.slack is not None
    await sworld.sender.click(ids.DETAILS, found[ids.DETAILS]["value"], JOE,
                              message_ts=card["ts"])
    await sworld.settle()
    details = json.dumps(sworld.slack.calls_to("views.open")[-1].params["view"])
    assert "Full refund 48+ hours" in details and "@example.test" not in details
    assert found[ids.APPROVE]["style"] == "primary"
    assert found[ids.DENY]["style"] == "danger"
    assert cards.parse_button_value(found[ids.APPROVE]["value"]) == (
        case.id, case.quote_version)
    assert case.money(case.refund_amount) in json.dumps(found[ids.APPROVE]["confirm"])


async def test_approve_click_refunds_once_and_updates_the_card(sworld: World) -> None:
    case, card = await pending_card(sworld, "APPR-1")
    value = buttons(card)[ids.APPROVE]["value"]
    assert sworld.sender is not None and sworld.slack is not None

    answer = await sworld.sender.click(ids.APPROVE, value, MARIA, message_ts=card["ts"])
    await sworld.settle()

    assert answer.status_code == 200
    assert len(sworld.stripe.refunds) == 1
    refund = sworld.stripe.refunds[0]
    assert refund.amount == case.refund_amount
    updated = sworld.slack.message(APPROVALS, card["ts"])
    assert ids.APPROVE not in buttons(updated)
    assert refund.id in all_text(updated) and MARIA in all_text(updated)
    thread = sworld.slack.replies(APPROVALS, card["ts"])
    assert thread and refund.id in thread[-1]["text"]
    assert (await cases.get(sworld.bot.svc.store, case.id)).status == Status.REFUNDED


async def test_deny_opens_a_modal_and_the_reason_is_recorded(sworld: World) -> None:
    case, card = await pending_card(sworld, "DENY-1")
    value = buttons(card)[ids.DENY]["value"]
    assert sworld.sender is not None and sworld.slack is not None

    await sworld.sender.click(ids.DENY, value, MARIA, message_ts=card["ts"])
    await sworld.settle()
    opened = sworld.slack.calls_to("views.open")
    assert len(opened) == 1
    view = opened[0].params["view"]
    assert view["callback_id"] == ids.DENY_VIEW

    empty = await sworld.sender.submit_view(ids.DENY_VIEW, {ids.REASON_BLOCK: {
        ids.REASON_INPUT: "  "}}, MARIA, view["private_metadata"])
    assert empty.json()["response_action"] == "errors"
    done = await sworld.sender.submit_view(ids.DENY_VIEW, {ids.REASON_BLOCK: {
        ids.REASON_INPUT: "booked under a non-refundable promo"}}, MARIA,
        view["private_metadata"])
    await sworld.settle()

    assert done.status_code == 200 and not done.content
    case = await cases.get(sworld.bot.svc.store, case.id)
    assert case.status == Status.DENIED
    assert case.status_reason == "booked under a non-refundable promo"
    assert sworld.stripe.refunds == []
    assert "non-refundable promo" in all_text(sworld.slack.message(APPROVALS, card["ts"]))


async def test_adjust_validates_in_the_modal_then_refunds_the_adjusted_amount(
    sworld: World,
) -> None:
    case, card = await pending_card(sworld, "ADJ-1")
    assert sworld.sender is not None and sworld.slack is not None
    await sworld.sender.click(ids.ADJUST, buttons(card)[ids.ADJUST]["value"], MARIA,
                              message_ts=card["ts"])
    await sworld.settle()
    view = sworld.slack.calls_to("views.open")[-1].params["view"]
    meta = view["private_metadata"]

    def values(amount: str, reason: str) -> dict[str, dict[str, str]]:
        return {ids.AMOUNT_BLOCK: {ids.AMOUNT_INPUT: amount},
                ids.REASON_BLOCK: {ids.REASON_INPUT: reason}}

    for bad in ("12.345", "-5", "99999.00", "abc"):
        answer = await sworld.sender.submit_view(ids.ADJUST_VIEW, values(bad, "x"),
                                                 MARIA, meta)
        assert answer.json()["response_action"] == "errors", bad
        assert ids.AMOUNT_BLOCK in answer.json()["errors"]
    no_reason = await sworld.sender.submit_view(ids.ADJUST_VIEW, values("500.00", ""),
                                                MARIA, meta)
    assert ids.REASON_BLOCK in no_reason.json()["errors"]
    assert sworld.stripe.refunds == []

    ok = await sworld.sender.submit_view(ids.ADJUST_VIEW,
                                         values("500.00", "guest rebooked a cheaper tour"),
                                         MARIA, meta)
    await sworld.settle()

    assert ok.status_code == 200
    assert [r.amount for r in sworld.stripe.refunds] == [50000]
    case = await cases.get(sworld.bot.svc.store, case.id)
    assert case.status == Status.REFUNDED and case.approved_amount == 50000
    shown = sworld.slack.message(APPROVALS, card["ts"])   # the card says from what
    assert shown["blocks"][0]["text"]["text"].startswith("Refunded 500.00 USD")
    (outcome,) = [b["text"]["text"] for b in shown["blocks"][1:2]]
    assert outcome.startswith(f":white_check_mark: Approved by <@{MARIA}> at <!date^")
    assert "(adjusted from 830.00 USD: guest rebooked a cheaper tour)" in outcome


async def test_non_approver_click_is_refused_audited_and_changes_nothing(sworld: World) -> None:
    case, card = await pending_card(sworld, "NOPE-1")
    assert sworld.sender is not None and sworld.slack is not None

    answer = await sworld.sender.click(ids.APPROVE, buttons(card)[ids.APPROVE][
        "value"], SAM, message_ts=card["ts"])
    await sworld.settle()

    assert answer.status_code == 200
    assert any("Only refund approvers" in t for t in responses(sworld))
    assert (await cases.get(sworld.bot.svc.store, case.id)).status == Status.PENDING_APPROVAL
    assert sworld.stripe.refunds == []
    assert sworld.slack.calls_to("chat.update") == []
    refusals = [e for e in await audit.history(sworld.bot.svc.store, case.id)
                if e.action == "slack.refused"]
    assert refusals and refusals[0].actor == SAM


@pytest.mark.parametrize("action", [ids.APPROVE, ids.DENY, ids.ADJUST, ids.RETRY])
async def test_a_malformed_button_is_answered_privately_and_changes_nothing(
    sworld: World, action: str,
) -> None:
    case, card = await pending_card(sworld, "BAD-1")
    assert sworld.sender is not None and sworld.slack is not None
    before = await audit.history(sworld.bot.svc.store, case.id)

    answer = await sworld.sender.click(action, '{"case":"x"}', MARIA, message_ts=card["ts"])
    await sworld.settle()

    assert answer.status_code == 200
    assert any("malformed" in t for t in responses(sworld))
    assert (await cases.get(sworld.bot.svc.store, case.id)).status == Status.PENDING_APPROVAL
    assert sworld.stripe.refunds == []
    assert sworld.slack.calls_to("chat.update") == []
    assert sworld.slack.calls_to("views.open") == []
    assert await audit.history(sworld.bot.svc.store, case.id) == before


async def test_amount_above_the_approvers_limit_needs_a_finance_lead(sworld: World) -> None:
    _, card = await pending_card(sworld, "LIMIT-1")  # 830.00, joe's limit is 300.00
    assert sworld.sender is not None
    value = buttons(card)[ids.APPROVE]["value"]

    await sworld.sender.click(ids.APPROVE, value, JOE, message_ts=card["ts"])
    await sworld.settle()
    assert any("can't approve refunds over 300.00 USD" in t for t in responses(sworld))
    assert sworld.stripe.refunds == []

    await sworld.sender.click(ids.APPROVE, value, FIONA, message_ts=card["ts"])
    await sworld.settle()
    assert len(sworld.stripe.refunds) == 1


async def test_two_approvers_clicking_at_once_make_one_refund(sworld: World) -> None:
    _, card = await pending_card(sworld, "BOTH-1")
    assert sworld.sender is not None
    value = buttons(card)[ids.APPROVE]["value"]

    answers = await asyncio.gather(
        sworld.sender.click(ids.APPROVE, value, MARIA, message_ts=card["ts"]),
        sworld.sender.click(ids.APPROVE, value, FIONA, message_ts=card["ts"]))
    await sworld.settle()

    assert [a.status_code for a in answers] == [200, 200]
    assert len(sworld.stripe.refunds) == 1
    told = [t for t in responses(sworld) if "Already approved by" in t]
    assert len(told) == 1 and "UTC" in told[0]


async def test_click_on_a_stale_card_requotes_and_reposts_instead_of_refunding(
    sworld: World,
) -> None:
    case, card = await pending_card(sworld, "STALE-1")
    assert sworld.sender is not None and sworld.slack is not None
    old_value = buttons(card)[ids.APPROVE]["value"]
    # a cash refund is recorded in Checkfront after the card went out; fiona approves,
    # the booking is re-quoted before anything is paid and the card shows the new quote
    sworld.checkfront.add_transaction("STALE-1", amount="100.00", status="REFUND",
                                      transaction_id="cash-1", gateway_id="Cash")
    await sworld.sender.click(ids.APPROVE, old_value, FIONA, message_ts=card["ts"])
    await sworld.settle()

    case = await cases.get(sworld.bot.svc.store, case.id)
    assert case.status == Status.PENDING_APPROVAL and "changed" in (case.status_reason or "")
    assert sworld.stripe.refunds == []
    fresh = sworld.slack.message(APPROVALS, card["ts"])
    new_value = buttons(fresh)[ids.APPROVE]["value"]
    assert new_value != old_value and case.quote_version in new_value

    await sworld.sender.click(ids.APPROVE, old_value, FIONA, message_ts=card["ts"])
    await sworld.settle()
    assert any("out of date" in t for t in responses(sworld))
    assert sworld.stripe.refunds == []


async def test_pause_makes_every_case_wait_and_resume_needs_an_approver(sworld: World) -> None:
    assert sworld.sender is not None
    await sworld.sender.command("pause storm front, checking manually", SAM)
    await sworld.settle()
    assert not (await automation_state(sworld.bot.svc.store)).paused
    assert any("Only refund approvers" in t for t in responses(sworld))

    await sworld.sender.command("pause storm front, checking manually", MARIA)
    await sworld.settle()
    assert (await automation_state(sworld.bot.svc.store)).paused
    sworld.paid_booking("PAUSE-1", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)])
    await sworld.cancel("PAUSE-1")
    await sworld.settle()
    case = (await cases.list_cases(sworld.bot.svc.store))[0]
    assert case.status == Status.PENDING_APPROVAL
    assert "automation paused" in (case.status_reason or "")
    assert sworld.stripe.refunds == []

    await sworld.sender.command("resume", MARIA)
    await sworld.settle()
    assert not (await automation_state(sworld.bot.svc.store)).paused


async def test_quote_command_answers_privately_and_unknown_bookings_get_help(
    sworld: World,
) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    sworld.paid_booking("QUOT-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])

    ok = await sworld.sender.command("quote QUOT-1", SAM)
    missing = await sworld.sender.command("quote NOPE-404", SAM)
    unknown = await sworld.sender.command("frobnicate", SAM)
    await sworld.settle()

    assert ok.status_code == missing.status_code == unknown.status_code == 200
    posted = [c.params for c in sworld.slack.calls_to("response_url")]
    quote = next(p for p in posted if "QUOT-1" in json.dumps(p))
    assert quote["response_type"] == "ephemeral"
    assert "95.00" in json.dumps(quote)
    assert any("no booking" in str(p.get("text")).lower() for p in posted)
    assert any("frobnicate" in str(p.get("text")) for p in posted)
    assert await cases.list_cases(sworld.bot.svc.store) == []


async def test_quote_command_names_an_open_case_stored_under_the_booking_code(
    sworld: World,
) -> None:
    """A case opened before cases were keyed on the booking (its id fell back to the code) is
    still the booking's open case for `/refund quote`, which then offers no second request."""
    assert sworld.sender is not None and sworld.slack is not None
    case, _ = await pending_card(sworld, "QOLD-1")
    async with sworld.bot.svc.store.transaction() as tx:
        await tx.execute("UPDATE cases SET booking_id = booking_code WHERE id = ?", (case.id,))

    await sworld.sender.command("quote QOLD-1", SAM)
    await sworld.settle()

    posted = [c.params for c in sworld.slack.calls_to("response_url")]
    answer = json.dumps(next(p for p in posted if "QOLD-1" in json.dumps(p)))
    assert f"Case #{case.id} for this booking is already open" in answer
    assert ids.REQUEST not in answer


async def test_request_refund_button_opens_a_case(sworld: World) -> None:
    assert sworld.sender is not None
    sworld.paid_booking("REQ-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    booking_id = str(sworld.checkfront.booking("REQ-1").booking_id)

    await sworld.sender.click(ids.REQUEST, json.dumps({"b": booking_id, "w": None}), SAM)
    await sworld.settle()

    case = (await cases.list_cases(sworld.bot.svc.store))[0]
    assert case.requested_by == SAM and case.source == "slack"
    assert case.status == Status.REFUNDED  # 95.00 is within the auto-approve limit
    assert len(sworld.stripe.refunds) == 1


@pytest.mark.parametrize("problem", ["bad signature", "old timestamp"])
async def test_unsigned_or_replayed_requests_get_401_and_do_nothing(
    sworld: World, problem: str,
) -> None:
    case, card = await pending_card(sworld, "SIGN-1")
    assert sworld.sender is not None and sworld.slack is not None
    body = sworld.sender.click_body(ids.APPROVE, buttons(card)[ids.APPROVE]["value"],
                                    FIONA, message_ts=card["ts"])
    signing = ({"secret_override": "not-the-secret"} if problem == "bad signature"
               else {"timestamp": int(time.time()) - 6 * 60})

    answer = await sworld.sender.post(body, **signing)
    await sworld.settle()

    assert answer.status_code == 401
    assert sworld.stripe.refunds == []
    assert (await cases.get(sworld.bot.svc.store, case.id)).status == Status.PENDING_APPROVAL


async def test_slack_429_is_retried_after_retry_after_and_the_card_is_not_lost(
    sworld: World,
) -> None:
    assert sworld.slack is not None
    sworld.slack.inject("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()

    _, card = await pending_card(sworld, "RATE-1")

    posts = sworld.slack.calls_to("chat.postMessage")
    assert [p.faulted for p in posts] == [True, False]
    assert posts[1].at - posts[0].at >= 1.0
    assert time.monotonic() - started >= 1.0
    assert "RATE-1" in all_text(card)


async def test_report_command_gives_figures_and_a_csv_of_every_refund(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    for code in ("REP-1", "REP-2"):
        sworld.paid_booking(code, [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
        await sworld.cancel(code)
    await sworld.settle()
    today = time.strftime("%Y-%m-%d", time.gmtime())

    await sworld.sender.command(f"report {today} {today}", FIONA)
    await sworld.sender.command("report yesterday", FIONA)
    await sworld.settle()

    texts = responses(sworld)
    assert any("USD: 2 refund(s), 190.00 USD" in t for t in texts)
    assert any("dates are YYYY-MM-DD" in t for t in texts)
    files = [f for f in sworld.slack.files.values() if f.completed]
    assert len(files) == 1 and files[0].content is not None
    lines = files[0].content.decode().splitlines()
    assert lines[0].startswith("refunded_at,booking,case,currency,quoted,refunded,policies")
    assert len(lines) == 3 and "REP-1" in lines[1] + lines[2]
    assert all("standard-48h" in line and "auto_approve" in line and "re_" in line
               for line in lines[1:])


async def test_breaker_alert_has_a_resume_button_only_approvers_can_use(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    await set_automation(sworld.bot.svc, paused=True, by="anomaly-detector",
                         reason="14 refunds in the last hour; usually 0.6 at this hour")
    await sworld.settle()
    alert = sworld.slack.messages_in(APPROVALS)[-1]
    assert "14 refunds in the last hour" in all_text(alert)
    resume_value = buttons(alert)[ids.RESUME]["value"]

    await sworld.sender.click(ids.RESUME, resume_value, SAM, message_ts=alert["ts"])
    await sworld.settle()
    assert (await automation_state(sworld.bot.svc.store)).paused

    await sworld.sender.click(ids.RESUME, resume_value, MARIA, message_ts=alert["ts"])
    await sworld.settle()
    assert not (await automation_state(sworld.bot.svc.store)).paused


async def test_posts_waiting_in_the_outbox_survive_a_restart(tmp_path: Path) -> None:
    # a short grace period: closing gives up on the unsent card after it (the card stays in
    # the store either way; the default grace only made the two closes wait 5 s each)
    sworld = await World.start(tmp_path, slack=True, shutdown_grace_seconds=0.5)
    try:
        await posts_waiting_survive_a_restart(sworld)
    finally:
        await sworld.stop()


async def posts_waiting_survive_a_restart(sworld: World) -> None:
    assert sworld.slack is not None
    sworld.slack.inject("chat.postMessage", status=500, times=50)  # Slack is down for now
    sworld.paid_booking("DOWN-1", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await sworld.cancel("DOWN-1")
    await sworld.bot.worker.drain()
    for _ in range(500):   # the outbox has tried the card and been refused (10 s at most)
        if sworld.slack.calls_to("chat.postMessage"):
            break
        await asyncio.sleep(0.02)
    assert sworld.slack.calls_to("chat.postMessage")
    assert [r.kind for r in await sworld.bot.slack.outbox.pending()] == ["card"]
    await sworld.bot.close()
    sworld.slack.clear()  # Slack is back

    from bot.app import Bot
    from sandbox.http import start

    restarted = await Bot.create(sworld.bot.settings)
    server = await start(restarted.web)
    try:
        assert restarted.slack is not None
        await restarted.slack.outbox.drain()
        cards = [m for m in sworld.slack.messages_in(APPROVALS) if "DOWN-1" in all_text(m)]
        assert len(cards) == 1 and ids.APPROVE in buttons(cards[0])
        assert await restarted.slack.outbox.pending() == []
    finally:
        await server.stop()


async def test_posts_to_one_channel_are_paced(sworld: World) -> None:
    assert sworld.slack is not None
    for n in range(3):
        sworld.paid_booking(f"PACE-{n}", [Item("kayak-tour", "840.00", "40.00",
                                               hours_ahead=96)])
        await sworld.cancel(f"PACE-{n}")
    await sworld.settle()

    posts = sworld.slack.calls_to("chat.postMessage")
    assert len(posts) == 3
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert all(gap >= 0.05 for gap in gaps), gaps  # the world paces at 0.05 s per channel


async def test_status_command_shows_the_case_history(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    sworld.paid_booking("STAT-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await sworld.cancel("STAT-1")
    await sworld.settle()

    await sworld.sender.command("status STAT-1", SAM)
    await sworld.settle()

    answer = json.dumps(sworld.slack.calls_to("response_url")[-1].params)
    for expected in ("STAT-1", "refunded", "quote.made", "stripe.refund"):
        assert expected in answer, expected


async def test_checkfront_down_gets_a_helpful_answer_and_changes_nothing(sworld: World) -> None:
    assert sworld.sender is not None
    sworld.paid_booking("DOWN-2", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    quick_checkfront_retries(sworld).checkfront.down()

    await sworld.sender.command("quote DOWN-2", SAM)
    await sworld.settle()

    assert any("Checkfront isn't answering right now" in t for t in responses(sworld))
    assert await cases.list_cases(sworld.bot.svc.store) == []


async def test_a_request_slack_retries_is_acked_and_not_handled_twice(sworld: World) -> None:
    case, card = await pending_card(sworld, "RETRY-HDR")
    assert sworld.sender is not None
    body = sworld.sender.click_body(ids.APPROVE, buttons(card)[ids.APPROVE]["value"],
                                    MARIA, message_ts=card["ts"])

    retried = await sworld.sender.client.post(sworld.sender.url, content=body.encode(), headers={
        **sworld.sender.signed(body), "X-Slack-Retry-Num": "1",
        "X-Slack-Retry-Reason": "http_timeout"})
    await sworld.settle()

    assert retried.status_code == 200 and retried.text == ""
    assert sworld.stripe.refunds == []
    assert (await cases.get(sworld.bot.svc.store, case.id)).status == Status.PENDING_APPROVAL
