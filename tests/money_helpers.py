"""Shared steps of the money-safety tests: deliver a Checkfront body, cancel a booking in the
stand-in, age a case, make a second open case as the old webhook-keyed rule let in, lose
Stripe's answer to a refund it made."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from bot.cli.world import STRIPE_WEBHOOK_SECRET, Item, World
from sandbox.stripe_faults import Fault
from services.refunds import cases
from services.refunds.execution import execute
from services.refunds.models import Case, Status
from services.refunds.opening import open_case
from services.refunds.snapshots import assemble_snapshot
from services.store.db import iso_utc, utcnow

BIG = [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)]    # 830.00: a person decides
HALF = [Item("kayak-tour", "840.00", "40.00", hours_ahead=30)]   # 50 % tier: 410.00 of 840.00
SMALL = [Item("bike-tour", "52.50", "2.50", hours_ahead=60)]     # 42.50: refunded on its own


async def deliver(world: World, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(world.webhook_url(), json=body)


def cancelled(world: World, code: str) -> None:
    booking = world.checkfront.booking(code)
    booking.status = "STOP"
    for item in booking.items:
        item.status = "STOP"


async def all_cases(world: World) -> list[Case]:
    return sorted(await cases.list_cases(world.bot.svc.store), key=lambda c: c.id)


async def backdate(world: World, case_id: int, minutes: float) -> None:
    """The case last changed `minutes` ago (a crash some time back)."""
    async with world.bot.svc.store.transaction() as tx:
        await tx.execute("UPDATE cases SET updated_at = ? WHERE id = ?",
                         (iso_utc(utcnow() - timedelta(minutes=minutes)), case_id))


def refund_posts(world: World) -> list[Any]:
    return [r for r in world.stripe.requests if r.path == "/v1/refunds" and r.method == "POST"]


async def legacy_duplicate(world: World, case: Case) -> Case:
    """A second open case for the same booking, as the webhook-keyed rule let in before (the
    id fell back to the code): same quote, same booking, another row."""
    async with world.bot.svc.store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT INTO cases (booking_id, booking_code, status, currency, cancelled_at, "
            "waiver, source, requested_by, quote_version, refund_amount, approved_amount, "
            "status_reason, customer_hash, created_at, updated_at, revision) "
            "SELECT booking_code, booking_code, status, currency, cancelled_at, waiver, source, "
            "requested_by, quote_version, refund_amount, approved_amount, status_reason, "
            "customer_hash, created_at, updated_at, revision FROM cases WHERE id = ? RETURNING id",
            (case.id,))
        twin = int((await cursor.fetchone())["id"])
        await tx.execute(
            "INSERT INTO quotes (case_id, version, created_at, snapshot, quote) "
            "SELECT ?, version, created_at, snapshot, quote FROM quotes WHERE case_id = ?",
            (twin, case.id))
    return await cases.get(world.bot.svc.store, twin)



async def auto_approved_not_run(world: World, code: str) -> Case:
    """A cancellation the policy approved, whose process died before the refund ran."""
    world.paid_booking(code, SMALL)
    cancelled(world, code)
    raw = await assemble_snapshot(world.bot.svc, code)
    opened = await open_case(world.bot.svc, raw, cancelled_at=utcnow(),
                             source="checkfront_webhook")
    assert opened.case.status == Status.AUTO_APPROVED
    return opened.case



def quiet_refund_events(world: World) -> None:
    """Stripe's refund events are not delivered (they come later, or were lost)."""
    world.stripe.configure_webhook(f"{world.bot_url}/webhooks/stripe", STRIPE_WEBHOOK_SECRET,
                                   events=["charge.dispute.created"])


def lose_the_answer(world: World) -> None:
    """Stripe makes the refund but no answer comes back, and the look-up fails too."""
    world.stripe.inject(Fault("reset", times=3))
    world.stripe.inject(Fault("500", method="GET", path="/v1/refunds", times=3))


async def failed_with_a_refund_made(world: World, code: str,
                                    items: list[Item] | None = None) -> Case:
    """A case approved by a person whose refund Stripe made, but whose answer was lost and
    could not be looked up: it is `failed` with its row still planned."""
    world.paid_booking(code, items or BIG)
    await world.cancel(code)
    await world.settle()
    [case] = [c for c in await all_cases(world) if c.booking_code == code]
    await cases.approve(world.bot.svc.store, case.id, by="maria")
    quiet_refund_events(world)
    lose_the_answer(world)
    case = await execute(world.bot.svc, case.id, actor="maria")
    assert case.status == Status.FAILED, case.status_reason
    assert len(world.stripe.refunds) == 1
    return case



async def disputed(world: World, code: str, *, charge_refundable: bool = False) -> Any:
    world.paid_booking(code, [Item("kayak-tour", "105.00", "5.00", hours_ahead=96)])
    intent = next(pi for pi in world.stripe.payment_intents.values()
                  if pi.metadata.get("booking") == code)
    assert intent.latest_charge is not None
    dispute = world.stripe.create_dispute(intent.latest_charge, reason="fraudulent",
                                          charge_refundable=charge_refundable)
    await world.settle()
    return dispute
