"""What one refund costs in calls, counted at the stand-ins: the booking is read once per step
(the intake's read serves an approval made at once; an execution that runs later reads it once
more, and that read serves its write-back), and a refund is at most three Stripe calls."""

from __future__ import annotations

from bot.cli.world import Item, World
from services.refunds import cases, decisions
from services.refunds.models import Status


def checkfront_calls(world: World, code: str) -> list[tuple[str, str]]:
    names = {str(world.checkfront.booking(code).booking_id): "{id}", code: "{code}"}
    calls = []
    for r in world.checkfront.requests:
        parts = r.path.split("/api/3.0/", 1)[-1].split("/")
        calls.append((r.method, "/".join(names.get(part, part) for part in parts)))
    return calls


def stripe_calls(world: World) -> list[tuple[str, str]]:
    return [(r.method, r.path.split("/")[2]) for r in world.stripe.requests]


async def test_an_automatic_refund_reads_the_booking_once(world: World) -> None:
    world.paid_booking("CALLS-1", [Item("kayak-tour", "120.00", "0.00", hours_ahead=72)])
    await world.cancel("CALLS-1")
    await world.settle()
    [case] = await cases.list_cases(world.bot.svc.store)
    assert case.status == Status.REFUNDED and len(world.stripe.refunds) == 1

    # the intake's read (booking, transactions), then only the note: the booking is already
    # cancelled, which the intake's read showed, so its status is left as it is
    assert checkfront_calls(world, "CALLS-1") == [
        ("GET", "booking/{code}"), ("GET", "booking/{id}/transact"),
        ("POST", "booking/{id}/note")]
    # what is left on the payment (one retrieve, its charge expanded), then the refund
    assert stripe_calls(world) == [("GET", "payment_intents"), ("POST", "refunds")]


async def test_an_approval_later_reads_the_booking_again_once(world: World) -> None:
    world.paid_booking("CALLS-2", [Item("kayak-tour", "300.00", "0.00", hours_ahead=72)])
    await world.cancel("CALLS-2")
    await world.settle()
    [case] = await cases.list_cases(world.bot.svc.store)
    assert case.status == Status.PENDING_APPROVAL
    intake = len(world.checkfront.requests)
    assert intake == 2 and world.stripe.requests == []

    case = await decisions.approve(world.bot.svc, case.id, by="U0MARIA")
    await world.settle()
    assert case.status == Status.REFUNDED and len(world.stripe.refunds) == 1
    # the execution re-checks the booking (it may have changed while a person decided), once:
    # that read also serves the write-back's status check
    assert checkfront_calls(world, "CALLS-2")[intake:] == [
        ("GET", "booking/{id}"), ("GET", "booking/{id}/transact"),
        ("POST", "booking/{id}/note")]
    assert len(world.stripe.requests) <= 3
