"""Teams through the real Agents SDK app: activities signed by a local token authority, posted
by the Bot Connector stand-in; cards posted, approved, adjusted, denied and refreshed, refusals,
commands, restarts, 429s, and a case clicked in Slack and Teams at once refunding once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli.world import (
    T_FIONA,
    T_JOE,
    T_MARIA,
    T_SAM,
    TEAMS_APPROVALS,
    Item,
    World,
)
from services.refunds import cases
from services.refunds.models import Case, Status
from services.store import audit


@pytest.fixture
async def tworld(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.start(tmp_path, teams=True)
    try:
        yield w
    finally:
        await w.stop()


async def pending(world: World, code: str, total: str = "840.00") -> Case:
    world.paid_booking(code, [Item("kayak-tour", total, "40.00", hours_ahead=96)])
    await world.cancel(code)
    await world.settle()
    found = await cases.latest_for_booking(world.bot.svc.store, code)
    assert found is not None and found.status == Status.PENDING_APPROVAL
    return found


def posted_card(world: World, case: Case) -> tuple[str, dict]:
    assert world.teams is not None
    for activity in world.teams.shown(TEAMS_APPROVALS):
        for attachment in activity.get("attachments") or []:
            actions = str(attachment["content"])
            if f"'case_id': {case.id}," in actions or f"Case #{case.id} " in actions:
                return activity["id"], attachment["content"]
    raise AssertionError(f"no card for case {case.id}")


async def click(world: World, case: Case, verb: str, user: str, **inputs: str) -> tuple[int, dict]:
    assert world.teams is not None
    activity_id, _card = posted_card(world, case)
    status, body = await world.teams.invoke(
        verb, {"case_id": case.id, "version": case.quote_version}, user,
        conversation=TEAMS_APPROVALS, activity_id=activity_id, channel=TEAMS_APPROVALS,
        inputs=inputs or None)
    return status, body


def card_text(card: dict) -> str:
    return str(card)


async def test_a_case_needing_a_person_posts_an_approval_card(tworld: World) -> None:
    case = await pending(tworld, "TMS-1")
    _id, card = posted_card(tworld, case)
    assert card["version"] == "1.5" and card["type"] == "AdaptiveCard"
    verbs = str(card)
    assert "'verb': 'approve'" in verbs and "'verb': 'deny'" in verbs and "'verb': 'adjust'" \
        in verbs


async def test_approve_refunds_once_and_refreshes_the_card(tworld: World) -> None:
    case = await pending(tworld, "TMS-2")
    status, body = await click(tworld, case, "approve", T_FIONA)
    assert status == 200 and body["statusCode"] == 200
    assert body["type"] == "application/vnd.microsoft.card.adaptive"
    await tworld.settle()
    assert len(tworld.stripe.refunds) == 1
    assert (await cases.get(tworld.bot.svc.store, case.id)).status == Status.REFUNDED
    _id, card = posted_card(tworld, case)   # the posted activity edited for everyone
    assert "refunded" in card_text(card) and "'verb': 'approve'" not in card_text(card)


async def test_adjust_validates_inline_then_approves_that_amount(tworld: World) -> None:
    case = await pending(tworld, "TMS-3")
    status, body = await click(tworld, case, "adjust", T_MARIA, amount="12.345", reason="x")
    assert status == 200 and "decimals" in card_text(body["value"])
    assert tworld.stripe.refunds == []
    status, body = await click(tworld, case, "adjust", T_MARIA, amount="600.00",
                               reason="goodwill agreed by phone")
    await tworld.settle()
    assert [r.amount for r in tworld.stripe.refunds] == [60000]


async def test_deny_with_a_reason_refreshes_the_card(tworld: World) -> None:
    case = await pending(tworld, "TMS-4")
    await click(tworld, case, "deny", T_MARIA, reason="no-show")
    await tworld.settle()
    assert (await cases.get(tworld.bot.svc.store, case.id)).status == Status.DENIED
    assert tworld.stripe.refunds == []
    assert "denied" in card_text(posted_card(tworld, case)[1])


async def test_a_non_approver_is_refused_audited_and_only_they_see_why(tworld: World) -> None:
    case = await pending(tworld, "TMS-5")
    before = posted_card(tworld, case)[1]
    status, body = await click(tworld, case, "approve", T_SAM)
    assert status == 200 and "Only refund approvers" in card_text(body["value"])
    status, body = await click(tworld, case, "approve", T_JOE)   # over joe's 300.00
    assert "can't approve refunds over" in card_text(body["value"])
    await tworld.settle()
    assert tworld.stripe.refunds == []
    assert posted_card(tworld, case)[1] == before    # the channel's card is unchanged
    refused = [e for e in await audit.history(tworld.bot.svc.store, case.id)
               if e.action == "teams.refused"]
    assert len(refused) == 2


async def test_a_command_is_answered_in_the_thread(tworld: World) -> None:
    assert tworld.teams is not None
    await pending(tworld, "TMS-6")
    conversation = f"{TEAMS_APPROVALS};messageid=1700000000000"
    status, _ = await tworld.teams.message("status TMS-6", T_SAM, conversation=conversation,
                                           channel=TEAMS_APPROVALS)
    assert status in (200, 202)
    said = [c for c in tworld.teams.calls if c.conversation == conversation]
    assert said and "pending approval" in said[-1].activity["text"]


async def test_an_unsigned_or_forged_activity_is_refused(tworld: World) -> None:
    assert tworld.teams is not None and tworld.authority is not None
    activity = {"type": "message", "text": "help", "channelId": "msteams",
                "serviceUrl": tworld.teams.service_url, "conversation": {"id": "x"},
                "from": {"id": "29:a"}, "recipient": {"id": "28:b"}}
    assert (await tworld.teams.send(activity, token=""))[0] == 401
    forged = tworld.authority.forged_token(tworld.teams.service_url)
    assert (await tworld.teams.send(activity, token=forged))[0] == 401


async def test_a_429_is_honoured_with_its_retry_after(tworld: World) -> None:
    assert tworld.teams is not None and tworld.bot.teams is not None
    tworld.teams.fail_next(1, retry_after=0.4)
    case = await pending(tworld, "TMS-7")
    outbox = tworld.bot.teams.delivery.outbox
    assert outbox.throttled == 1 and tworld.teams.calls == []   # put back, not lost
    for _ in range(100):
        if tworld.teams.calls:
            break
        await asyncio.sleep(0.05)
    first = tworld.teams.calls[0]
    assert first.at - tworld.teams.throttled_at[0] >= 0.4   # not before its Retry-After
    assert posted_card(tworld, case)


async def test_clicked_in_slack_and_teams_at_once_refunds_once(tmp_path: Path) -> None:
    from bot.cli.world import FIONA
    from tests.slack_helpers import buttons  # noqa: F401  (the Slack side's helpers)
    world = await World.start(tmp_path, teams=True, slack=True)
    try:
        case = await pending(world, "TMS-8")
        assert world.sender is not None and world.slack is not None
        from services.refunds import decisions
        slack_side = decisions.approve(world.bot.svc, case.id, by=FIONA,
                                       quote_version=case.quote_version)
        teams_side = click(world, case, "approve", T_FIONA)
        results = await asyncio.gather(slack_side, teams_side, return_exceptions=True)
        await world.settle()
        assert len(world.stripe.refunds) == 1
        assert any(not isinstance(r, Exception) for r in results)
    finally:
        await world.stop()


async def test_the_digest_is_posted_to_the_digest_channel(tworld: World) -> None:
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from bot.cli.world import TEAMS_DIGEST
    from bot.scheduler import catch_up
    from bot.teams.digest import TeamsDigestPoster
    from services.store.db import utcnow
    assert tworld.teams is not None and tworld.bot.teams is not None
    await pending(tworld, "TMS-9")
    tz = ZoneInfo("UTC")
    poster = TeamsDigestPoster(tworld.bot.svc, tz, tworld.bot.teams.delivery.outbox,
                               TEAMS_DIGEST)
    await catch_up(tworld.bot.svc, tz=tz, daily_at="00:01", on_digest=poster,
                   now=(utcnow() + timedelta(days=1)).replace(hour=8))
    await tworld.settle()
    shown = tworld.teams.cards(TEAMS_DIGEST)
    assert len(shown) == 1 and "Daily refunds digest" in str(shown[0])


async def test_conversation_references_survive_a_restart(tmp_path: Path) -> None:
    from bot.app import Bot
    from bot.teams import store as rows
    world = await World.start(tmp_path, teams=True)
    try:
        assert world.bot.teams is not None
        kept = await rows.conversation_for(world.bot.svc.store, TEAMS_APPROVALS)
        assert kept is not None and kept.service_url == world.teams.service_url  # type: ignore[union-attr]
        settings, connections = world.bot.settings, world.bot.teams.delivery.connections
        await world.bot.teams.stop()
        await world.bot.svc.store.close()
        again = await Bot.create(settings, teams_connections=connections)   # no install now
        try:
            found = await rows.conversation_for(again.svc.store, TEAMS_APPROVALS)
            assert found == kept
            assert again.teams is not None
            case = await cases.latest_for_booking(again.svc.store, "none")
            assert case is None
            await again.teams.delivery.outbox.add(TEAMS_APPROVALS, "alert", None,
                                                  {"text": "after the restart"})
            await again.teams.delivery.outbox.send_due()
            assert world.teams is not None
            assert "after the restart" in world.teams.transcript(TEAMS_APPROVALS)
        finally:
            await again.svc.store.close()
    finally:
        await world.stop()


async def test_doctor_warns_when_anonymous_teams_is_on(tmp_path: Path) -> None:
    from bot.cli.doctor import Partial, _teams
    from bot.cli.doctor_report import Status
    on = await _teams(Partial({"teams_app_id": "app", "teams_allow_anonymous": True,
                               "teams_approvals_channel": "19:x@thread.tacv2"}))
    assert [c.status for c in on] == [Status.OK, Status.WARN]
    assert "TEAMS_ALLOW_ANONYMOUS" in on[1].line()
    off = await _teams(Partial({"teams_app_id": "app"}))
    assert [c.status for c in off] == [Status.OK]


async def test_the_demo_part_approves_a_card_in_teams_and_refunds_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import demo_teams
    await demo_teams.show(tmp_path)
    out = capsys.readouterr().out
    assert "Only refund approvers" in out
    assert "refunded; Stripe holds 1 refund(s)" in out
