"""Teams through the real Agents SDK app: activities signed by a local token authority, posted
by the Bot Connector stand-in; the real cards (bot.teams.cards) posted, approved, adjusted,
denied and refreshed for everyone, refusals answered to the clicker alone, commands, the
digest card with its chart, pause alerts edited when automation resumes, dispute and
failed-payment cards, restarts, 429s, and a case clicked in Slack and Teams at once refunding
once. Every card the stand-in recorded (posted, updated, each invoke's answer) is checked
against the Adaptive Card 1.5 schema when each test ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli.world import (
    APPROVALS,
    FIONA,
    T_FIONA,
    T_JOE,
    T_MARIA,
    T_SAM,
    TEAMS_APPROVALS,
    TEAMS_DIGEST,
    Item,
    World,
)
from bot.teams import store as rows
from services.refunds import cases
from services.refunds.models import Case, Status
from services.store import audit
from tests.slack_text_checks import EVIL as SLACK_EVIL
from tests.test_teams_cards import EVIL as TEAMS_EVIL
from tests.test_teams_cards import actions, inputs, texts, valid

CARD = "application/vnd.microsoft.card.adaptive"


def check_recorded(world: World) -> int:
    """Every card the stand-in recorded is a valid Adaptive Card 1.5; how many there were."""
    assert world.teams is not None
    shown = world.teams.recorded_cards()
    for card in shown:
        valid(card)
    return len(shown)


@pytest.fixture
async def tworld(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.start(tmp_path, teams=True)
    try:
        yield w
        check_recorded(w)
    finally:
        await w.stop()


async def pending(world: World, code: str, total: str = "840.00", *, name: str = "Sunset kayak",
                  customer: str = "Ana Silva") -> Case:
    world.paid_booking(code, [Item("kayak-tour", total, "40.00", 96, name)], customer=customer)
    await world.cancel(code)
    await world.settle()
    found = await cases.latest_for_booking(world.bot.svc.store, code)
    assert found is not None and found.status == Status.PENDING_APPROVAL
    return found


async def posted(world: World, case: Case) -> tuple[str, dict[str, Any]]:
    """The activity that shows the case's card in the approvals channel, as last updated."""
    assert world.teams is not None
    shown = await rows.activity_of(world.bot.svc.store, case.id)
    assert shown is not None, f"no card for case {case.id}"
    activity = world.teams.activity(TEAMS_APPROVALS, shown.activity_id)
    (attachment,) = activity["attachments"]
    assert attachment["contentType"] == CARD
    return shown.activity_id, attachment["content"]


async def click(world: World, case: Case, verb: str, user: str,
                **entered: str) -> dict[str, Any]:
    """A click on the posted card (Teams merges the inputs into the data): the card answered."""
    assert world.teams is not None
    activity_id, _card = await posted(world, case)
    status, body = await world.teams.invoke(
        verb, {"case_id": case.id, "version": case.quote_version}, user,
        conversation=TEAMS_APPROVALS, activity_id=activity_id, channel=TEAMS_APPROVALS,
        inputs=entered or None)
    assert status == 200 and body["statusCode"] == 200 and body["type"] == CARD
    return body["value"]


def verbs(card: dict[str, Any]) -> set[str]:
    return {a["verb"] for a in actions(card) if a["type"] == "Action.Execute"}


def seen(card: dict[str, Any]) -> str:
    return " ".join(texts(card))


def shown_texts(node: Any) -> list[str]:
    """What a card renders as Markdown or labels: every text but what an input holds (an
    input shows what was typed, as typed)."""
    if isinstance(node, dict) and str(node.get("type", "")).startswith("Input."):
        node = {k: v for k, v in node.items() if k != "value"}
    if isinstance(node, dict):
        return texts({k: v for k, v in node.items() if not isinstance(v, dict | list)}) + [
            t for v in node.values() if isinstance(v, dict | list) for t in shown_texts(v)]
    if isinstance(node, list):
        return [t for item in node for t in shown_texts(item)]
    return []


def updates_of(world: World, activity_id: str) -> int:
    assert world.teams is not None
    return sum(1 for c in world.teams.calls if c.method == "update" and
               c.activity_id == activity_id)


# --- the approval card and its decisions -----------------------------------------------------

