"""Several bot processes on one store (issue 14): three `python -m bot serve` instances, each
with its own id and a short lease, every cancellation webhook delivered to two random live
instances at once, one instance killed -9 mid-storm and never restarted. The survivors take
up what it held once its leases pass; then the counts: one case per booking, one refund per
allocation, one daily run (and one digest) for the day across all three, every post sent once,
the audit chain intact.

The store is one parameter (`store_url`): the SQLite file by default; with `DATABASE_URL` set to
a postgresql:// URL the same test runs against that database (the instances are handed it as
their `DATABASE_URL`), and every count is read through the store's own `read_all`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from bot.cli.world import APPROVALS, DIGEST
from bot.schedules import parse_schedule
from services.store import audit
from services.store.db import Store, open_store
from tests.served import TOKEN, Served, free_port
from tests.test_faults import AUTO, UNFINISHED, Rig
from tests.test_faults import rig as rig  # the stand-ins, as the fault suite's

BOOKINGS = 30
INSTANCES = 3
LEASE = "2"          # seconds: the killed instance's work is free this long after it died
SETTLES_WITHIN = 60.0


@pytest.fixture
def store_url(rig: Rig) -> str:
    """The one store every instance shares: `DATABASE_URL` when it names PostgreSQL, else
    the rig's SQLite file."""
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgresql://", "postgres://")) else str(rig.database)


@pytest.fixture
async def reader(store_url: str) -> AsyncIterator[Store]:
    store = await open_store(store_url).open()
    try:
        yield store
    finally:
        await store.close()


async def count(store: Store, sql: str, params: tuple[Any, ...] = ()) -> int:
    found = await store.read_one(sql, params)
    return int(found[0]) if found else 0


async def backlog(store: Store) -> dict[str, int]:
    marks = ",".join("?" * len(UNFINISHED))
    return {
        "events": await count(store, "SELECT COUNT(*) FROM webhook_events "
                                     "WHERE processed_at IS NULL"),
        "cases": await count(store, f"SELECT COUNT(*) FROM cases WHERE status IN ({marks})",
                             UNFINISHED),
        "posts": await count(store, "SELECT COUNT(*) FROM slack_outbox WHERE sent_at IS NULL"),
        "writebacks": await count(store, "SELECT COUNT(*) FROM checkfront_writebacks "
                                         "WHERE done_at IS NULL"),
        # the start-up daily run: when the killed instance was its leader, another takes it
        # over once the lease has passed, and runs it again from the start
        "daily runs": await count(store, "SELECT COUNT(*) FROM leases WHERE name LIKE "
                                         "'job:daily-reconcile:%' AND done_at IS NULL"),
    }


def quiet_schedules(now: datetime | None = None) -> dict[str, str]:
    """The scheduler's settings for a run of a few minutes: the daily run, the weekly review and
    the anomaly check due twelve hours from now (UTC), so none fires during it; the daily run
    still runs once at start-up. A storm is exactly what the anomaly check stops (hundreds of
    refunds in an hour pause automation), and a second daily run or a review would be a second
    post in the digest channel: left to their schedules, a run that crossed a quarter hour
    failed."""
    due = (now or datetime.now(UTC)) + timedelta(hours=12)
    return {"BUSINESS_TIMEZONE": "UTC", "DIGEST_AT": f"{due:%H:%M}",
            "REVIEW_AT": f"{due:%a} {due:%H:%M}".lower(),
            "ANOMALY_CHECK_AT": f"{due.minute} {due.hour} * * *"}


@pytest.mark.parametrize("now", [datetime(2026, 12, 2, 10, 14, 59, tzinfo=UTC),
                                 datetime(2026, 12, 31, 18, 59, 30, tzinfo=UTC)])
def test_quiet_schedules_fire_nowhere_near_the_run(now: datetime) -> None:
    settings = quiet_schedules(now)
    for name in ("DIGEST_AT", "REVIEW_AT", "ANOMALY_CHECK_AT"):
        fires = parse_schedule(settings[name], ZoneInfo("UTC")).get_next_fire_time(None, now)
        assert fires - now > timedelta(hours=11), (name, settings[name], fires)


