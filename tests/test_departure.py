"""A whole departure cancelled and refunded at once, against the stand-ins: 25 bookings, one
with a disputed payment and one paid by hand, each refunded exactly once (counted in the
Stripe stand-in); a second click changes nothing; a run stopped between bookings continues
after a restart without refunding anyone twice or forgetting anyone."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from bot.cli.world import APPROVALS, FIONA, MARIA, SAM, World
from bot.slack.ui.departure import CANCEL_ALL, RETRY, departure_card
from services.money import to_minor
from services.refunds import cases, departure, departure_plan
from services.refunds.execution import resume_all
from services.refunds.models import Status
from services.store import audit
from tests.slack_helpers import buttons, responses
from tests.slack_text_checks import unsafe

pytestmark = pytest.mark.both_backends

SKU = "kayak-tour"


def departure_time(days: int = 5) -> datetime:
    now = int(time.time())
    return datetime.fromtimestamp(now - now % 3600 + days * 86400, UTC)


def book(world: World, code: str, starts: datetime, *, sku: str = SKU, total: str = "105.00",
         by_hand: bool = False, status: str = "PAID") -> str:
    """A booking of one line at `starts`, paid in full through Stripe (or at the desk)."""
    start = int(starts.timestamp())
    created = int(time.time() - 10 * 86400)
    world.checkfront.add_booking(
        code=code, status=status, customer_name="Ana Silva",
        customer_email=f"{code.lower()}@example.test", created_date=created,
        items=[{"sku": sku, "name": sku, "item_id": "12" if sku == SKU else "40",
                "start": start, "end": start + 7200, "total": total, "tax": "5.00", "qty": 1}],
        transactions=[], paid_total="0")
    if by_hand:
        world.checkfront.add_transaction(code, amount=total, transaction_id=f"POS-{code}",
                                         gateway_id="POS", date=created)
    else:
        intent = world.stripe.add_payment(to_minor(total, "USD"), "USD",
                                          metadata={"booking": code})
        world.checkfront.add_transaction(code, amount=total, transaction_id=intent.id,
                                         gateway_id="Stripe", date=created)
    return code


def departure_of_25(world: World, starts: datetime) -> list[str]:
    codes = [book(world, f"DEP-{n:02d}", starts, by_hand=(n == 7)) for n in range(1, 26)]
    intent = next(pi for pi in world.stripe.payment_intents.values()
                  if pi.metadata.get("booking") == "DEP-13")
    assert intent.latest_charge is not None
    world.stripe.create_dispute(intent.latest_charge, reason="fraudulent",
                                due_by=int(time.time()) + 7 * 86400)
    # not of this departure: another product, another hour, one cancelled already
    book(world, "OTHER-1", starts, sku="bike-tour")
    book(world, "LATER-1", starts.replace(hour=(starts.hour + 2) % 24))
    book(world, "GONE-1", starts, status="STOP")
    return codes


def stripe_refunds_per_booking(world: World) -> Counter[str]:
    return Counter(r.metadata.get("booking_code", "") for r in world.stripe.refunds)


def assert_each_refunded_once(world: World, codes: list[str]) -> None:
    per = stripe_refunds_per_booking(world)
    assert per == Counter({c: 1 for c in codes if c not in ("DEP-07", "DEP-13")})
    assert all(r.amount == 10500 for r in world.stripe.refunds)   # the waiver: no fee


async def test_a_departure_of_25_is_cancelled_and_refunded_once_each(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    starts = departure_time()
    codes = departure_of_25(sworld, starts)
    await sworld.settle()
    when = starts.strftime("%Y-%m-%dT%H:%M")

    await sworld.sender.command(f"departure {SKU} {when}+00:00 waiver WEATHER", SAM)
    await sworld.settle()
    card = sworld.slack.messages_in(APPROVALS)[-1]
    run_id = json.loads(buttons(card)[CANCEL_ALL]["value"])["run"]
    run = await departure.get_run(sworld.bot.svc, run_id)
    assert [b.booking_code for b in run.bookings] == codes        # found, none of the others
    assert (run.total, run.total_without_waiver) == (25 * 10500, 25 * 9500)
    assert {b.booking_code for b in run.attention} == {"DEP-07", "DEP-13"}
    text = str(card)
    assert "2,625.00 USD" in text and "2,375.00 USD" in text and "DEP-13" in text

    # staff and Maria (above her 1,000.00) are refused, nothing changed; Fiona (finance lead)
    value = buttons(card)[CANCEL_ALL]["value"]
    await sworld.sender.click(CANCEL_ALL, value, SAM, message_ts=card["ts"])
    await sworld.settle()
    assert "Only refund approvers" in responses(sworld)[-1]
    await sworld.sender.click(CANCEL_ALL, value, MARIA, message_ts=card["ts"])
    await sworld.settle()
    assert (await departure.get_run(sworld.bot.svc, run_id)).state == "planned"
    assert "can't approve refunds over" in responses(sworld)[-1]
    assert sworld.stripe.refunds == []

    await sworld.sender.click(CANCEL_ALL, value, FIONA, message_ts=card["ts"])
    await sworld.settle()
    run = await departure.get_run(sworld.bot.svc, run_id)
    assert run.state == "done"
    assert run.count("done") == 23 and run.count("person") == 2 and run.count("failed") == 0
    assert_each_refunded_once(sworld, codes)
    assert all(sworld.checkfront.status_of(c) == "STOP" for c in codes)
    assert sworld.checkfront.status_of("OTHER-1") == "PAID"
    disputed = await cases.get(sworld.bot.svc.store, next(
        b.case_id for b in run.bookings if b.booking_code == "DEP-13"))
    by_hand = await cases.get(sworld.bot.svc.store, next(
        b.case_id for b in run.bookings if b.booking_code == "DEP-07"))
    assert disputed.status == Status.PENDING_APPROVAL and disputed.waiver == "WEATHER"
    assert by_hand.status == Status.PARTIALLY_REFUNDED

    # the card ended with the outcome, updated in place; a second click changes nothing
    final = sworld.slack.message(APPROVALS, card["ts"])
    assert "Finished" in str(final) and "done 23" in str(final)
    await sworld.sender.click(CANCEL_ALL, value, FIONA, message_ts=card["ts"])
    await sworld.settle()
    assert "already started by" in responses(sworld)[-1]
    assert_each_refunded_once(sworld, codes)
    for call in [*sworld.slack.calls_to("chat.postMessage"),
                 *sworld.slack.calls_to("chat.update")]:
        assert unsafe(call.params) == []
    assert (await audit.verify(sworld.bot.svc.store)).ok


async def test_a_run_stopped_between_bookings_continues_after_a_restart(world: World) -> None:
    svc = world.bot.svc
    starts = departure_time()
    codes = departure_of_25(world, starts)
    await world.settle()
    planned = await departure_plan.plan(svc, SKU, starts, waiver="WEATHER", requested_by=FIONA)
    await departure.start(svc, planned.id, by=FIONA)
    nine = asyncio.Event()

    async def changed(run_id: int) -> None:   # told after each booking's step
        if len(world.stripe.refunds) >= 9:
            nine.set()
            await asyncio.sleep(3600)           # the bot stops here, between bookings

    task = asyncio.create_task(departure.run(svc, planned.id, changed))
    await nine.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    stopped = await departure.get_run(svc, planned.id)
    assert stopped.state == "running" and stopped.count("waiting") > 5

    await resume_all(svc)                      # what start-up does, in order
    assert await departure.resume(svc, _nothing) == [planned.id]
    await world.settle()
    run = await departure.get_run(svc, planned.id)
    assert run.state == "done" and run.count("done") == 23 and run.count("person") == 2
    assert_each_refunded_once(world, codes)
    opened = Counter(c.booking_code for c in await cases.list_cases(svc.store, limit=100))
    assert all(opened[c] == 1 for c in codes)    # none opened twice


async def test_a_failed_booking_does_not_stop_the_others_and_retry_finishes_it(
        sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    svc = sworld.bot.svc
    starts = departure_time()
    codes = [book(sworld, f"RTY-{n}", starts) for n in range(1, 4)]
    planned = await departure_plan.plan(svc, SKU, starts, waiver=None, requested_by=FIONA)
    sworld.checkfront.inject(503, times=20, path_prefix=f"booking/"
                             f"{sworld.checkfront.booking('RTY-2').booking_id}/update")
    await departure.start(svc, planned.id, by=FIONA)
    run = await departure.run(svc, planned.id, _nothing)
    assert [b.step for b in run.bookings] == ["done", "failed", "done"]
    assert "cancelling" in (run.bookings[1].error or "")
    assert stripe_refunds_per_booking(sworld) == Counter({"RTY-1": 1, "RTY-3": 1})
    card = departure_card(run)
    retry = buttons({"blocks": card.blocks})[RETRY]
    assert unsafe({"text": card.text, "blocks": card.blocks}) == []

    sworld.checkfront.clear_faults()
    await sworld.sender.click(RETRY, retry["value"], FIONA)
    await sworld.settle()
    run = await departure.get_run(svc, planned.id)
    assert [b.step for b in run.bookings] == ["done", "done", "done"]
    assert stripe_refunds_per_booking(sworld) == Counter({c: 1 for c in codes}), [
        (r.metadata.get("booking_code"), r.amount) for r in sworld.stripe.refunds]


async def _nothing(run_id: int) -> None:
    return None


async def test_the_card_escapes_what_bookings_and_people_bring_in(world: World) -> None:
    from tests.slack_text_checks import EVIL
    svc = world.bot.svc
    starts = departure_time()
    book(world, "EVL-1", starts)
    run = await departure_plan.plan(svc, SKU, starts, waiver=None, requested_by="U0SAM")
    evil = departure.Run(**{**run.__dict__, "item": EVIL, "bookings": tuple(
        departure.RunBooking(**{**b.__dict__, "attention": EVIL, "error": EVIL,
                                "step": "failed"}) for b in run.bookings)})
    for state in ("planned", "done"):
        message = departure_card(departure.Run(**{**evil.__dict__, "state": state}))
        assert unsafe({"text": message.text, "blocks": message.blocks}) == []


async def test_the_webhook_of_a_booking_the_run_just_cancelled_leaves_it_to_the_run(
        sworld: World, monkeypatch: object) -> None:
    """Checkfront tells the bot of each status change the run makes; a worker that applies
    that webhook between the run's cancel and its case must not open a case without the
    waiver (the run would then skip the booking, and the customer keep the fee)."""
    import httpx
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    assert sworld.sender is not None and sworld.slack is not None
    starts = departure_time()
    codes = [book(sworld, f"RACE-{n}", starts) for n in range(1, 4)]
    await sworld.settle()
    real_cancel = departure._cancel_in_checkfront
    store = sworld.bot.svc.store

    async def cancel_then_the_webhook_is_applied(svc: object, booking: object) -> None:
        await real_cancel(svc, booking)  # type: ignore[arg-type]
        async with httpx.AsyncClient() as client:
            await client.post(sworld.webhook_url(), json=sworld.checkfront.webhook_body(
                booking.booking_code))  # type: ignore[attr-defined]
        for _ in range(200):   # the worker applies it before the run goes on
            row = await store.read_one("SELECT processed_at FROM webhook_events "
                                       "ORDER BY id DESC LIMIT 1")
            if row is not None and row["processed_at"]:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the webhook was not applied")

    monkeypatch.setattr(departure, "_cancel_in_checkfront", cancel_then_the_webhook_is_applied)
    await sworld.sender.command(
        f"departure {SKU} {starts.strftime('%Y-%m-%dT%H:%M')}+00:00 waiver WEATHER", SAM)
    await sworld.settle()
    card = sworld.slack.messages_in(APPROVALS)[-1]
    value = buttons(card)[CANCEL_ALL]["value"]
    await sworld.sender.click(CANCEL_ALL, value, FIONA, message_ts=card["ts"])
    await sworld.settle()

    run = await departure.get_run(sworld.bot.svc, json.loads(value)["run"])
    assert run.state == "done" and run.count("done") == 3, [b.step for b in run.bookings]
    for code in codes:
        case = await cases.latest_for_booking(store, code)
        assert case is not None and case.waiver == "WEATHER", code
    assert stripe_refunds_per_booking(sworld) == Counter({c: 1 for c in codes}), [
        (r.metadata.get("booking_code"), r.amount) for r in sworld.stripe.refunds]
    assert all(r.amount == 10500 for r in sworld.stripe.refunds)   # the waiver: no fee
