"""`python -m bot demo`: the whole refund path on this machine, no credentials, no network.

Starts the Checkfront and Stripe stand-ins and the bot on 127.0.0.1, makes a few paid
bookings, cancels them through signed webhooks, lets a manager decide the ones that need a
person, and prints every case's quote, decision, Stripe refund and audit trail.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from pathlib import Path

import httpx

from bot.text import case_history, quote_table
from sandbox.world import Item, World
from services import audit, cases
from services.cases import Status
from services.execution import execute


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the local end-to-end demo")
    demo.add_argument("--keep", help="keep the demo database in this folder")
    demo.set_defaults(handler=lambda args: asyncio.run(run(args.keep)))


async def run(keep: str | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="refund-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    world = await World.start(folder)
    try:
        return await _story(world)
    finally:
        await world.stop()


async def _story(world: World) -> int:
    store = world.bot.svc.store
    _say("Bookings paid through Stripe (Checkfront and Stripe stand-ins on 127.0.0.1)")
    world.paid_booking("HBR-1001", [Item("kayak-tour", "105.00", "5.00", 80, "Sunset kayak"),
                                    Item("photo-package", "21.00", "1.00", 80, "Photo package")])
    world.paid_booking("HBR-1002", [Item("private-charter", "1575.00", "75.00", 200,
                                         "Private charter")], payments=["500.00", "1075.00"])
    world.paid_booking("HBR-1003", [Item("bike-tour", "63.00", "3.00", 10, "E-bike tour")])
    world.paid_booking("HBR-1004", [Item("kayak-tour", "210.00", "10.00", 50, "Sunset kayak")],
                       payments=[])
    world.checkfront.add_transaction("HBR-1004", amount="210.00", transaction_id="POS-77",
                                     gateway_id="Cash")
    for code in _codes():
        booking = world.checkfront.booking(code)
        items = ", ".join(f"{i.name} ({i.sku}) {i.total}" for i in booking.items)
        payments = ", ".join(f"{t.amount} {t.gateway_id}" for t in booking.transactions)
        print(f"  {code}: {items}; paid {payments}")

    _say("Customers cancel: Checkfront sends 'Booking Status Change' webhooks")
    for code in _codes():
        answer = await world.cancel(code)
        print(f"  POST /webhooks/checkfront/… {code} → {answer.status_code}")
    async with httpx.AsyncClient() as client:
        again = await client.post(world.webhook_url(), json=world.checkfront.webhook_body(
            "HBR-1001"))
    print(f"  the same webhook again (a retry) → {again.status_code} {again.json()}")
    await world.settle()

    for case in reversed(await cases.list_cases(store)):
        stored = await cases.current_quote(store, case)
        _say(f"Case #{case.id} {case.booking_code}: {case.status.value}")
        print(quote_table(stored.quote))

    pending = await cases.list_cases(store, Status.PENDING_APPROVAL)
    for case in pending:
        _say(f"A manager decides case #{case.id} ({case.status_reason})")
        if case.booking_code == "HBR-1002":
            amount = case.refund_amount - 5000
            await cases.approve(store, case.id, by="maria (manager)", amount=amount,
                                reason="goodwill adjustment agreed with the guest")
            print(f"  approved with an adjusted amount: {case.money(amount)} {case.currency}")
        else:
            await cases.approve(store, case.id, by="maria (manager)")
            print(f"  approved at the quoted {case.money(case.refund_amount)} {case.currency}")
        done = await execute(world.bot.svc, case.id, actor="maria (manager)")
        print(f"  → {done.status.value}: {done.status_reason}")
    await world.settle()

    _say("Outcome")
    for case in reversed(await cases.list_cases(store)):
        refunds = await store.fetch_all(
            "SELECT stripe_refund_id, amount, status FROM executions WHERE case_id = ? "
            "AND stripe_refund_id IS NOT NULL", (case.id,))
        ids = ", ".join(f"{r['stripe_refund_id']} ({case.money(r['amount'])}, {r['status']})"
                        for r in refunds) or "no Stripe refund"
        print(f"  #{case.id} {case.booking_code:<9} {case.status.value:<19} {ids}")
    print(f"  Stripe holds {len(world.stripe.refunds)} refunds; "
          f"Checkfront notes: {sum(len(world.checkfront.notes(c)) for c in _codes())}")

    first = (await cases.list_cases(store))[-1]
    _say(f"Audit trail of case #{first.id} (python -m bot audit show {first.id})")
    print(case_history(first, await audit.history(store, first.id)))

    result = await audit.verify(store)
    _say("Audit chain")
    print(f"  {'intact' if result.ok else 'BROKEN'}: {result.rows} rows")
    return 0 if result.ok else 1


def _codes() -> list[str]:
    return ["HBR-1001", "HBR-1002", "HBR-1003", "HBR-1004"]


def _say(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)))
