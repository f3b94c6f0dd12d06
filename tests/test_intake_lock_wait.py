"""The intake writer tells how long its batches waited for SQLite's write lock (another
connection's transaction: the worker's), the wait a webhook's 200 pays on top of its commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from services.intake.events import store_event
from services.store.db import Store


async def test_the_time_waited_for_the_write_lock_is_counted(tmp_path: Path) -> None:
    store = await Store(tmp_path / "wait.db").open()
    try:
        writer = store.writer
        assert writer is not None
        await store_event(store, source="checkfront", event_id="a", kind="booking", payload={})
        assert writer.lock_waits == 0 and writer.lock_wait_seconds < 0.05
        other = sqlite3.connect(store.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")   # the worker's transaction holds the lock
        stored = asyncio.create_task(store_event(store, source="checkfront", event_id="b",
                                                 kind="booking", payload={}))
        await asyncio.sleep(0.15)
        assert not stored.done()
        other.execute("ROLLBACK")
        other.close()
        assert await stored is not None
        assert writer.lock_waits == 1
        # it began waiting a little after the sleep began, and waited until the ROLLBACK
        assert 0.1 <= writer.lock_wait_seconds < 2 and writer.lock_wait_longest >= 0.1
    finally:
        await store.close()


async def test_the_webhooks_of_one_turn_of_the_loop_go_to_the_thread_together(
    tmp_path: Path,
) -> None:
    store = await Store(tmp_path / "turn.db").open()
    try:
        writer = store.writer
        assert writer is not None
        before = writer.batches
        stored = await asyncio.gather(*(
            store_event(store, source="checkfront", event_id=f"e{n}", kind="booking",
                        payload={"n": n}) for n in range(20)))
        assert all(event is not None for event in stored)
        assert writer.batches - before == 1   # one hand-over, one transaction
        rows = await store.fetch_all("SELECT event_id FROM webhook_events ORDER BY id")
        assert [r[0] for r in rows] == [f"e{n}" for n in range(20)]
    finally:
        await store.close()


async def test_what_was_queued_in_the_turn_the_store_closed_is_still_committed(
    tmp_path: Path,
) -> None:
    store = await Store(tmp_path / "closing.db").open()
    tasks = [asyncio.create_task(store_event(store, source="checkfront", event_id=f"c{n}",
                                             kind="booking", payload={}))
             for n in range(5)]
    await asyncio.sleep(0)   # each has queued its event; the hand-over has not run yet
    assert store.writer is not None and store.writer._pending
    await asyncio.wait_for(store.close(), 5)
    done = await asyncio.wait_for(asyncio.gather(*tasks), 5)   # none left unanswered
    assert all(event is not None for event in done)
    reopened = await Store(tmp_path / "closing.db").open()
    try:
        row = await reopened.fetch_one("SELECT COUNT(*) FROM webhook_events")
        assert row is not None and row[0] == 5
    finally:
        await reopened.close()