async def test_a_case_needing_a_person_posts_the_real_approval_card(tworld: World) -> None:
    case = await pending(tworld, "TMS-1")
    _id, card = await posted(tworld, case)
    assert verbs(card) == {"approve", "deny", "adjust"}
    assert [a["title"] for a in card["actions"]][:3] == ["Approve", "Deny", "Adjust"]
    assert "830.00 USD" in card["body"][0]["text"] and "TMS-1" in card["body"][0]["text"]
    shown = seen(card)
    assert "Why a person is needed" in shown and "Ana" in shown and "Silva" not in shown
    assert "tms-1@example.test" not in shown
    urls = [a["url"] for a in actions(card) if a["type"] == "Action.OpenUrl"]
    assert urls[0].endswith("/booking/TMS-1")
    assert urls[1].startswith("https://dashboard.stripe.com/test/payments/pi_")
    assert {i["id"] for i in inputs(card)} == {"reason", "amount", "adjust_reason"}
    assert set(card["refresh"]["userIds"]) == {T_MARIA, T_JOE, T_FIONA}


async def test_approve_refunds_once_and_refreshes_the_card_for_everyone(tworld: World) -> None:
    case = await pending(tworld, "TMS-2")
    activity_id, _ = await posted(tworld, case)
    answered = await click(tworld, case, "approve", T_FIONA)
    assert not verbs(answered)        # the clicker's own view: the outcome, no buttons
    await tworld.settle()
    assert len(tworld.stripe.refunds) == 1
    assert (await cases.get(tworld.bot.svc.store, case.id)).status == Status.REFUNDED
    assert updates_of(tworld, activity_id) >= 1       # the posted activity edited
    _id, card = await posted(tworld, case)
    assert card["body"][0]["text"].startswith("Refunded 830.00 USD")
    assert not verbs(card) and "refresh" not in card
    assert tworld.teams is not None
    (reply,) = tworld.teams.replies_to(TEAMS_APPROVALS, activity_id)
    assert "refunded" in reply["text"]
    again = await click(tworld, case, "approve", T_MARIA)   # a late click: nothing more
    await tworld.settle()
    assert len(tworld.stripe.refunds) == 1 and not verbs(again)


async def test_adjust_validates_inline_then_approves_that_amount(tworld: World) -> None:
    case = await pending(tworld, "TMS-3")
    activity_id, before = await posted(tworld, case)
    bad = await click(tworld, case, "adjust", T_MARIA, amount="12.345", adjust_reason="")
    body = bad["body"]
    at = next(i for i, b in enumerate(body) if b.get("id") == "amount")
    assert body[at]["value"] == "12.345"          # the form open, what was typed kept
    assert body[at + 1]["color"] == "Attention" and "decimals" in body[at + 1]["text"]
    why = next(i for i, b in enumerate(body) if b.get("id") == "adjust_reason")
    assert "Say why" in body[why + 1]["text"]
    assert verbs(bad) == {"adjust", "refresh"}
    assert tworld.stripe.refunds == [] and (await posted(tworld, case))[1] == before
    await click(tworld, case, "adjust", T_MARIA, amount="600.00",
                adjust_reason="goodwill agreed by phone")
    await tworld.settle()
    assert [r.amount for r in tworld.stripe.refunds] == [60000]
    _id, card = await posted(tworld, case)
    assert card["body"][0]["text"].startswith("Refunded 600.00 USD")
    assert "Approved by" in seen(card) and updates_of(tworld, activity_id) >= 1
    approved = next(t for t in texts(card) if t.startswith("✅ Approved by "))   # and from what
    assert T_MARIA in approved
    assert approved.endswith("(adjusted from 830.00 USD: goodwill agreed by phone)")


async def test_deny_needs_a_reason_then_refreshes_the_card(tworld: World) -> None:
    case = await pending(tworld, "TMS-4")
    activity_id, _ = await posted(tworld, case)
    empty = await click(tworld, case, "deny", T_MARIA, reason="  ")
    at = next(i for i, b in enumerate(empty["body"]) if b.get("id") == "reason")
    assert "Say why" in empty["body"][at + 1]["text"]
    await click(tworld, case, "deny", T_MARIA, reason="no-show")
    await tworld.settle()
    assert (await cases.get(tworld.bot.svc.store, case.id)).status == Status.DENIED
    assert tworld.stripe.refunds == []
    _id, card = await posted(tworld, case)
    assert "Denied by" in seen(card) and "no-show" in seen(card) and not verbs(card)
    assert updates_of(tworld, activity_id) >= 1


