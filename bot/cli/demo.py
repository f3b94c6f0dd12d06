"""`python -m bot demo`: the whole refund path on this machine, no credentials, no network.

Starts the Checkfront, Stripe and Slack stand-ins and the bot on 127.0.0.1, makes a few paid
bookings, cancels them through signed webhooks, lets managers decide in Slack the ones that
need a person, has one taken (I'll take it) and reminded, filters the Home tab, shows a
dispute card with its evidence pack, and prints every case's quote, decision, Stripe refund
and audit trail. A local SMTP server receives the customer's message once a manager sends it
from the card.
"""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path

import httpx

from bot.cli import demo_cards, demo_customer, demo_departure, demo_teams
from bot.cli.render import buttons_of, quote_table, say, slack_message_text
from bot.cli.world import APPROVALS, FIONA, MARIA, SAM, Item, World
from bot.scheduler import ScheduledJobs
from bot.slack.nudges import NudgePoster
from bot.slack.ui import ids
from bot.slack.ui.ids import SUBMIT_EVIDENCE
from services.refunds import cases, worklist
from services.refunds.history import case_history
from services.refunds.ledger import stripe_refunds
from services.refunds.models import Status
from services.store import audit
from services.store.db import utcnow


async def run(keep: str | None = None) -> int:
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="refund-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    world = await World.start(folder, slack=True, smtp=True)
    try:
        return await _story(world)
    finally:
        await world.stop()


async def _story(world: World) -> int:
    store = world.bot.svc.store
    say("Bookings paid through Stripe (Checkfront and Stripe stand-ins on 127.0.0.1)")
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

    say("Customers cancel: Checkfront sends 'Booking Status Change' webhooks")
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
        say(f"Case #{case.id} {case.booking_code}: {case.status.value}")
        print(quote_table(stored.quote))

    await _slack_part(world)
    await world.settle()
    await demo_cards.show(world)
    await demo_customer.show(world)
    await _dispute_part(world)
    await demo_departure.show(world)

    await demo_teams.show(world.bot.settings.database_path.parent / "teams")

    say("Outcome")
    for case in reversed(await cases.list_cases(store)):
        refunds = await stripe_refunds(store, case.id)
        ids = ", ".join(f"{r['stripe_refund_id']} ({case.money(r['amount'])}, {r['status']})"
                        for r in refunds) or "no Stripe refund"
        print(f"  #{case.id} {case.booking_code:<9} {case.status.value:<19} {ids}")
    print(f"  Stripe holds {len(world.stripe.refunds)} refunds; "
          f"Checkfront notes: {sum(len(world.checkfront.notes(c)) for c in _codes())}")

    first = (await cases.list_cases(store))[-1]
    say(f"Audit trail of case #{first.id} (python -m bot audit show {first.id})")
    print(case_history(first, await audit.history(store, first.id)))

    result = await audit.verify(store)
    say("Audit chain")
    print(f"  {'intact' if result.ok else 'BROKEN'}: {result.rows} rows")
    return 0 if result.ok else 1


