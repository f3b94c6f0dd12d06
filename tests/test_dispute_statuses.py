"""Stripe's dispute statuses in the hold rules: `prevented` (stopped before it became a
chargeback) frees the payment; an appeal (`appeal_needs_response`, `appeal_under_review`)
follows a lost dispute, so the payment stays held whatever `is_charge_refundable` says."""

from __future__ import annotations

import pytest

from bot.cli.world import World
from services.refunds import cases
from services.refunds.execution import execute
from services.refunds.models import Status
from tests.money_helpers import all_cases, disputed, refund_posts

pytestmark = pytest.mark.both_backends


async def test_a_prevented_dispute_does_not_hold_the_payment_forever(world: World) -> None:
    dispute = await disputed(world, "PREV-1")
    world.stripe.decide_dispute(dispute.id, "prevented")   # stopped before a chargeback
    await world.settle()

    await world.cancel("PREV-1")
    await world.settle()

    [case] = await all_cases(world)
    assert case.status == Status.REFUNDED, case.status_reason
    assert [r.amount for r in world.stripe.refunds] == [9500]


@pytest.mark.parametrize("status", ["appeal_needs_response", "appeal_under_review"])
async def test_an_appealed_dispute_keeps_the_payment_held(world: World, status: str) -> None:
    dispute = await disputed(world, "APPEAL-1", charge_refundable=True)
    world.stripe.update_dispute_status(dispute.id, status)
    await world.settle()
    await world.cancel("APPEAL-1")
    await world.settle()
    [case] = await all_cases(world)
    assert case.status == Status.PENDING_APPROVAL
    await cases.approve(world.bot.svc.store, case.id, by="maria")

    held = await execute(world.bot.svc, case.id, actor="maria")

    assert held.status == Status.PENDING_APPROVAL
    assert dispute.id in (held.status_reason or "") and "appeal" in (held.status_reason or "")
    assert world.stripe.refunds == []
    assert not refund_posts(world)