async def test_a_refused_clicker_alone_sees_why_and_the_card_stays(tworld: World) -> None:
    case = await pending(tworld, "TMS-5")
    activity_id, before = await posted(tworld, case)
    refused = await click(tworld, case, "approve", T_SAM)
    assert "Only refund approvers" in seen(refused)
    assert not verbs(refused) and not inputs(refused)          # no decision for Sam
    assert refused["refresh"]["userIds"] == [T_SAM]            # refreshed for Sam only
    assert "Only refund approvers" in seen(await click(tworld, case, "refresh", T_SAM))
    over = await click(tworld, case, "approve", T_JOE)         # over Joe's 300.00
    assert "can't approve refunds over" in seen(over) and over["refresh"]["userIds"] == [T_JOE]
    await tworld.settle()
    assert tworld.stripe.refunds == []
    assert (await posted(tworld, case))[1] == before and updates_of(tworld, activity_id) == 0
    refused_rows = [e for e in await audit.history(tworld.bot.svc.store, case.id)
                    if e.action == "teams.refused"]
    assert len(refused_rows) == 2
    assert verbs(await click(tworld, case, "refresh", T_MARIA)) == {"approve", "deny", "adjust"}


async def test_hostile_text_stays_inert_in_every_teams_card(tworld: World) -> None:
    evil = f"{TEAMS_EVIL} {SLACK_EVIL}"
    case = await pending(tworld, "TMS-10", name=evil, customer=evil)
    await click(tworld, case, "adjust", T_MARIA, amount="1.234", adjust_reason=evil)
    await click(tworld, case, "deny", T_MARIA, reason=evil)
    await tworld.settle()
    assert check_recorded(tworld) >= 4
    assert tworld.teams is not None
    for card in tworld.teams.recorded_cards():
        for text in shown_texts(card):
            for live in ("](", "://evil", "**bold**", "*FORGED*", "_slanted_", "`code`",
                         "<at>", "<!channel>", "<@U123>", "<https://", "~~s~~",
                         "ana@example.test"):
                assert live not in text, (live, text)
    assert "Denied by" in seen((await posted(tworld, case))[1])


# --- commands, alerts, the digest ------------------------------------------------------------

async def test_a_command_is_answered_in_the_thread_as_a_card(tworld: World) -> None:
    assert tworld.teams is not None
    await pending(tworld, "TMS-6")
    conversation = f"{TEAMS_APPROVALS};messageid=1700000000000"
    status, _ = await tworld.teams.message("status TMS-6", T_SAM, conversation=conversation,
                                           channel=TEAMS_APPROVALS)
    assert status in (200, 202)
    said = [c for c in tworld.teams.calls if c.conversation == conversation]
    (attachment,) = said[-1].activity["attachments"]
    answer = valid(attachment["content"])
    assert "pending approval" in seen(answer) and "TMS-6" in seen(answer)


async def test_pause_alert_has_resume_and_is_edited_in_place_once_resumed(
        tworld: World) -> None:
    assert tworld.teams is not None
    conversation = f"{TEAMS_APPROVALS};messageid=1700000000001"
    await tworld.teams.message("pause Stripe is slow", T_MARIA, conversation=conversation,
                               channel=TEAMS_APPROVALS)
    await tworld.settle()
    alert = next(a for a in tworld.teams.shown(TEAMS_APPROVALS) if a.get("attachments") and
                 "resume" in verbs(a["attachments"][0]["content"]))
    assert "Stripe is slow" in seen(alert["attachments"][0]["content"])
    status, body = await tworld.teams.invoke("resume", {}, T_SAM, conversation=TEAMS_APPROVALS,
                                             activity_id=alert["id"], channel=TEAMS_APPROVALS)
    assert status == 200 and "Only refund approvers" in seen(body["value"])
    status, body = await tworld.teams.invoke("resume", {}, T_MARIA,
                                             conversation=TEAMS_APPROVALS,
                                             activity_id=alert["id"], channel=TEAMS_APPROVALS)
    assert status == 200 and "Resumed by" in seen(body["value"])
    await tworld.settle()
    edited = tworld.teams.activity(TEAMS_APPROVALS, alert["id"])["attachments"][0]["content"]
    assert "then resumed" in seen(edited) and not verbs(edited)
    assert any("Automation resumed" in line for line in tworld.teams.transcript(
        TEAMS_APPROVALS))
    assert await rows.pause_alerts(tworld.bot.svc.store) == []


