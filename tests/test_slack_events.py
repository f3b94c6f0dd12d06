"""Slack Events API deliveries are de-duplicated by event_id in the store, over HTTP and over
Socket Mode: the same event twice is handled once, with or without Slack's retry header, and a
retry of a delivery that failed is handled."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_bolt.response import BoltResponse

from bot.cli.world import MARIA, World
from services.intake import slack_events
from services.intake.slack_events import Claim
from services.store.db import Store, utcnow

HOME = {"type": "app_home_opened", "user": MARIA, "channel": "D0MARIA", "tab": "home"}


def publishes(world: World) -> int:
    assert world.slack is not None
    return len(world.slack.calls_to("views.publish"))


async def post_event(world: World, body: str, retry: int | None = None) -> httpx.Response:
    assert world.sender is not None
    headers = world.sender.signed(body)
    headers["Content-Type"] = "application/json"
    if retry is not None:
        headers["X-Slack-Retry-Num"] = str(retry)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return await world.sender.client.post(world.sender.url, content=body.encode(),
                                          headers=headers)


async def test_the_same_event_twice_without_the_retry_header_is_handled_once(
    sworld: World,
) -> None:
    assert sworld.sender is not None
    body = sworld.sender.event_body(HOME)

    first = await post_event(sworld, body)
    await sworld.settle()
    again = await post_event(sworld, body)
    await sworld.settle()

    assert (first.status_code, again.status_code) == (200, 200)
    assert publishes(sworld) == 1


async def test_a_retry_whose_first_delivery_never_arrived_is_handled(sworld: World) -> None:
    assert sworld.sender is not None
    body = sworld.sender.event_body(HOME)

    retried = await post_event(sworld, body, retry=1)
    await sworld.settle()
    once_more = await post_event(sworld, body, retry=2)
    await sworld.settle()

    assert (retried.status_code, once_more.status_code) == (200, 200)
    assert publishes(sworld) == 1


async def test_a_retry_of_a_delivery_that_failed_is_handled(
    sworld: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert sworld.sender is not None and sworld.bot.slack is not None
    app = sworld.bot.slack.app
    real = app.async_dispatch

    async def failing_once(request: Any) -> BoltResponse:
        monkeypatch.setattr(app, "async_dispatch", real)
        return BoltResponse(status=500, body="")   # e.g. the listener could not finish

    monkeypatch.setattr(app, "async_dispatch", failing_once)
    body = sworld.sender.event_body(HOME)

    failed = await post_event(sworld, body)
    retried = await post_event(sworld, body, retry=1)
    await sworld.settle()
    after = await post_event(sworld, body, retry=2)
    await sworld.settle()

    assert (failed.status_code, retried.status_code, after.status_code) == (500, 200, 200)
    assert publishes(sworld) == 1


async def test_a_retry_of_a_handled_event_is_acked_and_not_handled_again(
    sworld: World,
) -> None:
    assert sworld.sender is not None
    body = sworld.sender.event_body(HOME)

    await post_event(sworld, body)
    await sworld.settle()
    retried = await post_event(sworld, body, retry=1)
    await sworld.settle()

    assert retried.status_code == 200 and retried.text == ""
    assert publishes(sworld) == 1


async def test_seen_events_are_kept_in_the_store(sworld: World) -> None:
    assert sworld.sender is not None
    body = sworld.sender.event_body(HOME)
    await post_event(sworld, body)
    await sworld.settle()

    rows = await sworld.bot.svc.store.fetch_all("SELECT * FROM slack_events")
    assert [(r["event_id"], r["kind"]) for r in rows] == [(json.loads(body)["event_id"],
                                                            "app_home_opened")]
    assert rows[0]["handled_at"] is not None


async def test_a_retry_while_the_first_delivery_is_in_hand_is_told_to_come_back(
    sworld: World,
) -> None:
    assert sworld.sender is not None
    body = sworld.sender.event_body(HOME)
    event_id = json.loads(body)["event_id"]
    assert await slack_events.claim(sworld.bot.svc.store, event_id, "app_home_opened") \
        is Claim.NEW   # the first delivery, still being handled

    retried = await post_event(sworld, body, retry=1)
    await sworld.settle()

    assert retried.status_code == 409   # not 200: Slack tries again later
    assert publishes(sworld) == 0


async def test_claims_in_flight_stale_handled_and_forgotten(tmp_path: Path) -> None:
    async with Store(tmp_path / "events.db") as store:
        now = utcnow()
        assert await slack_events.claim(store, "Ev1", "x", now) is Claim.NEW
        assert await slack_events.claim(store, "Ev1", "x", now + timedelta(seconds=5)) \
            is Claim.IN_FLIGHT
        # its process died: a retry half a minute later takes it over
        assert await slack_events.claim(store, "Ev1", "x", now + timedelta(seconds=31)) \
            is Claim.NEW
        await slack_events.handled(store, "Ev1")
        assert await slack_events.claim(store, "Ev1", "x", now + timedelta(minutes=5)) \
            is Claim.HANDLED
        assert await slack_events.claim(store, "Ev2", "x", now) is Claim.NEW
        await slack_events.release(store, "Ev2")   # its handling failed
        assert await slack_events.claim(store, "Ev2", "x", now) is Claim.NEW
        # a day later the rows are gone: the table does not grow without end
        assert await slack_events.claim(store, "Ev3", "x", now + timedelta(days=2)) \
            is Claim.NEW
        rows = await store.fetch_all("SELECT event_id, attempts FROM slack_events")
        assert [(r["event_id"], r["attempts"]) for r in rows] == [("Ev3", 1)]


# --- Socket Mode ---------------------------------------------------------------------------

@pytest.fixture
async def socket_world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.start(tmp_path, slack=True, socket_mode=True)
    try:
        yield w
    finally:
        await w.stop()


async def envelope(world: World, event_id: str, retry_attempt: int) -> None:
    """An events_api envelope with a retry number, and wait for the app's ack."""
    assert world.slack is not None
    hub = world.slack.socket
    envelope_id = f"env-{event_id}-{retry_attempt}"
    await hub.connections[-1].send_json({
        "envelope_id": envelope_id, "type": "events_api", "accepts_response_payload": False,
        "retry_attempt": retry_attempt, "retry_reason": "timeout" if retry_attempt else "",
        "payload": {"type": "event_callback", "team_id": "T0SANDBOX", "api_app_id": "A0SANDBOX",
                    "event": {**HOME, "event_ts": "1.0"}, "event_id": event_id,
                    "event_time": 1}})
    for _ in range(500):
        if any(a.get("envelope_id") == envelope_id for a in hub.acks):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no ack for {envelope_id}")


async def test_socket_mode_handles_a_first_retry_and_each_event_id_once(
    socket_world: World,
) -> None:
    await envelope(socket_world, "EvSOCK1", retry_attempt=1)   # the first never arrived
    await socket_world.settle()
    await envelope(socket_world, "EvSOCK1", retry_attempt=2)
    await envelope(socket_world, "EvSOCK2", retry_attempt=0)
    await envelope(socket_world, "EvSOCK2", retry_attempt=0)   # the same id, no retry number
    await socket_world.settle()

    assert publishes(socket_world) == 2
    assert socket_world.bot.worker.failures == []
