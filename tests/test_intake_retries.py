"""Webhook events that could not be applied are never lost and never loop: a Checkfront or
Stripe outage is retried with growing waits and, past a bound, shown on a card with Retry; any
other error makes the event a dead letter, counted, listed and retried by hand."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from bot.app import Bot
from bot.cli.world import APPROVALS, MARIA, SAM, STRIPE_WEBHOOK_SECRET, Item, World
from bot.slack.ui import ids
from bot.slack.ui.intake import stuck_card
from bot.slack.ui.payloads import EventRef, parse
from sandbox.http import start
from sandbox.stripe_webhooks import sign
from services.intake.events import StoredEvent
from services.intake.routing import process
from services.notify import StuckEvent
from services.refunds import cases
from services.refunds.models import Status
from services.store.db import utcnow
from tests.outage import quick_checkfront_retries
from tests.slack_helpers import all_text, buttons, responses
from tests.test_blocks import check_message
from tests.test_cli_ops import run

pytestmark = pytest.mark.both_backends


@pytest.fixture
async def world(world: World) -> World:
    """The world of conftest, its Checkfront client retrying the outages without pauses."""
    return quick_checkfront_retries(world)


@pytest.fixture
async def sworld(sworld: World) -> World:
    """... and so the world with Slack."""
    return quick_checkfront_retries(sworld)

ODD_EVENTS: list[dict[str, Any]] = [  # signed by Stripe, odd inside
    {"type": "charge.dispute.created",
     "data": {"object": {"id": "dp_odd", "amount": 10**30, "currency": "usd"}}},  # too big
    {"type": "charge.refunded", "data": {"object": {"refunds": {"data": "ana@example.test"}}}},
    {"type": "refund.updated", "data": {"object": "ana@example.test"}},   # not an object
]


async def event_rows(world: World, source: str | None = None) -> list[dict[str, Any]]:
    if source is None:
        rows = await world.bot.svc.store.fetch_all("SELECT * FROM webhook_events ORDER BY id")
    else:
        rows = await world.bot.svc.store.fetch_all(
            "SELECT * FROM webhook_events WHERE source = ? ORDER BY id", (source,))
    return [dict(r) for r in rows]


async def backlog(world: World) -> dict[str, int]:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{world.bot_url}/healthz")
    assert answer.status_code == 200
    return dict(answer.json()["backlog"])


async def send_stripe(world: World, n: int, event: dict[str, Any]) -> httpx.Response:
    body = json.dumps({"id": f"evt_odd_{n}", "object": "event", **event}).encode()
    async with httpx.AsyncClient() as client:
        return await client.post(f"{world.bot_url}/webhooks/stripe", content=body, headers={
            "Stripe-Signature": sign(body, STRIPE_WEBHOOK_SECRET, int(time.time())),
            "Content-Type": "application/json"})


async def cancel_while_checkfront_is_down(world: World, code: str) -> dict[str, Any]:
    world.paid_booking(code, [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    world.checkfront.down()
    answer = await world.cancel(code)
    await world.settle()
    assert answer.status_code == 200
    [row] = await event_rows(world, "checkfront")
    return row


async def give_up(world: World, code: str) -> dict[str, Any]:
    """An outage that lasts past the bound: the event is failed and shown."""
    await cancel_while_checkfront_is_down(world, code)
    await world.bot.worker.retry_events(utcnow() + timedelta(minutes=31))
    await world.settle()
    [row] = await event_rows(world, "checkfront")
    assert row["failed_at"] is not None and row["processed_at"] is None
    return row


async def test_a_cancellation_during_a_checkfront_outage_is_kept_then_retried(
    world: World,
) -> None:
    row = await cancel_while_checkfront_is_down(world, "OUT-1")

    assert row["processed_at"] is None and row["failed_at"] is None
    assert row["attempts"] == 1 and row["next_at"] > row["received_at"]
    assert "CheckfrontUnavailable" in row["last_error"] and "503" in row["last_error"]
    assert await cases.list_cases(world.bot.svc.store) == []
    waiting = await backlog(world)
    assert (waiting["events_retrying"], waiting["events_failed"]) == (1, 0)

    # not due yet: nothing is tried; once due and Checkfront is back, the case opens
    assert await world.bot.worker.retry_events(utcnow()) == []
    world.checkfront.up()
    done = await world.bot.worker.retry_events(utcnow() + timedelta(minutes=2))
    await world.settle()

    assert len(done) == 1
    case = (await cases.list_cases(world.bot.svc.store))[0]
    assert case.booking_code == "OUT-1" and case.status == Status.REFUNDED
    [row] = await event_rows(world, "checkfront")
    assert row["processed_at"] is not None and row["outcome"] == f"case {case.id} refunded"
    assert (await backlog(world))["events_retrying"] == 0


async def test_a_retrying_event_survives_a_restart(world: World) -> None:
    await cancel_while_checkfront_is_down(world, "OUT-2")
    world.checkfront.up()
    await world.bot.close()

    restarted = await Bot.create(world.bot.settings)
    server = await start(restarted.web)
    try:
        await restarted.worker.drain()
        assert await cases.list_cases(restarted.svc.store) == []   # not due yet
        await restarted.worker.retry_events(utcnow() + timedelta(minutes=2))
        await restarted.worker.drain()
        [case] = await cases.list_cases(restarted.svc.store)
        assert case.booking_code == "OUT-2" and case.status == Status.REFUNDED
    finally:
        await server.stop()


async def test_an_outage_past_the_bound_posts_a_card_and_retry_opens_the_case(
    sworld: World,
) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    row = await give_up(sworld, "OUT-3")

    assert row["attempts"] == 2 and "CheckfrontUnavailable" in row["last_error"]
    assert (await backlog(sworld))["events_failed"] == 1
    [card] = [m for m in sworld.slack.messages_in(APPROVALS) if "OUT-3" in all_text(m)]
    assert "could not be fetched" in all_text(card) and "503" in all_text(card)
    assert "Ana Silva" not in all_text(card) and "@example.test" not in all_text(card)
    retry = buttons(card)[ids.EVENT_RETRY]

    await sworld.sender.click(ids.EVENT_RETRY, retry["value"], SAM, message_ts=card["ts"])
    await sworld.settle()
    assert await cases.list_cases(sworld.bot.svc.store) == []   # staff may not retry
    refused = await sworld.bot.svc.store.fetch_all(
        "SELECT detail FROM audit_log WHERE action = 'slack.refused' AND actor = ?", (SAM,))
    assert [json.loads(r["detail"])["action"] for r in refused] == [ids.EVENT_RETRY]

    sworld.checkfront.up()
    await sworld.sender.click(ids.EVENT_RETRY, retry["value"], MARIA, message_ts=card["ts"])
    await sworld.settle()

    [case] = await cases.list_cases(sworld.bot.svc.store)
    assert case.booking_code == "OUT-3" and case.status == Status.REFUNDED
    [row] = await event_rows(sworld, "checkfront")
    assert row["processed_at"] is not None and row["failed_at"] is None
    assert (await backlog(sworld))["events_failed"] == 0
    assert any(f"case {case.id} refunded" in text for text in responses(sworld))

    await sworld.sender.click(ids.EVENT_RETRY, retry["value"], MARIA, message_ts=card["ts"])
    await sworld.settle()
    assert "already processed" in responses(sworld)[-1]
    assert len(sworld.stripe.refunds) == 1


async def test_odd_signed_events_become_dead_letters_and_do_not_block_the_queue(
    world: World,
) -> None:
    for n, event in enumerate(ODD_EVENTS):
        assert (await send_stripe(world, n, event)).status_code == 200
    world.paid_booking("AFTER-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await world.cancel("AFTER-1")
    await world.settle()

    odd = [r for r in await event_rows(world, "stripe") if r["event_id"].startswith("evt_odd")]
    assert [r["processed_at"] for r in odd] == [None] * 3
    assert all(r["failed_at"] is not None and r["attempts"] == 1 for r in odd)
    errors = [r["last_error"] for r in odd]
    assert errors[0].startswith("OverflowError") and errors[2].startswith("AttributeError")
    assert not any("ana@example.test" in e for e in errors)   # no payload in the error
    assert (await only_case_status(world, "AFTER-1")) == Status.REFUNDED
    waiting = await backlog(world)
    assert (waiting["events_failed"], waiting["events_unprocessed"]) == (3, 0)
    failed_audits = await world.bot.svc.store.fetch_all(
        "SELECT detail FROM audit_log WHERE action = 'webhook.dead_letter'")
    assert len(failed_audits) == 3
    assert not any("ana@example.test" in r["detail"] for r in failed_audits)

    again = StoredEvent(odd[0]["id"], "stripe", odd[0]["event_id"], odd[0]["kind"],
                        odd[0]["received_at"], json.loads(odd[0]["payload"]))
    assert await process(world.bot.svc, again) == "failed earlier: not run again"

    await world.bot.close()       # a restart does not run them again
    restarted = await Bot.create(world.bot.settings)
    server = await start(restarted.web)
    try:
        await restarted.worker.drain()
        await restarted.worker.retry_events(utcnow() + timedelta(days=1))
        rows = await restarted.svc.store.fetch_all(
            "SELECT attempts FROM webhook_events WHERE event_id LIKE 'evt_odd_%'")
        assert [r["attempts"] for r in rows] == [1, 1, 1]
    finally:
        await server.stop()


async def only_case_status(world: World, code: str) -> Status:
    [case] = [c for c in await cases.list_cases(world.bot.svc.store) if c.booking_code == code]
    return case.status


async def test_the_command_line_lists_failed_events_and_retries_one(world: World) -> None:
    await send_stripe(world, 0, ODD_EVENTS[2])
    await world.settle()
    row = await give_up(world, "OUT-4")
    dead = next(r for r in await event_rows(world, "stripe"))

    code, out, err = await run(world, "events", "list", "--failed")
    assert code == 0, err
    assert f"#{dead['id']}" in out and "AttributeError" in out
    assert f"#{row['id']}" in out and "OUT-4" in out and "CheckfrontUnavailable" in out

    code, out, _ = await run(world, "events", "retry", str(dead["id"]))
    assert code == 1 and "failed" in out and "AttributeError" in out

    world.checkfront.up()
    code, out, err = await run(world, "events", "retry", str(row["id"]))
    assert code == 0, err
    [case] = await cases.list_cases(world.bot.svc.store)
    assert f"case {case.id} refunded" in out and case.status == Status.REFUNDED

    code, _, err = await run(world, "events", "retry", str(row["id"]))
    assert code == 2 and "already processed" in err
    code, _, err = await run(world, "events", "retry", "999")
    assert code == 2 and "no event 999" in err


def test_the_stuck_card_stays_within_slack_limits_and_names_no_customer() -> None:
    for source, kind, subject in (("checkfront", "booking", "KMVQ-261124"),
                                  ("checkfront", "transaction", None),
                                  ("stripe", "refund.updated" * 20, "re_1" * 40)):
        card = stuck_card(StuckEvent(
            row_id=12, source=source, kind=kind, subject=subject, attempts=7,
            error="CheckfrontUnavailable: " + "ana@example.test down " * 300,
            since="2026-11-24T10:00:00+00:00"))
        check_message(card)
        assert "ana@example.test" not in all_text({"blocks": card.blocks, "text": card.text})
        [retry] = [e for b in card.blocks if b["type"] == "actions" for e in b["elements"]]
        assert retry["action_id"] == ids.EVENT_RETRY
        assert parse(EventRef, retry["value"]).event_id == 12