async def start_instances(rig: Rig, store_url: str) -> list[Served]:
    store = {"DATABASE_URL": store_url} if "://" in store_url else {}
    schedules = quiet_schedules()   # once: every instance on the same schedules
    return list(await asyncio.gather(*(
        rig.bot(port=free_port(), INSTANCE_ID=f"bot-{n}", LEASE_SECONDS=LEASE,
                SCHEDULER_ENABLED="true", DIGEST_CHART="false", **schedules, **store)
        for n in range(1, INSTANCES + 1))))


async def deliver_twice(body: dict[str, Any], instances: list[Served],
                        chance: random.Random) -> None:
    """The webhook to two random live instances at once, each POST retried (on another live
    instance when its own is gone) until answered 200, as Checkfront retries."""

    async def one(first: Served) -> None:
        target, deadline = first, time.monotonic() + 30
        async with httpx.AsyncClient(timeout=5.0) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    answer = await client.post(f"{target.url}/webhooks/checkfront/{TOKEN}",
                                               json=body)
                    if answer.status_code == 200:
                        return
                live = [s for s in instances if s.running]
                target = chance.choice(live)
                await asyncio.sleep(0.05)
        raise AssertionError("a webhook was not taken within 30 s")

    live = [s for s in instances if s.running]
    await asyncio.gather(*(one(s) for s in chance.sample(live, min(2, len(live)))))


async def test_three_instances_one_killed_mid_storm_refund_each_booking_once(
        rig: Rig, store_url: str, reader: Store) -> None:
    chance = random.Random(20260914)
    codes = [rig.paid_booking(f"MI-{n:02d}", AUTO) for n in range(BOOKINGS)]
    instances = await start_instances(rig, store_url)
    victim = instances[chance.randrange(INSTANCES)]

    async def storm() -> None:
        sends = []
        for code in codes:
            sends.append(asyncio.create_task(
                deliver_twice(rig.cancelled_body(code), instances, chance)))
            await asyncio.sleep(chance.uniform(0.0, 0.05))
        await asyncio.gather(*sends)

    sending = asyncio.create_task(storm())
    await rig.until(lambda: len(rig.stripe.refunds) >= BOOKINGS // 4, within=30)
    await victim.kill()   # mid-storm: events it stored, posts, a channel and a slot it held
    assert victim.process.returncode == -9
    await asyncio.wait_for(sending, 60)

    deadline = time.monotonic() + SETTLES_WITHIN
    while time.monotonic() < deadline:
        if not any((await backlog(reader)).values()) and await count(
                reader, "SELECT COUNT(*) FROM cases") == BOOKINGS:
            break
        await asyncio.sleep(0.2)
    logs = "\n".join(p.log[-1500:] for p in instances)
    assert not any((await backlog(reader)).values()), f"{await backlog(reader)}\n{logs}"

    # one event per booking however many times and instances it was delivered to
    assert await count(reader, "SELECT COUNT(*) FROM webhook_events "
                               "WHERE source = 'checkfront'") == BOOKINGS
    for code in codes:   # one case per booking, one refund per allocation
        found = await reader.read_all("SELECT id, status FROM cases WHERE booking_code = ?",
                                      (code,))
        assert [c["status"] for c in found] == ["refunded"], (code, found)
        refunds = rig.refunds_of(code)
        assert refunds == [11000], (code, refunds)
        assert await count(reader, "SELECT COUNT(*) FROM executions WHERE case_id = ? AND "
                                   "status = 'succeeded'", (found[0]["id"],)) == 1
        # written back; a note Checkfront took from the instance killed before it recorded
        # that is written again (Checkfront cannot look a note up by our reference)
        assert rig.checkfront.status_of(code) == "STOP" and rig.checkfront.notes(code)
    assert len(rig.stripe.refunds) == BOOKINGS
    # every case's compact line out once
    assert await count(reader, "SELECT COUNT(*) FROM slack_messages") == BOOKINGS
    # the start-up daily run of three instances is one run for the day: one digest
    slots = await reader.read_all("SELECT name, claimed_by, done_at FROM leases "
                                  "WHERE name LIKE 'job:daily-reconcile:%'")
    assert len(slots) == 1 and slots[0]["done_at"] is not None, slots
    digests = [m for m in rig.slack.messages_in(DIGEST) if m.get("thread_ts") is None]
    assert len(digests) == 1, digests
    assert len(rig.slack.messages_in(APPROVALS)) >= 1
    result = await audit.verify(reader)
    assert result.ok and result.rows > 0, result
    assert all(s.running for s in instances if s is not victim)
