"""Refund events close the case: a case that failed although Stripe made its refund (the answer
was lost) is moved to refunded, and Checkfront told, when Stripe's events show every planned
refund succeeded."""

from __future__ import annotations

import pytest

from bot.cli.world import STRIPE_WEBHOOK_SECRET, World
from sandbox.stripe_faults import Fault
from services.refunds import cases, ledger
from services.refunds.execution import execute
from services.refunds.models import Status
from tests.money_helpers import BIG, all_cases, failed_with_a_refund_made

pytestmark = pytest.mark.both_backends


async def test_a_refund_event_moves_a_failed_case_whose_refund_was_made_to_refunded(
    world: World,
) -> None:
    case = await failed_with_a_refund_made(world, "LOST-1")
    world.stripe.configure_webhook(f"{world.bot_url}/webhooks/stripe", STRIPE_WEBHOOK_SECRET)
    [event] = [e for e in world.stripe.events if e.type == "refund.created"]

    world.stripe.resend_event(event.id)
    await world.settle()

    case = await cases.get(world.bot.svc.store, case.id)
    assert case.status == Status.REFUNDED, case.status_reason
    assert len(world.stripe.refunds) == 1
    notes = world.checkfront.notes("LOST-1")
    assert len(notes) == 1 and world.stripe.refunds[0].id in notes[0].body
    assert world.checkfront.status_of("LOST-1") == "STOP"


async def test_a_pending_refund_event_leaves_the_failed_case_until_it_succeeds(
    world: World,
) -> None:
    world.stripe.set_refund_mode("pending")
    case = await failed_with_a_refund_made(world, "LOST-2")
    world.stripe.configure_webhook(f"{world.bot_url}/webhooks/stripe", STRIPE_WEBHOOK_SECRET)
    [event] = [e for e in world.stripe.events if e.type == "refund.created"]
    world.stripe.resend_event(event.id)
    await world.settle()
    assert (await cases.get(world.bot.svc.store, case.id)).status == Status.FAILED

    world.stripe.settle_refund(world.stripe.refunds[0].id, "succeeded")
    await world.settle()

    assert (await cases.get(world.bot.svc.store, case.id)).status == Status.REFUNDED


async def test_an_event_that_overtakes_the_lost_answer_keeps_the_case_from_failing(
    world: World,
) -> None:
    world.paid_booking("LOST-3", BIG)
    await world.cancel("LOST-3")
    await world.settle()
    [case] = await all_cases(world)
    await cases.approve(world.bot.svc.store, case.id, by="maria")
    # the answer is lost and the look-up hangs: meanwhile Stripe's refund.created arrives
    world.stripe.inject(Fault("reset", times=3))
    world.stripe.inject(Fault("timeout", method="GET", path="/v1/refunds",
                              after_processing=False, delay=1.2, times=3))

    case = await execute(world.bot.svc, case.id, actor="maria")
    await world.settle()

    assert case.status == Status.REFUNDED, case.status_reason
    assert len(world.stripe.refunds) == 1
    [row] = await ledger.settled(world.bot.svc.store, case.id)
    assert row.stripe_refund_id == world.stripe.refunds[0].id