async def test_dispute_and_failed_payment_cards(tworld: World) -> None:
    assert tworld.teams is not None
    tworld.paid_booking("TMS-11", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await tworld.cancel("TMS-11")
    await tworld.settle()
    intent = next(p for p in tworld.stripe.payment_intents.values()
                  if p.metadata.get("booking") == "TMS-11")
    assert intent.latest_charge is not None
    dispute = tworld.stripe.create_dispute(intent.latest_charge, reason="credit_not_processed",
                                           due_by=int(time.time()) + 7 * 86400)
    tworld.stripe.fail_payment(25000, "usd", metadata={"booking": "TMS-11"})
    await tworld.settle()
    shown = [c for c in tworld.teams.cards(TEAMS_APPROVALS)
             if c["body"][0]["text"].startswith(("Dispute", "Payment failed"))]
    titles = sorted(c["body"][0]["text"] for c in shown)
    assert titles == ["Dispute · 105.00 USD", "Payment failed · 250.00 USD"]
    urls = [a["url"] for c in shown for a in actions(c)]
    assert f"https://dashboard.stripe.com/test/disputes/{dispute.id}" in urls
    before = len(tworld.teams.calls)
    tworld.stripe.update_dispute_status(dispute.id, "under_review")
    await tworld.settle()
    edits = [c for c in tworld.teams.calls[before:] if c.method == "update"]
    assert edits and "under_review" in seen(edits[-1].activity["attachments"][0]["content"])


async def test_a_stuck_event_gets_an_alert_card(tworld: World) -> None:
    from services.notify import StuckEvent
    assert tworld.teams is not None and tworld.bot.teams is not None
    await tworld.bot.teams.delivery.notifier.event_stuck(StuckEvent(
        41, "stripe", "charge.refunded", "ch_1", "TimeoutError: [x](https://evil.example)", 8,
        "2026-01-01T00:00:00+00:00"))
    await tworld.settle()
    card = tworld.teams.cards(TEAMS_APPROVALS)[-1]
    assert "Event #41" in card["body"][0]["text"]
    assert "events retry 41" in seen(card) and "](" not in seen(card)


@pytest.mark.both_backends
async def test_the_digest_card_is_posted_with_its_chart(tworld: World) -> None:
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from bot.scheduler import catch_up
    from bot.teams.digest import TeamsDigestPoster
    from services.store.db import utcnow
    assert tworld.teams is not None and tworld.bot.teams is not None
    case = await pending(tworld, "TMS-9")
    await click(tworld, case, "approve", T_FIONA)
    await tworld.settle()
    tz = ZoneInfo("UTC")
    poster = TeamsDigestPoster(tworld.bot.svc, tz, tworld.bot.teams.delivery.outbox,
                               TEAMS_DIGEST)
    await catch_up(tworld.bot.svc, tz=tz, daily_at="00:01", on_digest=poster,
                   now=(utcnow() + timedelta(days=1)).replace(hour=8))
    await tworld.settle()
    (card,) = tworld.teams.cards(TEAMS_DIGEST)
    assert card["body"][0]["text"].startswith("Refund digest · ")
    images = [b for b in card["body"] if b["type"] == "Image"]
    assert len(images) == 1 and images[0]["url"].startswith("data:image/png;base64,")
    assert "830.00 USD" in seen(card)
    # the day reconciled again (its leader died before recording it): no second digest
    from services.finance.runs import load_run
    again = await load_run(tworld.bot.svc.store, utcnow().date())
    assert again is not None
    await poster(again, [])
    await tworld.settle()
    assert len(tworld.teams.cards(TEAMS_DIGEST)) == 1


async def test_a_failed_daily_run_is_told_once_in_the_digest_channel(tworld: World) -> None:
    from zoneinfo import ZoneInfo

    from bot.teams.digest import TeamsDigestPoster
    from services.store.db import utcnow
    assert tworld.teams is not None and tworld.bot.teams is not None
    poster = TeamsDigestPoster(tworld.bot.svc, ZoneInfo("Europe/Lisbon"),
                               tworld.bot.teams.delivery.outbox, TEAMS_DIGEST)
    for _ in range(2):   # failed, and failed again when tried again
        await poster.run_failed("2026-12-01", "Stripe: unavailable", utcnow())
    await tworld.settle()
    (card,) = tworld.teams.cards(TEAMS_DIGEST)
    assert card["body"][0]["text"] == "Daily reconciliation delayed"
    assert "for Tue 01 Dec 2026 could not run (Stripe: unavailable)" in seen(card)
    assert "(Europe/Lisbon)" in seen(card)


# --- delivery: 429s, restarts, both platforms --------------------------------------------------

async def test_a_429_is_honoured_with_its_retry_after(tworld: World) -> None:
    assert tworld.teams is not None and tworld.bot.teams is not None
    tworld.teams.fail_next(1, retry_after=0.4)
    case = await pending(tworld, "TMS-7")
    outbox = tworld.bot.teams.delivery.outbox
    assert outbox.throttled == 1 and len(tworld.teams.throttled_at) == 1   # put back
    for _ in range(200):   # until the bot has the answer (the call arrives before it)
        if await rows.activity_of(tworld.bot.svc.store, case.id) is not None:
            break
        await asyncio.sleep(0.05)
    first = tworld.teams.calls[0]
    assert first.at - tworld.teams.throttled_at[0] >= 0.4   # not before its Retry-After
    assert verbs((await posted(tworld, case))[1]) == {"approve", "deny", "adjust"}


async def test_an_unsigned_or_forged_activity_is_refused(tworld: World) -> None:
    assert tworld.teams is not None and tworld.authority is not None
    activity = {"type": "message", "text": "help", "channelId": "msteams",
                "serviceUrl": tworld.teams.service_url, "conversation": {"id": "x"},
                "from": {"id": "29:a"}, "recipient": {"id": "28:b"}}
    assert (await tworld.teams.send(activity, token=""))[0] == 401
    forged = tworld.authority.forged_token(tworld.teams.service_url)
    assert (await tworld.teams.send(activity, token=forged))[0] == 401


async def test_conversation_references_survive_a_restart(tmp_path: Path) -> None:
    from bot.app import Bot
    world = await World.start(tmp_path, teams=True)
    try:
        assert world.bot.teams is not None and world.teams is not None
        kept = await rows.conversation_for(world.bot.svc.store, TEAMS_APPROVALS)
        assert kept is not None and kept.service_url == world.teams.service_url
        settings, connections = world.bot.settings, world.bot.teams.delivery.connections
        await world.bot.teams.stop()
        await world.bot.svc.store.close()
        again = await Bot.create(settings, teams_connections=connections)   # no install now
        try:
            assert await rows.conversation_for(again.svc.store, TEAMS_APPROVALS) == kept
            assert again.teams is not None
            await again.svc.notifier.automation_changed(True, "after the restart", T_MARIA)
            await again.teams.delivery.outbox.send_due()
            card = world.teams.cards(TEAMS_APPROVALS)[-1]
            assert "after the restart" in seen(card) and verbs(card) == {"resume"}
        finally:
            await again.svc.store.close()
        check_recorded(world)
    finally:
        await world.stop()


async def test_approved_in_slack_and_teams_at_the_same_moment_refunds_once(
        tmp_path: Path) -> None:
    from bot.slack.ui import ids
    from tests.slack_helpers import buttons
    world = await World.start(tmp_path, teams=True, slack=True)
    try:
        case = await pending(world, "TMS-8")
        assert world.sender is not None and world.slack is not None
        slack_card = world.slack.messages_in(APPROVALS)[-1]
        slack_click = world.sender.click(ids.APPROVE, buttons(slack_card)[ids.APPROVE]["value"],
                                         FIONA, message_ts=slack_card["ts"])   # signed
        slack_answer, teams_answer = await asyncio.gather(
            slack_click, click(world, case, "approve", T_FIONA))
        assert slack_answer.status_code == 200 and not verbs(teams_answer)
        await world.settle()
        assert len(world.stripe.refunds) == 1
        assert world.stripe.refunds[0].amount == 83000
        assert (await cases.get(world.bot.svc.store, case.id)).status == Status.REFUNDED
        decided = [e for e in await audit.history(world.bot.svc.store, case.id)
                   if e.action == "case.approved"]
        assert len(decided) == 1
        check_recorded(world)
    finally:
        await world.stop()


async def test_doctor_warns_when_anonymous_teams_is_on(tmp_path: Path) -> None:
    from bot.cli.doctor import Partial, _teams
    from bot.cli.doctor_report import Status as Check
    on = await _teams(Partial({"teams_app_id": "app", "teams_allow_anonymous": True,
                               "teams_approvals_channel": "19:x@thread.tacv2"}))
    assert [c.status for c in on] == [Check.OK, Check.WARN]
    assert "TEAMS_ALLOW_ANONYMOUS" in on[1].line()
    off = await _teams(Partial({"teams_app_id": "app"}))
    assert [c.status for c in off] == [Check.OK]


async def test_the_demo_part_shows_the_channel_and_refunds_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import demo_teams
    recorded = await demo_teams.show(tmp_path)
    out = capsys.readouterr().out
    for card in recorded:
        valid(card)
    assert len(recorded) >= 3
    assert "Refund needs approval · 830.00 USD · HBR-3001" in out
    assert "Customer: Ana" in out and "[Approve] [Deny] [Adjust]" in out
    assert "Only refund approvers" in out
    assert "Refunded 830.00 USD · HBR-3001" in out
    assert "refunded; Stripe holds 1 refund(s)" in out
