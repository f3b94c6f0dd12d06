"""`/readyz`: ready with the store reachable and migrated, the worker and scheduler running and
the outbox not stalled; 503 naming what is not, and back once it is; `/healthz` stays alive."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot.cli.world import World
from bot.readiness import Readiness, newest_schema
from services import outbox as posts


async def ready(world: World) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(f"{world.bot_url}/readyz")


async def test_ready_then_not_when_the_store_goes_away_then_ready_again(world: World) -> None:
    answer = await ready(world)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ready": True, "checks": {
        "store": "ok", "worker": "ok", "scheduler": "off", "outbox": "off", "stopping": "ok"}}

    store = world.bot.svc.store
    await store.close()
    try:
        down = await ready(world)
        assert down.status_code == 503
        assert down.json()["ready"] is False
        assert down.json()["checks"]["store"].startswith("unreachable")
        assert {k for k, v in down.json()["checks"].items() if v not in ("ok", "off")} == \
            {"store"}
    finally:
        await store.open()
    assert (await ready(world)).status_code == 200


async def test_a_removed_database_file_is_not_ready(world: World) -> None:
    path = Path(world.bot.svc.store.path)
    moved = path.with_suffix(".moved")
    os.rename(path, moved)
    try:
        down = await ready(world)
        assert down.status_code == 503
        assert down.json()["checks"]["store"] == "database file missing"
    finally:
        os.rename(moved, path)
    assert (await ready(world)).status_code == 200


async def test_an_unmigrated_store_and_a_stopped_worker_are_named(world: World) -> None:
    store = world.bot.svc.store
    async with store.transaction() as tx:
        await tx.execute("DELETE FROM schema_migrations WHERE version = ?", (newest_schema(),))
    down = (await ready(world)).json()
    # the migration before the newest (numbers may have gaps while slices land apart)
    before = (await store.fetch_one("SELECT MAX(version) AS v FROM schema_migrations"))["v"]
    assert down["checks"]["store"] == \
        f"schema {before}, migrations up to {newest_schema()}"
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO schema_migrations (version, name, applied_at) "
                         "VALUES (?, 'x', 'now')", (newest_schema(),))
    await world.bot.worker.stop(grace=0)
    answer = await ready(world)
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"store": "ok", "worker": "not running",
                                       "scheduler": "off", "outbox": "off", "stopping": "ok"}
    async with httpx.AsyncClient() as client:   # alive all the same
        assert (await client.get(f"{world.bot_url}/healthz")).status_code == 200


@pytest.fixture
async def slack_world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.start(tmp_path, slack=True, scheduler_enabled=True, outbox_stall_seconds=1)
    try:
        yield w
    finally:
        await w.stop()


async def test_the_scheduler_and_a_stalled_outbox(slack_world: World) -> None:
    world = slack_world
    await world.settle()
    answer = await ready(world)
    assert answer.status_code == 200, answer.text
    assert answer.json()["checks"]["scheduler"] == "ok"
    assert answer.json()["checks"]["outbox"] == "ok"
    assert world.bot.slack is not None and world.bot.scheduler is not None
    outbox = world.bot.slack.outbox

    await outbox.stop()   # the sender stops; a post due waits
    await posts.add(world.bot.svc.store, "C0APPROVE", "alert", None, {"text": "hello"})
    answer = await ready(world)
    assert answer.status_code == 503
    assert answer.json()["checks"]["outbox"] == "sender not running"

    await outbox.start()  # sending again: ready
    await outbox.drain()
    assert (await ready(world)).status_code == 200

    world.bot.scheduler.shutdown(wait=False)
    answer = await ready(world)
    assert answer.status_code == 503
    assert answer.json()["checks"]["scheduler"] == "not running"


@dataclass
class Sender:
    """What readiness reads of the outbox: whether it runs, when it last called Slack."""

    running: bool
    last_attempt: float | None


async def test_a_post_overdue_with_no_call_to_slack_is_a_stall(world: World) -> None:
    store = world.bot.svc.store
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO slack_outbox (channel, kind, case_id, payload, "
                         "created_at, next_at) VALUES ('C0APPROVE', 'alert', NULL, '{}', ?, ?)",
                         ("2020-01-01T00:00:00.000000+00:00",) * 2)

    idle = await Readiness(store, world.bot.worker, outbox=Sender(True, time.monotonic() - 120),
                           stall_seconds=60).checks()  # type: ignore[arg-type]
    assert idle["outbox"] == "stalled: a post due for over 60 s, no call to Slack"
    never = await Readiness(store, world.bot.worker, outbox=Sender(True, None),
                            stall_seconds=60).checks()  # type: ignore[arg-type]
    assert never["outbox"].startswith("stalled")
    busy = await Readiness(store, world.bot.worker, outbox=Sender(True, time.monotonic() - 1),
                           stall_seconds=60).checks()  # type: ignore[arg-type]
    assert busy["outbox"] == "ok"   # a backlog being worked through is not a stall
    async with store.transaction() as tx:
        await tx.execute("UPDATE slack_outbox SET next_at = ?", ("2999-01-01T00:00:00+00:00",))
    later = await Readiness(store, world.bot.worker, outbox=Sender(True, None),
                            stall_seconds=60).checks()  # type: ignore[arg-type]
    assert later["outbox"] == "ok"   # tried again later (Slack refused it): not a stall
