"""Idempotency keys that outlive Stripe's memory: Stripe prunes a key after 24 hours and then
treats its reuse as a new request, so a key first sent more than ~23 hours ago is not trusted:
the refund is looked up by its metadata first."""

from __future__ import annotations

import time
from datetime import timedelta

from bot.cli.world import World
from sandbox.stripe_faults import Fault
from services.refunds import cases, ledger
from services.refunds.execution import execute
from services.refunds.models import Status
from services.store.db import iso_utc, utcnow
from tests.money_helpers import HALF, all_cases, failed_with_a_refund_made, refund_posts


async def test_a_retry_after_stripe_forgot_the_key_finds_the_refund_instead_of_a_second(
    world: World,
) -> None:
    world.stripe.idempotency_ttl_seconds = 24 * 3600
    case = await failed_with_a_refund_made(world, "DAYS-1", HALF)   # room for a second
    # two days later: Stripe has pruned the key, and our row says when it was first sent
    world.stripe.clock = lambda: time.time() + 48 * 3600
    async with world.bot.svc.store.transaction() as tx:
        await tx.execute("UPDATE executions SET called_at = ? WHERE case_id = ?",
                         (iso_utc(utcnow() - timedelta(hours=48)), case.id))

    case = await execute(world.bot.svc, case.id, actor="maria")   # the Retry button

    assert case.status == Status.REFUNDED, case.status_reason
    assert len(world.stripe.refunds) == 1
    assert len(refund_posts(world)) == 3        # only the first call and its two retries
    [row] = await ledger.settled(world.bot.svc.store, case.id)
    assert row.stripe_refund_id == world.stripe.refunds[0].id


async def test_a_recent_key_is_still_replayed_by_stripe(world: World) -> None:
    world.stripe.idempotency_ttl_seconds = 24 * 3600
    case = await failed_with_a_refund_made(world, "DAYS-2")

    case = await execute(world.bot.svc, case.id, actor="maria")

    assert case.status == Status.REFUNDED, case.status_reason
    assert len(world.stripe.refunds) == 1
    assert refund_posts(world)[-1].replayed


async def two_days_later(world: World, case_id: int) -> None:
    """Stripe's clock and our row's first call are two days apart from now."""
    world.stripe.clock = lambda: time.time() + 48 * 3600
    async with world.bot.svc.store.transaction() as tx:
        await tx.execute("UPDATE executions SET called_at = ? WHERE case_id = ?",
                         (iso_utc(utcnow() - timedelta(hours=48)), case_id))


async def test_an_old_key_is_not_sent_again_while_stripe_cannot_be_asked(world: World) -> None:
    world.stripe.idempotency_ttl_seconds = 24 * 3600
    case = await failed_with_a_refund_made(world, "DAYS-3", HALF)
    await two_days_later(world, case.id)
    posts = len(refund_posts(world))
    world.stripe.inject(Fault("500", method="GET", path="/v1/refunds", times=3))

    case = await execute(world.bot.svc, case.id, actor="maria")

    assert case.status == Status.FAILED
    assert "not sent again" in (case.status_reason or "")
    assert len(refund_posts(world)) == posts and len(world.stripe.refunds) == 1


async def test_an_old_key_whose_refund_stripe_never_made_is_sent_as_a_new_request(
    world: World,
) -> None:
    world.stripe.idempotency_ttl_seconds = 24 * 3600
    world.paid_booking("DAYS-4", HALF)
    await world.cancel("DAYS-4")
    await world.settle()
    [case] = await all_cases(world)
    await cases.approve(world.bot.svc.store, case.id, by="maria")
    # every call is dropped before Stripe executes it, and the look-up fails too
    world.stripe.inject(Fault("reset", after_processing=False, times=3))
    world.stripe.inject(Fault("500", method="GET", path="/v1/refunds", times=3))
    case = await execute(world.bot.svc, case.id, actor="maria")
    assert case.status == Status.FAILED and world.stripe.refunds == []
    await two_days_later(world, case.id)

    case = await execute(world.bot.svc, case.id, actor="maria")

    assert case.status == Status.REFUNDED, case.status_reason
    assert [r.amount for r in world.stripe.refunds] == [41000]
    assert world.stripe.refunds[0].metadata["plan"] == "1"
