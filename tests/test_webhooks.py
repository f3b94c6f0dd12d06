"""Webhook endpoints refuse bad input with the right status, count the refusal (never an audit
row: strangers must not grow the chain), and change nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from pathlib import Path

import httpx
import pytest

from bot.app import Bot
from bot.cli.world import STRIPE_WEBHOOK_SECRET, WEBHOOK_TOKEN, Item, World
from bot.settings import load_settings
from sandbox.http import start
from sandbox.stripe_webhooks import sign
from services.intake.rejections import Rejections
from services.refunds import cases
from services.refunds.models import Status
from services.store import audit

pytestmark = pytest.mark.both_backends


async def stored_events(world: World) -> int:
    row = await world.bot.svc.store.fetch_one("SELECT COUNT(*) AS n FROM webhook_events")
    assert row is not None
    return int(row["n"])


def rejections(world: World) -> dict[tuple[str, str], int]:
    """The rejected requests counted, by (source, reason)."""
    return dict(world.bot.rejections.counts)


async def audit_rows(world: World) -> int:
    row = await world.bot.svc.store.fetch_one("SELECT COUNT(*) AS n FROM audit_log")
    assert row is not None
    return int(row["n"])


async def test_checkfront_webhook_with_a_wrong_token_is_401(world: World) -> None:
    world.paid_booking("BAD-1", [Item("kayak-tour", "105.00", "5.00")])
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{world.bot_url}/webhooks/checkfront/not-the-token",
                                   json=world.checkfront.webhook_body("BAD-1"))
    await world.settle()

    assert answer.status_code == 401
    assert await stored_events(world) == 0
    assert await cases.list_cases(world.bot.svc.store) == []
    assert rejections(world) == {("checkfront", "unauthorized"): 1}
    assert await audit_rows(world) == 0


async def test_rejected_requests_are_counted_and_logged_once_not_audited(
    world: World, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with httpx.AsyncClient() as client:
        for n in range(40):
            await client.post(f"{world.bot_url}/webhooks/checkfront/guess-{n}", json={})
            await client.post(f"{world.bot_url}/webhooks/stripe", content=b"{}",
                              headers={"Stripe-Signature": "t=1,v1=00"})

    assert await audit_rows(world) == 0
    assert await stored_events(world) == 0
    assert world.bot.rejections.by_source() == {"checkfront": 40, "stripe": 40}
    lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(lines) == 2, lines  # one per source within the minute
    assert not any("guess" in line for line in lines)
    async with httpx.AsyncClient() as client:
        health = (await client.get(f"{world.bot_url}/healthz")).json()
    assert health["rejected"] == {"checkfront": 40, "stripe": 40}


def test_the_rejection_line_after_a_quiet_minute_says_how_many_it_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    now = [0.0]
    counter = Rejections(clock=lambda: now[0])
    for second in range(0, 130, 10):   # one every 10 s for 2 minutes
        now[0] = float(second)
        counter.reject("checkfront", "unauthorized")

    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "rejected 1 checkfront request(s) since the last such line (latest: unauthorized)",
        "rejected 6 checkfront request(s) since the last such line (latest: unauthorized)",
        "rejected 6 checkfront request(s) since the last such line (latest: unauthorized)"]
    assert counter.total() == 13


@pytest.mark.parametrize(("body", "content_type", "status", "why", "reason"), [
    (b"{not json", "application/json", 400, "malformed body: invalid JSON", "malformed"),
    (b"[1, 2]", "application/json", 400, "malformed body: JSON body must be an object",
     "malformed"),
    (b"", "application/json", 400, "malformed body: empty body", "malformed"),
    (b"\xff\xfe", "application/json", 400, "malformed body: not UTF-8", "malformed"),
    (b"x" * (300 * 1024), "application/json", 413, "body too large", "too large"),
])
async def test_checkfront_webhook_rejects_malformed_and_oversized_bodies(
    world: World, body: bytes, content_type: str, status: int, why: str, reason: str,
) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(world.webhook_url(), content=body,
                                   headers={"Content-Type": content_type})

    assert answer.status_code == status
    assert answer.json()["error"].startswith(why)
    assert await stored_events(world) == 0
    assert rejections(world) == {("checkfront", reason): 1}
    assert await audit_rows(world) == 0
    assert (await audit.verify(world.bot.svc.store)).ok


async def test_checkfront_form_encoded_webhooks_are_accepted(world: World) -> None:
    world.paid_booking("FORM-1", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)])
    world.checkfront.booking("FORM-1").status = "STOP"
    body = world.checkfront.webhook_body("FORM-1")["booking"]
    items = body["order"]["items"]["item"]
    item = items if isinstance(items, dict) else items[0]
    form = {
        "booking[@attributes][booking_id]": body["@attributes"]["booking_id"],
        "booking[status]": "STOP", "booking[code]": "FORM-1",
        "booking[created_date]": body["created_date"],
        "booking[customer][name]": "Ana Silva",
        "booking[order][@attributes][currency_id]": "USD",
        "booking[order][total]": body["order"]["total"],
        "booking[order][paid_total]": body["order"]["paid_total"],
        "booking[order][items][item][@attributes][line_id]": "1",
        "booking[order][items][item][@attributes][item_id]": "1",
        "booking[order][items][item][sku]": item["sku"],
        "booking[order][items][item][start_date]": item["start_date"],
        "booking[order][items][item][total]": item["total"],
        "booking[order][items][item][tax_total]": item["tax_total"],
    }
    async with httpx.AsyncClient() as client:
        answer = await client.post(world.webhook_url(), data=form)
    await world.settle()

    assert answer.status_code == 200
    case = (await cases.list_cases(world.bot.svc.store))[0]
    assert case.booking_code == "FORM-1" and case.status == Status.REFUNDED


async def test_basic_auth_mode_checks_the_password(tmp_path: Path) -> None:
    world = await World.start(tmp_path, checkfront_webhook_auth="basic")
    try:
        world.paid_booking("BASIC-1", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)])
        body = world.checkfront.webhook_body("BASIC-1")
        url = f"{world.bot_url}/webhooks/checkfront"
        good = base64.b64encode(f"checkfront:{WEBHOOK_TOKEN}".encode()).decode()
        bad = base64.b64encode(b"checkfront:guess").decode()
        async with httpx.AsyncClient() as client:
            refused = await client.post(url, json=body, headers={"Authorization": f"Basic {bad}"})
            accepted = await client.post(url, json=body,
                                         headers={"Authorization": f"Basic {good}"})
        assert (refused.status_code, accepted.status_code) == (401, 200)
    finally:
        await world.stop()


def stripe_event(refund_id: str = "re_unknown") -> bytes:
    return json.dumps({"id": "evt_test_1", "type": "refund.updated", "object": "event",
                       "data": {"object": {"id": refund_id, "object": "refund",
                                           "status": "succeeded", "amount": 100,
                                           "currency": "usd"}}}).encode()


@pytest.mark.parametrize(("problem", "header"), [
    ("bad signature", lambda body: sign(body, "whsec_wrong", int(time.time()))),
    ("stale timestamp", lambda body: sign(body, STRIPE_WEBHOOK_SECRET, int(time.time()) - 301)),
    ("no signature", lambda body: ""),
])
async def test_stripe_webhook_rejects_bad_signatures(world: World, problem: str,
                                                     header: object) -> None:
    body = stripe_event()
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{world.bot_url}/webhooks/stripe", content=body,
                                   headers={"Stripe-Signature": header(body),  # type: ignore
                                            "Content-Type": "application/json"})

    assert answer.status_code == 400
    assert await stored_events(world) == 0
    assert rejections(world) == {("stripe", "bad signature"): 1}
    assert await audit_rows(world) == 0


async def test_stripe_events_are_deduplicated_by_id(world: World) -> None:
    body = stripe_event()
    headers = {"Stripe-Signature": sign(body, STRIPE_WEBHOOK_SECRET, int(time.time())),
               "Content-Type": "application/json"}
    async with httpx.AsyncClient() as client:
        first = await client.post(f"{world.bot_url}/webhooks/stripe", content=body,
                                  headers=headers)
        second = await client.post(f"{world.bot_url}/webhooks/stripe", content=body,
                                   headers=headers)
    await world.settle()

    assert first.json() == {"ok": True}
    assert second.json() == {"ok": True, "duplicate": True}
    assert await stored_events(world) == 1


async def test_missing_required_settings_stop_start_up_naming_them(tmp_path: Path) -> None:
    from bot.settings import SettingsError

    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, policy_file=tmp_path / "p.yml", checkfront_host="x",
                      checkfront_api_key="k", checkfront_api_secret="s",
                      checkfront_webhook_secret="w")
    assert "STRIPE_SECRET_KEY" in str(caught.value)
    assert "STRIPE_WEBHOOK_SECRET" in str(caught.value)


async def test_healthz_reports_schema_and_automation(world: World) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{world.bot_url}/healthz")
    data = answer.json()
    assert data["ok"] is True and data["paused"] is False and data["schema"] >= 5
    assert data["backlog"] == {"events_unprocessed": 0, "events_retrying": 0,
                               "events_failed": 0, "cases_waiting": 0,
                               "cases_approved": 0, "cases_executing": 0,
                               "checkfront_writebacks": 0,
                               "slack_unsent": 0}


async def test_healthz_counts_what_is_waiting(world: World) -> None:
    world.paid_booking("HEALTH-1", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await world.cancel("HEALTH-1")
    await world.settle()
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{world.bot_url}/healthz")
    assert answer.status_code == 200 and answer.json()["backlog"]["cases_waiting"] == 1


async def test_healthz_says_not_ok_when_the_store_is_gone(world: World) -> None:
    await world.bot.svc.store.close()
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{world.bot_url}/healthz")
    assert answer.status_code == 503 and answer.json()["ok"] is False


async def test_events_stored_before_a_crash_are_processed_at_start_up(world: World) -> None:
    world.paid_booking("LATER-1", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)])
    world.checkfront.booking("LATER-1").status = "STOP"
    from services.intake.events import body_hash, store_event

    payload = world.checkfront.webhook_body("LATER-1")
    await store_event(world.bot.svc.store, source="checkfront",
                      event_id=body_hash(json.dumps(payload).encode()), kind="booking",
                      payload=payload)  # stored, then the process died before the worker ran
    await world.bot.close()

    restarted = await Bot.create(world.bot.settings)
    server = await start(restarted.web)
    try:
        await restarted.worker.drain()
        case = (await cases.list_cases(restarted.svc.store))[0]
        assert case.status == Status.REFUNDED
        assert len(world.stripe.refunds) == 1
    finally:
        await server.stop()


async def test_closing_waits_at_most_the_grace_period_and_leaves_the_backlog_queued(
    tmp_path: Path,
) -> None:
    world = await World.start(tmp_path, shutdown_grace_seconds=0.5)
    try:
        world.checkfront.stall(2.0, times=1000)   # each Checkfront call takes 2 s
        for n in range(8):
            world.paid_booking(f"SLOW-{n}", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)])
            await world.cancel(f"SLOW-{n}")
        await asyncio.sleep(0.2)   # the first event is in hand, waiting on Checkfront

        began = time.monotonic()
        await world.bot.close()
        took = time.monotonic() - began
        assert took < 1.5, took   # not the 16 s or more the backlog takes

        world.checkfront.clear_faults()
        restarted = await Bot.create(world.bot.settings)   # the same database file
        server = await start(restarted.web)   # start-up re-queues what was not applied
        try:
            await restarted.worker.drain()
            refunded = await cases.list_cases(restarted.svc.store)
            assert sorted(c.booking_code for c in refunded) == [f"SLOW-{n}" for n in range(8)]
            assert {c.status for c in refunded} == {Status.REFUNDED}
            assert len(world.stripe.refunds) == 8
        finally:
            await server.stop()
    finally:
        await world.stop()
