"""Per-case risk flags make policy-clear refunds wait for a person."""

from __future__ import annotations

from bot.cli.world import Item, World
from services.refunds import cases
from services.refunds.models import Case, Status


async def latest(world: World) -> Case:
    return (await cases.list_cases(world.bot.svc.store))[0]


async def test_a_repeat_refunder_waits_for_a_person(world: World) -> None:
    for n in range(3):
        world.paid_booking(f"REP-{n}", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)],
                           email="same.guest@example.test")
        await world.cancel(f"REP-{n}")
        await world.settle()

    third = await latest(world)
    assert third.status == Status.PENDING_APPROVAL
    assert "2 other refunds in the last 30 days" in (third.status_reason or "")
    assert len(world.stripe.refunds) == 2


async def test_booked_minutes_before_the_cancellation_waits(world: World) -> None:
    world.paid_booking("QUICK-1", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)],
                       created_hours_ago=0.25)
    await world.cancel("QUICK-1")
    await world.settle()

    case = await latest(world)
    assert case.status == Status.PENDING_APPROVAL
    assert "booked only 15 minutes before" in (case.status_reason or "")


async def test_a_booking_worth_far_more_than_usual_waits(world: World) -> None:
    for n in range(5):
        world.paid_booking(f"USUAL-{n}", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)])
        await world.cancel(f"USUAL-{n}")
    await world.settle()
    world.paid_booking("HUGE-1", [Item("bike-tour", "189.00", "9.00", hours_ahead=60)])
    await world.cancel("HUGE-1")
    await world.settle()

    case = await latest(world)
    assert case.booking_code == "HUGE-1"
    assert case.status == Status.PENDING_APPROVAL  # 170.00 is under the auto limit
    assert "over 3x the usual 52.50 for bike-tour" in (case.status_reason or "")
