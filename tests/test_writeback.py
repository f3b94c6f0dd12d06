"""Checkfront write-back after the money moved: a failure is kept and retried until Checkfront
takes it, never lost, never a second refund; the card says so meanwhile."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from bot.cli.world import APPROVALS, Item, World
from services.refunds import cases
from services.refunds.execution import execute
from services.refunds.models import Case, Status
from services.refunds.writeback import RETRY_FIRST, pending, retry_due
from services.store import audit
from services.store.db import utcnow
from tests.slack_helpers import all_text

pytestmark = pytest.mark.both_backends


def fail_notes(world: World, code: str, times: int = 1) -> None:
    booking_id = world.checkfront.booking(code).booking_id
    world.checkfront.inject(500, times=times, path_prefix=f"booking/{booking_id}/note")


async def refunded_with_checkfront_failing(world: World, code: str) -> Case:
    world.paid_booking(code, [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    fail_notes(world, code)
    await world.cancel(code)
    await world.settle()
    [case] = await cases.list_cases(world.bot.svc.store)
    assert case.status == Status.REFUNDED   # the refund stands: Checkfront is told later
    return case


async def test_a_failed_write_back_is_kept_and_retried_until_checkfront_takes_it(
    world: World,
) -> None:
    case = await refunded_with_checkfront_failing(world, "WB-1")
    svc = world.bot.svc
    kept = await pending(svc.store, case.id)
    assert kept is not None and kept.attempts == 1 and "500" in kept.last_error
    assert world.checkfront.notes("WB-1") == []
    retry_at = datetime.fromisoformat(kept.next_at)
    assert abs(retry_at - (utcnow() + RETRY_FIRST)) < timedelta(seconds=30)

    assert await retry_due(svc) == []              # not due yet: nothing is tried
    assert world.checkfront.notes("WB-1") == []

    assert await retry_due(svc, retry_at + timedelta(seconds=1)) == [case.id]
    assert await pending(svc.store, case.id) is None
    [note] = world.checkfront.notes("WB-1")
    refund = world.stripe.refunds[0]
    assert refund.id in note.body and f"Case {case.id}." in note.body
    assert len(world.stripe.refunds) == 1
    actions = [e.action for e in await audit.history(svc.store, case.id)]
    assert actions.count("checkfront.writeback_failed") == 1
    assert actions.count("checkfront.written") == 1
    assert await retry_due(svc, retry_at + timedelta(hours=1)) == []   # done: never again


async def test_each_failed_retry_waits_longer(world: World) -> None:
    case = await refunded_with_checkfront_failing(world, "WB-2")
    svc = world.bot.svc
    first = await pending(svc.store, case.id)
    assert first is not None
    fail_notes(world, "WB-2")

    later = datetime.fromisoformat(first.next_at) + timedelta(seconds=1)
    assert await retry_due(svc, later) == []

    second = await pending(svc.store, case.id)
    assert second is not None and second.attempts == 2
    wait = datetime.fromisoformat(second.next_at) - utcnow()
    assert RETRY_FIRST * 2 - timedelta(seconds=30) < wait <= RETRY_FIRST * 2


async def test_two_retries_at_once_write_one_note(world: World) -> None:
    case = await refunded_with_checkfront_failing(world, "WB-3")
    svc = world.bot.svc
    kept = await pending(svc.store, case.id)
    assert kept is not None
    due = datetime.fromisoformat(kept.next_at) + timedelta(seconds=1)

    results = await asyncio.gather(retry_due(svc, due), retry_due(svc, due))

    assert sorted(results) == [[], [case.id]]
    assert len(world.checkfront.notes("WB-3")) == 1


async def test_the_card_says_checkfront_is_not_updated_until_the_retry_works(
    sworld: World,
) -> None:
    assert sworld.slack is not None
    sworld.paid_booking("WB-4", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await sworld.cancel("WB-4")
    await sworld.settle()
    [case] = await cases.list_cases(sworld.bot.svc.store)
    card = sworld.slack.messages_in(APPROVALS)[-1]
    fail_notes(sworld, "WB-4")
    await cases.approve(sworld.bot.svc.store, case.id, by="U0MARIA")
    await execute(sworld.bot.svc, case.id, actor="U0MARIA")
    await sworld.settle()

    warned = sworld.slack.message(APPROVALS, card["ts"])
    assert "Checkfront not updated yet" in all_text(warned)
    kept = await pending(sworld.bot.svc.store, case.id)
    assert kept is not None

    await retry_due(sworld.bot.svc, datetime.fromisoformat(kept.next_at) + timedelta(seconds=1))
    await sworld.settle()

    fixed = sworld.slack.message(APPROVALS, card["ts"])
    assert "Checkfront not updated yet" not in all_text(fixed)
    assert "Refunded" in all_text(fixed)


async def test_an_automatic_refund_gets_an_alert_when_checkfront_is_not_updated(
    sworld: World,
) -> None:
    assert sworld.slack is not None
    await refunded_with_checkfront_failing(sworld, "WB-5")   # 95.00: automatic, compact line
    await sworld.settle()

    alerts = [m for m in sworld.slack.messages_in(APPROVALS)
              if "Checkfront not updated" in all_text(m)]
    assert len(alerts) == 1
    assert "WB-5" in all_text(alerts[0]) and "95.00 USD" in all_text(alerts[0])
