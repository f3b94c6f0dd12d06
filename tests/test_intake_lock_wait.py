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
        assert 0.15 <= writer.lock_wait_seconds < 2 and writer.lock_wait_longest >= 0.15
    finally:
        await store.close()
