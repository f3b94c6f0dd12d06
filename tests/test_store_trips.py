"""What one automatic refund costs the store: its transactions and statements, counted on the
store's connection while the worker applies the cancellation (SQLite's trace callback sees every
statement the connection runs). The worker's throughput is bounded by these (each statement is
one trip to the store's thread, and a transaction holds the store's write lock for all of its
statements), so a change that adds a read or a transaction to a case shows here.

The audit trail of the case stays what it was: fewer trips, the same rows in the same order."""

from __future__ import annotations

import json

from bot.cli.world import STRIPE_WEBHOOK_SECRET, Item, World
from services.intake.events import body_hash, store_event
from services.intake.routing import process
from services.refunds import cases
from services.refunds.models import Status
from services.store import audit

TRANSACTIONS = 7   # open, claim, plan, mark sent (synced), Stripe's answer, outcome, processed
STATEMENTS = 59     # every statement the store's connection runs for the case, reads included
#                    (59: the customer message the closing transaction owes, one INSERT in it)


async def test_an_automatic_refund_in_few_store_trips(world: World) -> None:
    # Stripe's refund events are the worker's other work, not this case's cost: none is sent
    world.stripe.configure_webhook(f"{world.bot_url}/webhooks/stripe",
                                   STRIPE_WEBHOOK_SECRET, events=["charge.dispute.created"])
    world.paid_booking("TRIPS-1", [Item("kayak-tour", "120.00", "0.00", hours_ahead=72)])
    booking = world.checkfront.booking("TRIPS-1")
    booking.status = "STOP"
    for item in booking.items:
        item.status = "STOP"
    body = world.checkfront.webhook_body("TRIPS-1")
    svc = world.bot.svc
    event = await store_event(svc.store, source="checkfront", kind="booking",
                              event_id=body_hash(json.dumps(body).encode()), payload=body)
    assert event is not None

    statements: list[str] = []
    await svc.store.db.set_trace_callback(statements.append)
    try:
        outcome = await process(svc, event)
    finally:
        await svc.store.db.set_trace_callback(None)

    [case] = await cases.list_cases(svc.store)
    assert outcome == f"case {case.id} refunded" and case.status == Status.REFUNDED
    assert len(world.stripe.refunds) == 1
    # the busy-timeout switches around a BEGIN made on the loop's thread are no statements of
    # the case (settings of the connection, no trip: `Tx._begin_now`)
    statements = [s for s in statements if not s.startswith("PRAGMA busy_timeout")]
    begins = [s for s in statements if s.startswith("BEGIN")]
    assert len(begins) <= TRANSACTIONS, "\n".join(statements)
    assert len(statements) <= STATEMENTS, "\n".join(statements)
    assert [e.action for e in await audit.history(svc.store, case.id)] == [
        "case.opened", "quote.made", "case.auto_approved", "case.executing",
        "execution.planned", "stripe.refund", "checkfront.written", "case.refunded"]
    assert (await audit.verify(svc.store)).ok