async def _slack_part(world: World) -> None:
    """Managers decide in Slack: signed clicks into the real Bolt app, cards in the stand-in."""
    assert world.slack is not None and world.sender is not None
    store = world.bot.svc.store
    say("Slack #refund-approvals (the local Slack stand-in)")
    for message in world.slack.messages_in(APPROVALS):
        print(slack_message_text(message), "\n")

    cards = {m["ts"]: m for m in world.slack.messages_in(APPROVALS) if buttons_of(m)}
    for case in reversed(await cases.list_cases(store, Status.PENDING_APPROVAL)):
        card = next(m for m in cards.values() if case.booking_code in json.dumps(m))
        value = buttons_of(card)[ids.APPROVE]
        if case.booking_code == "HBR-1002":
            say(f"Maria (limit 1,000.00) clicks Approve on {case.booking_code}")
            await world.sender.click(ids.APPROVE, value, MARIA, message_ts=card["ts"])
            await world.settle()
            print(f"  Slack tells her privately: {_last_response(world)}")
            say(f"Fiona (finance lead) adjusts {case.booking_code} by 50.00 and approves")
            await world.sender.click(ids.ADJUST, buttons_of(card)[ids.ADJUST], FIONA,
                                     message_ts=card["ts"])
            await world.settle()
            view = world.slack.calls_to("views.open")[-1].params["view"]
            amount = case.money(case.refund_amount - 5000)
            await world.sender.submit_view(ids.ADJUST_VIEW, {
                ids.AMOUNT_BLOCK: {ids.AMOUNT_INPUT: amount},
                ids.REASON_BLOCK: {ids.REASON_INPUT: "goodwill: agreed by phone"}},
                FIONA, view["private_metadata"])
        else:
            say(f"Maria clicks Approve on {case.booking_code}")
            await world.sender.click(ids.APPROVE, value, MARIA, message_ts=card["ts"])
        await world.settle()
        updated = world.slack.message(APPROVALS, card["ts"])
        print("  the card, updated in place:")
        print(slack_message_text(updated))
        for reply in world.slack.replies(APPROVALS, card["ts"]):
            print("  thread reply:\n    " + reply["text"].replace("\n", "\n    "))

    world.paid_booking("HBR-1005", [Item("bike-tour", "84.00", "4.00", 40, "E-bike tour")])
    say("Staff ask for a quote before a guest cancels: /refund quote HBR-1005 waiver WEATHER")
    await world.sender.command("quote HBR-1005 waiver WEATHER", SAM)
    await world.settle()
    answer = world.slack.calls_to("response_url")[-1].params
    print(f"  (answered privately) {answer.get('text')}")
    print(slack_message_text(answer))

    world.paid_booking("HBR-1006", [Item("kayak-tour", "630.00", "30.00", 96,
                                         "Sunset kayak, group of six")])
    await world.cancel("HBR-1006")
    await world.settle()
    say("Maria opens the bot's Home tab (a new cancellation waits for her)")
    await world.sender.home_opened(MARIA)
    await world.settle()
    print(slack_message_text(world.slack.home_views[MARIA]))
    await _ownership_part(world)


async def _ownership_part(world: World) -> None:
    """Maria takes the waiting card; a reminder comes hours later; her Home tab's filter."""
    assert world.slack is not None and world.sender is not None and world.bot.slack is not None
    card = world.slack.messages_in(APPROVALS)[-1]
    say("Maria clicks I'll take it on HBR-1006")
    await world.sender.click(ids.CLAIM, buttons_of(card)[ids.CLAIM], MARIA, message_ts=card["ts"])
    await world.settle()
    print(slack_message_text(world.slack.message(APPROVALS, card["ts"])))
    say("Five hours on, the reminder job finds the card still waiting")
    jobs = ScheduledJobs(world.bot.svc, world.bot.settings.zone, on_nudge=NudgePoster(
        world.bot.svc.store, world.bot.slack.outbox, world.bot.slack.deps.rules),
        remind_after=timedelta(hours=4), escalate_after=timedelta(hours=24))
    for _ in range(2):   # a second run gives no second reminder
        await jobs.reminders(utcnow() + timedelta(hours=5))
    await world.settle()
    for reply in world.slack.replies(APPROVALS, card["ts"]):
        print("  thread reply:\n    " + reply["text"].replace("\n", "\n    "))
    say("Maria filters her Home tab: Taken by me")
    await world.sender.select(ids.HOME_FILTER, worklist.MINE, MARIA)
    await world.settle()
    print(slack_message_text(world.slack.home_views[MARIA]))


async def _dispute_part(world: World) -> None:
    """A cardholder disputes a refunded charge: the card with the evidence pack, then Submit."""
    assert world.slack is not None and world.sender is not None
    intent = next(pi for pi in world.stripe.payment_intents.values()
                  if pi.metadata.get("booking") == "HBR-1001")
    assert intent.latest_charge is not None
    say("The guest of HBR-1001 disputes the charge anyway (charge.dispute.created)")
    world.stripe.create_dispute(intent.latest_charge, reason="credit_not_processed")
    await world.settle()
    card = world.slack.messages_in(APPROVALS)[-1]
    print(slack_message_text(card))
    say("Maria clicks Submit evidence")
    await world.sender.click(SUBMIT_EVIDENCE, buttons_of(card)[SUBMIT_EVIDENCE],
                             MARIA, message_ts=card["ts"])
    await world.settle()
    print(slack_message_text(world.slack.message(APPROVALS, card["ts"])))



def _last_response(world: World) -> str:
    assert world.slack is not None
    calls = world.slack.calls_to("response_url")
    return str(calls[-1].params.get("text")) if calls else "(nothing)"


def _codes() -> list[str]:
    return ["HBR-1001", "HBR-1002", "HBR-1003", "HBR-1004"]
