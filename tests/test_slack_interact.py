"""Interactions against the strict Slack stand-in: a Deny or Adjust on a case already decided
is answered inside the modal; Resume changes the switch once and updates its alert; a report
upload Slack refuses is answered privately with the fix; a click's card update jumps the
outbox queue within the channel's rate; Retry-After is honoured on every retry."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.cli.world import APPROVALS, FIONA, JOE, MARIA, SAM, Item, World
from bot.slack.delivery import ServerErrorRetryHandler
from bot.slack.outbox import retry_after_of
from bot.slack.ui import ids
from handlers.slack import views
from sandbox.slack_server import RESPONSE_URL
from services import outbox as posts
from services.refunds import cases
from services.refunds.automation import automation_state, set_automation
from services.refunds.models import Case, Status
from services.store import audit
from tests.slack_helpers import all_text, buttons, responses
from tests.slack_text_checks import unsafe


async def pending_card(world: World, code: str, *,
                       cancel: bool = True) -> tuple[Case, dict[str, Any]]:
    if cancel:
        world.paid_booking(code, [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
        await world.cancel(code)
        await world.settle()
    case = next(c for c in await cases.list_cases(world.bot.svc.store) if c.booking_code == code)
    assert case.status == Status.PENDING_APPROVAL
    assert world.slack is not None
    card = next(m for m in world.slack.messages_in(APPROVALS) if code in all_text(m))
    return case, card


async def open_modal(world: World, action: str, card: dict[str, Any], user: str) -> str:
    """Click Deny or Adjust; the private_metadata of the modal it opened."""
    assert world.sender is not None and world.slack is not None
    await world.sender.click(action, buttons(card)[action]["value"], user, message_ts=card["ts"])
    await world.settle()
    return str(world.slack.calls_to("views.open")[-1].params["view"]["private_metadata"])


def no_direct_messages(world: World) -> None:
    assert world.slack is not None
    for method in ("chat.postMessage", "conversations.open"):
        for call in world.slack.calls_to(method):
            assert str(call.params.get("channel", "C"))[:1] not in ("D", "U"), call.params
            assert call.error != "messages_tab_disabled"


def every_call_safe(world: World) -> None:
    assert world.slack is not None
    found = [p for c in world.slack.calls for p in unsafe(c.params)]
    assert found == []


async def test_deny_after_someone_approved_answers_inside_the_modal(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    case, card = await pending_card(sworld, "LATE-1")
    meta = await open_modal(sworld, ids.DENY, card, JOE)
    await sworld.sender.click(ids.APPROVE, buttons(card)[ids.APPROVE]["value"], MARIA,
                              message_ts=card["ts"])
    await sworld.settle()

    answer = await sworld.sender.submit_view(ids.DENY_VIEW, {ids.REASON_BLOCK: {
        ids.REASON_INPUT: "promo booking"}}, JOE, meta)
    await sworld.settle()

    body = answer.json()
    assert body["response_action"] == "errors"
    error = body["errors"][ids.REASON_BLOCK]
    assert "Already approved by u0maria" in error   # the name Slack sent with Maria's click
    assert "(UTC)" in error and " at " in error     # when, in the business's zone
    assert len(error) <= 150
    done = await cases.get(sworld.bot.svc.store, case.id)
    assert done.status == Status.REFUNDED and len(sworld.stripe.refunds) == 1
    no_direct_messages(sworld)
    every_call_safe(sworld)


async def test_adjust_after_a_denial_answers_on_the_amount_field(sworld: World) -> None:
    assert sworld.sender is not None
    case, card = await pending_card(sworld, "LATE-2")
    adjust_meta = await open_modal(sworld, ids.ADJUST, card, MARIA)
    deny_meta = await open_modal(sworld, ids.DENY, card, JOE)
    await sworld.sender.submit_view(ids.DENY_VIEW, {ids.REASON_BLOCK: {
        ids.REASON_INPUT: "booked under a promo"}}, JOE, deny_meta)
    await sworld.settle()

    answer = await sworld.sender.submit_view(ids.ADJUST_VIEW, {
        ids.AMOUNT_BLOCK: {ids.AMOUNT_INPUT: "500.00"},
        ids.REASON_BLOCK: {ids.REASON_INPUT: "goodwill"}}, MARIA, adjust_meta)
    await sworld.settle()

    assert answer.json()["response_action"] == "errors"
    assert answer.json()["errors"][ids.AMOUNT_BLOCK].startswith("Already denied by u0joe")
    assert (await cases.get(sworld.bot.svc.store, case.id)).status == Status.DENIED
    assert sworld.stripe.refunds == []
    no_direct_messages(sworld)


async def test_a_form_opened_before_a_requote_is_answered_in_the_modal(sworld: World) -> None:
    assert sworld.sender is not None
    case, card = await pending_card(sworld, "LATE-3")
    meta = await open_modal(sworld, ids.DENY, card, MARIA)
    data = json.loads(meta)
    data["v"] = "0" * len(str(data.get("v") or "x"))  # the quote this form was opened on
    answer = await sworld.sender.submit_view(ids.DENY_VIEW, {ids.REASON_BLOCK: {
        ids.REASON_INPUT: "no"}}, MARIA, json.dumps(data))
    assert answer.json()["response_action"] == "errors"
    assert "re-quoted" in answer.json()["errors"][ids.REASON_BLOCK]
    assert (await cases.get(sworld.bot.svc.store, case.id)).status == Status.PENDING_APPROVAL


async def test_a_decision_losing_the_race_after_the_ack_is_told_in_the_cards_channel(
    sworld: World,
) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    assert sworld.bot.slack is not None
    case, card = await pending_card(sworld, "LATE-4")
    meta = await open_modal(sworld, ids.DENY, card, JOE)
    await sworld.sender.click(ids.APPROVE, buttons(card)[ids.APPROVE]["value"], MARIA,
                              message_ts=card["ts"])
    await sworld.settle()
    form = views.metadata_of({"private_metadata": meta}, views.CaseRef)
    assert form is not None

    # the submission passed its check just before Maria's approval landed
    await views._deny(sworld.bot.slack.deps, JOE, form, "promo booking")

    told = sworld.slack.calls_to("chat.postEphemeral")
    assert [(c.params["channel"], c.params["user"]) for c in told] == [(APPROVALS, JOE)]
    assert told[0].ok and "already approved by <@U0MARIA>" in told[0].params["text"]
    assert (await cases.get(sworld.bot.svc.store, case.id)).status == Status.REFUNDED
    no_direct_messages(sworld)
    every_call_safe(sworld)


async def test_a_self_approval_is_refused_inside_the_adjust_modal_and_audited(
    tmp_path: Path,
) -> None:
    world = await World.start(tmp_path, slack=True, slack_no_self_approval=True)
    try:
        assert world.sender is not None and world.slack is not None
        world.paid_booking("SELF-1", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
        await world.sender.command("quote SELF-1", MARIA)
        await world.settle()
        request = next(e for r in world.slack.responses.values() for m in r
                       for b in m.get("blocks") or [] if b.get("type") == "actions"
                       for e in b["elements"] if e.get("action_id") == ids.REQUEST)
        await world.sender.click(ids.REQUEST, request["value"], MARIA)
        await world.settle()
        case, card = await pending_card(world, "SELF-1", cancel=False)
        assert case.requested_by == MARIA
        meta = await open_modal(world, ids.ADJUST, card, MARIA)

        answer = await world.sender.submit_view(ids.ADJUST_VIEW, {
            ids.AMOUNT_BLOCK: {ids.AMOUNT_INPUT: "500.00"},
            ids.REASON_BLOCK: {ids.REASON_INPUT: "mine"}}, MARIA, meta)
        await world.settle()

        assert ids.AMOUNT_BLOCK in answer.json()["errors"]
        assert world.stripe.refunds == []
        history = await audit.history(world.bot.svc.store, case.id)
        assert any(e.action == "slack.refused" for e in history)
    finally:
        await world.stop()


async def test_two_resume_clicks_post_one_resumed_and_the_alert_loses_its_button(
    sworld: World,
) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    await set_automation(sworld.bot.svc, paused=True, by="anomaly-detector",
                         reason="14 refunds in the last hour")
    await sworld.settle()
    alert = sworld.slack.messages_in(APPROVALS)[-1]
    value = buttons(alert)[ids.RESUME]["value"]

    await asyncio.gather(
        sworld.sender.click(ids.RESUME, value, MARIA, message_ts=alert["ts"]),
        sworld.sender.click(ids.RESUME, value, JOE, message_ts=alert["ts"]))
    await sworld.settle()

    assert not (await automation_state(sworld.bot.svc.store)).paused
    resumed = [m for m in sworld.slack.messages_in(APPROVALS)
               if "Automation resumed by" in all_text(m)]
    assert len(resumed) == 1
    updated = sworld.slack.message(APPROVALS, alert["ts"])
    assert ids.RESUME not in buttons(updated)
    assert "Resumed by <@U0" in all_text(updated) and "14 refunds" in all_text(updated)
    assert len([c for c in sworld.slack.calls_to("chat.update")
                if c.params.get("ts") == alert["ts"]]) == 1
    texts = responses(sworld)
    assert sum("Automation resumed:" in t for t in texts) == 1
    assert sum("already running" in t for t in texts) == 1
    every_call_safe(sworld)

    # a third click, long after: told privately, nothing posted
    await sworld.sender.click(ids.RESUME, value, FIONA, message_ts=alert["ts"])
    await sworld.settle()
    assert len([m for m in sworld.slack.messages_in(APPROVALS)
                if "Automation resumed by" in all_text(m)]) == 1
    assert "already running" in responses(sworld)[-1]


async def test_resume_by_command_also_updates_the_pause_alert(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    await sworld.sender.command("pause storm front", MARIA)
    await sworld.settle()
    alert = sworld.slack.messages_in(APPROVALS)[-1]
    assert ids.RESUME in buttons(alert)

    await sworld.sender.command("resume", JOE)
    await sworld.settle()

    assert ids.RESUME not in buttons(sworld.slack.message(APPROVALS, alert["ts"]))
    assert await posts.pause_alerts(sworld.bot.svc.store) == []


async def report_day(world: World) -> str:
    world.paid_booking("REPI-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await world.cancel("REPI-1")
    await world.settle()
    return time.strftime("%Y-%m-%d", time.gmtime())


async def test_report_in_a_channel_without_the_bot_says_to_invite_it(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    assert sworld.bot.slack is not None
    today = await report_day(sworld)
    sworld.slack.add_channel("C0OTHER", "ops")  # the bot was never invited
    sworld.slack.remove_member("C0OTHER")

    await sworld.sender.command(f"report {today} {today}", FIONA, channel="C0OTHER")
    await sworld.settle()

    texts = responses(sworld)
    assert any("USD: 1 refund(s)" in t for t in texts)
    assert any("not a member of <#C0OTHER>" in t and "/invite" in t for t in texts)
    assert not [f for f in sworld.slack.files.values() if f.completed]
    assert await sworld.bot.slack.outbox.pending() == []   # given up, not retried for ever
    every_call_safe(sworld)


async def test_report_in_a_direct_message_is_answered_at_once(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    assert sworld.bot.slack is not None
    today = await report_day(sworld)

    await sworld.sender.command(f"report {today} {today}", FIONA,
                                channel=sworld.slack.dm_channel(FIONA))
    await sworld.settle()

    answer = responses(sworld)[-1]
    assert "USD: 1 refund(s)" in answer and "direct message" in answer
    assert await sworld.bot.slack.outbox.pending() == []
    assert sworld.slack.calls_to("files.getUploadURLExternal") == []


async def test_a_clicks_card_update_jumps_fifteen_queued_posts(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    assert sworld.bot.slack is not None
    case, card = await pending_card(sworld, "JUMP-1")
    outbox = sworld.bot.slack.outbox
    for n in range(15):
        await outbox.add(APPROVALS, "alert", None, {"text": f"queued {n}"})

    await sworld.sender.click(ids.APPROVE, buttons(card)[ids.APPROVE]["value"], MARIA,
                              message_ts=card["ts"])
    await sworld.settle()

    calls = [c for c in sworld.slack.calls if c.method in ("chat.postMessage", "chat.update")]
    first_update = next(i for i, c in enumerate(calls)
                        if c.method == "chat.update" and c.params.get("ts") == card["ts"])
    queued_before = sum(1 for c in calls[:first_update]
                        if str(c.params.get("text", "")).startswith("queued"))
    assert queued_before <= 2, queued_before   # those already under way, not the 15
    # the channel's pace still holds between every two calls to it
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= 0.045, gaps
    assert (await cases.get(sworld.bot.svc.store, case.id)).status == Status.REFUNDED


async def test_a_429_holds_the_channel_for_its_retry_after(sworld: World) -> None:
    """With the client's own retries off, the outbox's retry still waits for Retry-After."""
    assert sworld.slack is not None and sworld.bot.slack is not None
    outbox = sworld.bot.slack.outbox
    outbox.client.retry_handlers.clear()
    outbox.retry_after = timedelta(milliseconds=10)
    sworld.slack.inject("chat.postMessage", status=429, retry_after=1)
    await outbox.add(APPROVALS, "alert", None, {"text": "first"})
    await outbox.add(APPROVALS, "alert", None, {"text": "second"})
    await asyncio.wait_for(sworld.settle(), timeout=10)

    calls = sworld.slack.calls_to("chat.postMessage")
    assert [c.faulted for c in calls] == [True, False, False]
    assert calls[1].at - calls[0].at >= 1.0    # the second row waited too: the channel held
    assert sorted(str(c.params["text"]) for c in calls[1:]) == ["first", "second"]


async def test_ephemeral_answers_are_retried_after_retry_after(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    sworld.slack.inject(RESPONSE_URL, status=429, retry_after=1)
    started = time.monotonic()
    await sworld.sender.command("help", SAM)
    await sworld.settle()

    answers = sworld.slack.calls_to(RESPONSE_URL)
    assert [c.faulted for c in answers] == [True, False]
    assert answers[1].at - answers[0].at >= 1.0
    assert time.monotonic() - started >= 1.0
    posted = [m["text"] for r in sworld.slack.responses.values() for m in r]
    assert posted == ["Refund bot commands"]   # the one answer, after the 429


async def test_a_5xx_with_retry_after_is_retried_after_it() -> None:
    handler = ServerErrorRetryHandler(max_retry_count=2)
    state = RetryState()
    request = HttpRequest(method="POST", url="https://slack.test/api/chat.update",
                          headers={}, body_params={})
    response = HttpResponse(status_code=503, headers={"Retry-After": ["0.3"]}, data=b"")
    assert await handler.can_retry_async(state=state, request=request, response=response)
    started = time.monotonic()
    await handler.prepare_for_next_attempt_async(state=state, request=request,
                                                 response=response)
    assert time.monotonic() - started >= 0.3
    assert state.current_attempt == 1


def test_retry_after_is_read_in_any_case_and_shape() -> None:
    assert retry_after_of({"retry-after": ["7"]}) == 7.0
    assert retry_after_of({"Retry-After": "2"}) == 2.0
    assert retry_after_of({"Retry-After": "soon"}) is None
    assert retry_after_of({}) is None and retry_after_of(None) is None
