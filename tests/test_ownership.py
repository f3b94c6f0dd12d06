"""I'll take it: a claim on a waiting card, shown on it, one holder at a time (compare-and-set),
released only by its holder, audited; the reminder and escalation each given once."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from bot.cli.world import APPROVALS, FIONA, JOE, MARIA, SAM, World
from bot.scheduler import ScheduledJobs
from bot.slack.nudges import NudgePoster
from bot.slack.ui import ids
from services.refunds import ownership, reminders
from services.store.db import utcnow
from tests.flow_helpers import unsafe_calls
from tests.slack_helpers import all_text, buttons, responses
from tests.test_slack import pending_card


def card_now(world: World, card: dict[str, Any]) -> dict[str, Any]:
    assert world.slack is not None
    return world.slack.message(APPROVALS, card["ts"])


async def audit_actions(world: World, case_id: int) -> list[tuple[str, str]]:
    rows = await world.bot.svc.store.fetch_all(
        "SELECT actor, action FROM audit_log WHERE case_id = ? AND action IN "
        "('case.claimed', 'case.released', 'case.reminder', 'case.escalation') ORDER BY id",
        (case_id,))
    return [(r["actor"], r["action"]) for r in rows]


async def test_a_claim_shows_on_the_card_and_a_second_claimer_is_told_who_has_it(
    sworld: World,
) -> None:
    assert sworld.sender is not None
    case, card = await pending_card(sworld, "OWN-1")
    value = buttons(card)[ids.CLAIM]["value"]
    assert buttons(card)[ids.CLAIM]["text"]["text"] == "I'll take it"

    await sworld.sender.click(ids.CLAIM, value, MARIA)
    await sworld.settle()
    taken = card_now(sworld, card)
    assert f"<@{MARIA}> is on it" in all_text(taken)
    assert ids.RELEASE in buttons(taken) and ids.CLAIM not in buttons(taken)
    assert {ids.APPROVE, ids.DENY, ids.ADJUST} <= set(buttons(taken))

    await sworld.sender.click(ids.CLAIM, value, JOE)          # a card drawn before the claim
    await sworld.sender.click(ids.RELEASE, value, JOE)        # not his to release
    await sworld.settle()
    told = responses(sworld)
    assert any(f"<@{MARIA}> is already on it" in t for t in told)
    assert any(t.startswith("Only its holder can release it") for t in told)
    assert (await ownership.holder(sworld.bot.svc.store, case.id)).user == MARIA

    await sworld.sender.click(ids.RELEASE, value, MARIA)
    await sworld.settle()
    assert ids.CLAIM in buttons(card_now(sworld, card))
    assert "is on it" not in all_text(card_now(sworld, card))
    assert await ownership.holder(sworld.bot.svc.store, case.id) is None
    assert await audit_actions(sworld, case.id) == [(MARIA, "case.claimed"),
                                                    (MARIA, "case.released")]
    assert unsafe_calls(sworld) == []


async def test_only_approvers_claim_and_a_decided_case_cannot_be_claimed(sworld: World) -> None:
    assert sworld.sender is not None
    case, card = await pending_card(sworld, "OWN-2")
    value = buttons(card)[ids.CLAIM]["value"]
    await sworld.sender.click(ids.CLAIM, value, SAM)
    await sworld.settle()
    assert await ownership.holder(sworld.bot.svc.store, case.id) is None
    refused = await sworld.bot.svc.store.fetch_all(
        "SELECT detail FROM audit_log WHERE action = 'slack.refused' AND actor = ?", (SAM,))
    assert [json.loads(r["detail"])["action"] for r in refused] == [ids.CLAIM]

    await sworld.sender.click(ids.APPROVE, buttons(card)[ids.APPROVE]["value"], FIONA)
    await sworld.settle()
    await sworld.sender.click(ids.CLAIM, value, MARIA)
    await sworld.settle()
    assert await ownership.holder(sworld.bot.svc.store, case.id) is None
    assert any("no longer waits for a person" in t for t in responses(sworld))


async def test_two_claims_at_once_give_one_holder(sworld: World) -> None:
    case, _ = await pending_card(sworld, "OWN-3")
    store = sworld.bot.svc.store
    results = await asyncio.gather(*(ownership.claim(store, case.id, user)
                                     for user in (MARIA, JOE, FIONA, MARIA)))
    holders = {r.holder.user for r in results if r.holder}
    assert len(holders) == 1
    winner = holders.pop()
    assert [r.claimed for r in results].count(True) == (2 if winner == MARIA else 1)
    assert [a for _, a in await audit_actions(sworld, case.id)] == ["case.claimed"]
    assert await ownership.release(store, case.id, SAM) is False


def jobs_for(world: World, **kwargs: Any) -> ScheduledJobs:
    slack = world.bot.slack
    assert slack is not None
    return ScheduledJobs(world.bot.svc, world.bot.settings.zone, on_nudge=NudgePoster(
        world.bot.svc.store, slack.outbox, slack.deps.rules),
        remind_after=timedelta(hours=4), escalate_after=timedelta(hours=24), **kwargs)


async def test_one_reminder_then_one_escalation_across_runs_and_restarts(
    sworld: World,
) -> None:
    assert sworld.slack is not None
    case, card = await pending_card(sworld, "LATE-1")
    jobs = jobs_for(sworld)
    now = utcnow()

    assert await jobs.reminders(now + timedelta(hours=3)) == []     # not yet
    first = await asyncio.gather(jobs.reminders(now + timedelta(hours=5)),
                                 jobs.reminders(now + timedelta(hours=5)))
    await jobs_for(sworld).reminders(now + timedelta(hours=6))      # another run, a restart
    await sworld.settle()
    assert sorted(n.kind for run in first for n in run) == ["reminder"]
    thread = sworld.slack.replies(APPROVALS, card["ts"])
    assert len(thread) == 1
    assert f"<@{MARIA}>" in thread[0]["text"] and f"<@{JOE}>" in thread[0]["text"]
    assert "LATE-1" in thread[0]["text"] and "830.00 USD" in thread[0]["text"]

    await jobs.reminders(now + timedelta(hours=25))
    await jobs_for(sworld).reminders(now + timedelta(hours=30))
    await sworld.settle()
    thread = sworld.slack.replies(APPROVALS, card["ts"])
    assert len(thread) == 2
    assert "Escalated" in thread[1]["text"] and f"<@{FIONA}>" in thread[1]["text"]
    assert await reminders.given(sworld.bot.svc.store, case.id) == ["reminder", "escalation"]
    assert [a for _, a in await audit_actions(sworld, case.id)] == [
        "case.reminder", "case.escalation"]
    assert unsafe_calls(sworld) == []


async def test_a_crash_between_posting_and_storing_the_reminder_posts_it_once(
    sworld: World,
) -> None:
    assert sworld.slack is not None and sworld.bot.slack is not None
    case, card = await pending_card(sworld, "LATE-2")
    jobs = jobs_for(sworld)
    later = utcnow() + timedelta(hours=5)
    owed = await reminders.due(sworld.bot.svc.store, later, remind_after=timedelta(hours=4),
                               escalate_after=None)
    assert jobs.on_nudge is not None
    await jobs.on_nudge(owed[0])               # queued, then the bot died before `mark`
    await jobs_for(sworld).reminders(later)    # the next run after the restart
    await sworld.settle()
    assert len(sworld.slack.replies(APPROVALS, card["ts"])) == 1
    assert await reminders.given(sworld.bot.svc.store, case.id) == ["reminder"]


async def test_the_reminder_mentions_the_approver_group_or_the_holder(tmp_path: Any) -> None:
    world = await World.start(tmp_path, slack=True, slack_approver_group="S0APPROVERS")
    try:
        assert world.slack is not None
        _, card = await pending_card(world, "LATE-3")
        await jobs_for(world).reminders(utcnow() + timedelta(hours=5))
        await world.settle()
        reply = world.slack.replies(APPROVALS, card["ts"])[0]["text"]
        assert "<!subteam^S0APPROVERS>" in reply and "I'll take it" in reply

        case2, card2 = await pending_card(world, "LATE-4")
        await ownership.claim(world.bot.svc.store, case2.id, JOE)
        await jobs_for(world).reminders(utcnow() + timedelta(hours=5))
        await world.settle()
        reply2 = world.slack.replies(APPROVALS, card2["ts"])[0]["text"]
        assert f"Reminder for <@{JOE}>" in reply2 and "subteam" not in reply2
        assert unsafe_calls(world) == []
    finally:
        await world.stop()
