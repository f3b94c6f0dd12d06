"""The intake writer: webhook events committed in groups through a connection of their own,
each with its audit row, the chain linear across both connections; a store that cannot take
an event answers 503 (sent again), never a 200 for an event not stored."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import aiosqlite
import httpx
import pytest

from bot.cli.world import Item, World
from services.intake.events import store_event
from services.store import audit, db, sqlite_lock
from services.store.db import SYNC_FULL, SYNC_NORMAL, Store
from services.store.log_sync import LogSyncer
from services.store.writer import Batch, IntakeWriter, StoreUnavailable


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    opened = await Store(tmp_path / "intake.db").open()
    yield opened
    await opened.close()


def without_syncer(writer: IntakeWriter) -> IntakeWriter:
    """The writer as it is when no log syncer could be started: its thread syncs the log."""
    with writer._guard:
        writer._drop_syncer()
    assert writer.syncer is None
    return writer


def syncer_process(store: Store) -> subprocess.Popen[bytes]:
    writer = store.writer
    assert writer is not None and writer.syncer is not None
    assert writer.syncer.process.poll() is None
    return writer.syncer.process


def syncs_in_process(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The syncs of the log made in this process (by the writer's thread), by path."""
    synced: list[str] = []
    real = sqlite_lock.sync_log

    def spy(path: str) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(sqlite_lock, "sync_log", spy)
    return synced


async def ten_later(store: Store) -> list[asyncio.Future[object]]:
    """Ten webhooks stored, each handed over in a turn of the loop of its own."""
    later: list[asyncio.Future[object]] = []
    for n in range(1, 11):
        later.append(asyncio.ensure_future(store_event(
            store, source="checkfront", event_id=f"later-{n}", kind="booking",
            payload=payload(n))))
        await asyncio.sleep(0)
    return later


def payload(n: int) -> dict[str, object]:
    return {"booking": {"code": f"BK-{n}", "status": "STOP",
                        "customer": {"email": f"guest{n}@example.test"}}}


async def count(store: Store, table: str, where: str = "1") -> int:
    row = await store.fetch_one(f"SELECT COUNT(*) FROM {table} WHERE {where}")
    assert row is not None
    return int(row[0])


async def test_concurrent_events_are_committed_in_groups_each_with_its_audit_row(
    store: Store,
) -> None:
    assert store.writer is not None
    before = store.writer.batches
    stored = await asyncio.gather(*(
        store_event(store, source="checkfront", event_id=f"ev-{n}", kind="booking",
                    payload=payload(n), salt="s") for n in range(200)))

    assert all(event is not None for event in stored)
    assert sorted(e.row_id for e in stored if e) == list(range(1, 201))
    assert store.writer.batches - before < 50   # grouped, not one transaction each
    assert await count(store, "webhook_events") == 200
    rows = await store.fetch_all("SELECT actor, action, detail FROM audit_log ORDER BY id")
    assert [(r["actor"], r["action"]) for r in rows] == [("checkfront", "webhook.received")] * 200
    details = sorted((json.loads(r["detail"]) for r in rows), key=lambda d: d["row"])
    by_row = {e.row_id: e for e in stored if e}
    assert details == [{"event_id": by_row[d["row"]].event_id, "kind": "booking",
                        "row": d["row"]} for d in details]
    # each audit row is dated when its event was received
    received = {int(r["id"]): r["received_at"]
                for r in await store.fetch_all("SELECT id, received_at FROM webhook_events")}
    dated = await store.fetch_all("SELECT at, detail FROM audit_log")
    assert {json.loads(r["detail"])["row"]: r["at"] for r in dated} == received
    assert (await audit.verify(store)).ok
    # scrubbed as before: no email in what was stored
    dump = json.dumps([dict(r) for r in await store.fetch_all("SELECT * FROM webhook_events")])
    assert "example.test" not in dump


async def test_a_duplicate_is_recognised_also_within_one_batch(store: Store) -> None:
    first, second, third = await asyncio.gather(*(
        store_event(store, source="stripe", event_id="evt_same", kind="refund.updated",
                    payload={"id": "evt_same"}) for _ in range(3)))
    again = await store_event(store, source="stripe", event_id="evt_same",
                              kind="refund.updated", payload={"id": "evt_same"})
    other_source = await store_event(store, source="checkfront", event_id="evt_same",
                                     kind="booking", payload={})

    assert [e is None for e in (first, second, third)].count(False) == 1
    assert again is None and other_source is not None
    assert await count(store, "webhook_events") == 2
    assert await count(store, "audit_log") == 2
    assert (await audit.verify(store)).ok


async def test_the_chain_stays_linear_with_intake_and_other_transactions_interleaved(
    store: Store,
) -> None:
    async def intake(n: int) -> None:
        for k in range(40):
            await store_event(store, source="checkfront", event_id=f"in-{n}-{k}",
                              kind="booking", payload=payload(k))

    async def work(n: int) -> None:
        for k in range(40):
            async with store.transaction() as tx:
                await audit.append(tx, actor="worker", action="case.opened", case_id=k,
                                   detail={"n": n})
                await asyncio.sleep(0)   # hold the write lock across a turn of the loop
                await audit.append(tx, actor="worker", action="case.quoted", case_id=k)

    await asyncio.gather(*(intake(n) for n in range(4)), *(work(n) for n in range(3)))

    result = await audit.verify(store)
    assert result.ok, result
    assert result.rows == 4 * 40 + 3 * 40 * 2
    assert await count(store, "audit_log", "action = 'webhook.received'") == 160


async def test_a_failing_unit_fails_alone(store: Store) -> None:
    assert store.writer is not None

    def broken(batch: Batch) -> None:
        batch.conn.execute("INSERT INTO audit_log (id) VALUES (NULL)")  # NOT NULL columns

    results = await asyncio.gather(
        store_event(store, source="checkfront", event_id="a", kind="booking", payload={}),
        store.writer.run(broken),
        store_event(store, source="checkfront", event_id="b", kind="booking", payload={}),
        return_exceptions=True)

    assert results[0] is not None and not isinstance(results[0], BaseException)
    assert isinstance(results[1], StoreUnavailable)
    assert results[2] is not None and not isinstance(results[2], BaseException)
    assert await count(store, "webhook_events") == 2
    assert (await audit.verify(store)).ok


async def test_the_write_lock_held_too_long_fails_the_batch_and_nothing_is_stored(
    store: Store,
) -> None:
    assert store.writer is not None
    store.writer.busy_timeout = 0.2
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")   # another process holds the write lock
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            await store_event(store, source="checkfront", event_id="x", kind="booking",
                              payload={})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await count(store, "webhook_events") == 0
    assert await store_event(store, source="checkfront", event_id="x", kind="booking",
                             payload={}) is not None   # the redelivery is stored


async def test_close_commits_everything_queued_and_then_refuses(tmp_path: Path) -> None:
    store = await Store(tmp_path / "closing.db").open()
    pending = [asyncio.ensure_future(store_event(
        store, source="checkfront", event_id=f"c-{n}", kind="booking", payload={}))
        for n in range(100)]
    await asyncio.sleep(0)   # every one of them handed to the writer
    await store.close()
    stored = await asyncio.gather(*pending)
    assert all(event is not None for event in stored)
    with pytest.raises(StoreUnavailable):
        await store_event(store, source="checkfront", event_id="late", kind="booking",
                          payload={})

    reopened = await Store(tmp_path / "closing.db").open()
    try:
        assert await count(reopened, "webhook_events") == 100
        assert (await audit.verify(reopened)).ok
    finally:
        await reopened.close()


async def test_webhooks_and_durable_transactions_are_synced_the_rest_is_not(
        store: Store) -> None:
    """Durability: every webhook the intake writer commits is synced to disk (`sync_log`, what
    FULL does at a commit) before its caller is answered, whether it was committed on the
    loop's thread (synced by the writer's thread when there is no log syncer; with one, see
    the tests below) or, with the write lock taken, in the writer's thread; the store's
    transactions sync only when asked (`durable=True`: a person's decision, the mark before a
    Stripe refund)."""
    assert store.writer is not None and store.writer.synchronous == SYNC_FULL
    without_syncer(store.writer)
    seen: list[str] = []
    real_writer_sync = sqlite_lock.sync_log

    def writer_spy(path: str) -> None:
        seen.append("synced")
        real_writer_sync(path)

    def unit(batch: Batch) -> str:
        seen.append("committing")
        return str(batch.conn.execute("PRAGMA journal_mode").fetchone()[0])

    sqlite_lock.sync_log = writer_spy   # type: ignore[assignment]
    try:
        inline = store.writer.inline_batches
        assert await store.writer.run(unit) == "wal"
        seen.append("answered")
        assert seen == ["committing", "synced", "answered"]
        assert store.writer.inline_batches == inline + 1   # committed on the loop's thread

        seen.clear()
        async with store.transaction() as tx:   # holds SQLite's write lock: the thread waits
            await tx.execute("INSERT INTO state (key, value, updated_at) "
                             "VALUES ('held', '1', 'now')")
            await tx.execute("SELECT 1")
            waiting = asyncio.ensure_future(store.writer.run(unit))
            await asyncio.sleep(0.05)
            assert seen == [] and not waiting.done()
        assert await waiting == "wal"
        seen.append("answered")
        assert seen == ["committing", "synced", "answered"]
        assert store.writer.inline_batches == inline + 1   # that one in the thread
    finally:
        sqlite_lock.sync_log = real_writer_sync   # type: ignore[assignment]

    async def level(tx: aiosqlite.Connection) -> int:
        async with tx.execute("PRAGMA synchronous") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    synced: list[str] = []
    real = db.sync_log

    def spy(path: str) -> None:
        synced.append(path)
        real(path)

    db.sync_log = spy   # type: ignore[assignment]
    try:
        async with store.transaction() as tx:
            assert await level(tx) == SYNC_NORMAL
        assert synced == []
        async with store.transaction(durable=True) as tx:   # NORMAL, then the log synced
            assert await level(tx) == SYNC_NORMAL
        assert synced == [store.path]
        with pytest.raises(RuntimeError):
            async with store.transaction(durable=True) as tx:
                raise RuntimeError("rolled back")
        assert synced == [store.path]
        async with store.transaction() as tx:
            assert await level(tx) == SYNC_NORMAL
    finally:
        db.sync_log = real   # type: ignore[assignment]


async def test_a_writer_that_cannot_open_its_file_fails_to_start(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.Error):
        await IntakeWriter(str(tmp_path / "missing" / "x.db"), synchronous=2).start()


async def test_a_webhook_the_store_cannot_take_is_answered_503_and_stored_on_redelivery(
    world: World,
) -> None:
    world.paid_booking("LOCK-1", [Item("kayak-tour", "105.00", "5.00")])
    world.checkfront.booking("LOCK-1").status = "STOP"
    body = world.checkfront.webhook_body("LOCK-1")
    store = world.bot.svc.store
    assert store.writer is not None
    store.writer.busy_timeout = 0.2
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        async with httpx.AsyncClient() as client:
            refused = await client.post(world.webhook_url(), json=body)
    finally:
        other.execute("ROLLBACK")
        other.close()

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert await count(store, "webhook_events") == 0
    assert world.bot.rejections.by_source() == {}   # not the sender's fault

    async with httpx.AsyncClient() as client:
        accepted = await client.post(world.webhook_url(), json=body)
    await world.settle()
    assert accepted.status_code == 200 and accepted.json()["ok"] is True
    assert await count(store, "webhook_events", "source = 'checkfront'") == 1
    assert (await audit.verify(store)).ok


async def test_webhooks_to_a_closed_store_are_answered_503(world: World) -> None:
    await world.bot.svc.store.close()
    async with httpx.AsyncClient() as client:
        checkfront = await client.post(world.webhook_url(), json={"booking": {"code": "Z"}})
        stripe = await client.post(f"{world.bot_url}/webhooks/stripe", content=b"{}",
                                   headers={"Stripe-Signature": "t=1,v1=00"})
    assert checkfront.status_code == 503 and checkfront.headers["Retry-After"] == "5"
    assert stripe.status_code == 400   # a bad signature is refused before the store is asked


async def test_what_arrives_while_the_log_is_synced_is_written_together_after_it(
        store: Store) -> None:
    """Group commit: webhooks that arrive while the disk syncs the last commit could not be
    answered before the next sync anyway; they are held and written in one transaction once
    the sync is done, each answered after its own rows are synced (here by the writer's
    thread; by the log syncer in the test after this one)."""
    assert store.writer is not None
    without_syncer(store.writer)
    real = sqlite_lock.sync_log
    syncing = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_sync(path: str) -> None:
        loop.call_soon_threadsafe(syncing.set)
        time.sleep(0.05)
        real(path)

    sqlite_lock.sync_log = slow_sync   # type: ignore[assignment]
    try:
        before = store.writer.batches
        first = asyncio.ensure_future(store_event(
            store, source="checkfront", event_id="first", kind="booking", payload=payload(0)))
        await syncing.wait()   # the first is committed, its sync under way
        later = await ten_later(store)
        stored = await asyncio.gather(first, *later)
    finally:
        sqlite_lock.sync_log = real   # type: ignore[assignment]
    assert all(event is not None for event in stored)
    assert store.writer.batches - before == 2   # the first, then the ten together
    assert await count(store, "webhook_events") == 11
    assert (await audit.verify(store)).ok


async def test_a_log_that_cannot_be_synced_is_the_store_s_failure_on_both_paths(
        store: Store) -> None:
    """The rows are committed but not known to be on disk: the caller is told the store could
    not take them (StoreUnavailable: a webhook answers 503 and is sent again), on the loop's
    path and in the writer's thread alike, never another error (a 500); with the log syncer,
    see `test_a_log_the_syncer_cannot_sync_is_the_store_s_failure`."""
    assert store.writer is not None
    without_syncer(store.writer)
    real = sqlite_lock.sync_log

    def broken(path: str) -> None:
        raise OSError(5, "Input/output error")

    def unit(batch: Batch) -> int:
        return 1

    sqlite_lock.sync_log = broken   # type: ignore[assignment]
    try:
        with pytest.raises(StoreUnavailable):   # committed on the loop, synced in the thread
            await store.writer.run(unit)
        async with store.transaction() as tx:   # the write lock taken: written in the thread
            await tx.execute("INSERT INTO state (key, value, updated_at) "
                             "VALUES ('held', '1', 'now')")
            waiting = asyncio.ensure_future(store.writer.run(unit))
            await asyncio.sleep(0.05)
        with pytest.raises(StoreUnavailable):
            await waiting
    finally:
        sqlite_lock.sync_log = real   # type: ignore[assignment]
    assert await store.writer.run(unit) == 1   # and the writer goes on


async def test_a_webhook_committed_on_the_loop_is_answered_once_the_log_syncer_synced_it(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The log syncer, a process of its own, syncs what the loop's thread commits: the caller
    is answered only once the syncer has answered (here it is stopped, and nothing is
    answered until it goes on), and no sync is made in this process."""
    process = syncer_process(store)
    writer = store.writer
    assert writer is not None
    in_process = syncs_in_process(monkeypatch)
    os.kill(process.pid, signal.SIGSTOP)
    try:
        before, inline = writer.syncer_syncs, writer.inline_batches
        stored = asyncio.ensure_future(store_event(
            store, source="checkfront", event_id="synced", kind="booking", payload=payload(1)))
        await asyncio.sleep(0.1)
        assert writer.inline_batches == inline + 1   # committed on the loop's thread ...
        assert not stored.done()                     # ... and not answered before its sync
    finally:
        os.kill(process.pid, signal.SIGCONT)
    assert await stored is not None
    assert writer.syncer_syncs == before + 1 and in_process == []
    assert writer.syncer is not None   # how long the sync took, the pause included
    assert writer.syncer.longest >= 0.1 and writer.syncer.took[-1] >= 0.1


async def test_what_arrives_while_the_syncer_syncs_is_written_together_after_it(
        store: Store) -> None:
    """Group commit with the log syncer: what arrives while it syncs is held and written in
    one transaction once it has answered, then synced once more."""
    process = syncer_process(store)
    writer = store.writer
    assert writer is not None
    before, syncs = writer.batches, writer.syncer_syncs
    os.kill(process.pid, signal.SIGSTOP)
    try:
        first = asyncio.ensure_future(store_event(
            store, source="checkfront", event_id="first", kind="booking", payload=payload(0)))
        await asyncio.sleep(0.05)   # committed, its sync asked
        later = await ten_later(store)
        await asyncio.sleep(0.05)
        assert writer.batches - before == 1 and not first.done()
    finally:
        os.kill(process.pid, signal.SIGCONT)
    stored = await asyncio.gather(first, *later)
    assert all(event is not None for event in stored)
    assert writer.batches - before == 2   # the first, then the ten together
    assert writer.syncer_syncs - syncs == 2
    assert await count(store, "webhook_events") == 11
    assert (await audit.verify(store)).ok


async def test_a_syncer_that_dies_loses_nothing_the_thread_syncs_from_then_on(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The log syncer killed with a sync asked and not answered: that sync is made by the
    writer's thread and its caller answered; the webhooks after it are synced by the thread."""
    process = syncer_process(store)
    writer = store.writer
    assert writer is not None
    synced = syncs_in_process(monkeypatch)
    os.kill(process.pid, signal.SIGSTOP)
    asked = asyncio.ensure_future(store_event(
        store, source="checkfront", event_id="asked", kind="booking", payload=payload(0)))
    await asyncio.sleep(0.05)
    assert not asked.done()
    os.kill(process.pid, signal.SIGKILL)
    assert await asyncio.wait_for(asked, 5) is not None
    assert synced == [store.path] and writer.syncer is None
    after = await store_event(store, source="checkfront", event_id="after", kind="booking",
                              payload=payload(1))
    assert after is not None and synced == [store.path] * 2
    assert await count(store, "webhook_events") == 2
    assert (await audit.verify(store)).ok


async def test_a_log_the_syncer_cannot_sync_is_the_store_s_failure(store: Store,
                                                                    tmp_path: Path) -> None:
    """The syncer answers that the disk refused the sync: the caller gets StoreUnavailable (a
    webhook answers 503 and is sent again), and the writer goes on."""
    writer = store.writer
    assert writer is not None and writer.syncer is not None
    loop = asyncio.get_running_loop()
    without_syncer(writer)
    refused = LogSyncer.start(str(tmp_path / "missing" / "x.db"),   # a log it cannot open
                              loop, writer._synced)
    writer.syncer = refused

    def unit(batch: Batch) -> int:
        return 1

    with pytest.raises(StoreUnavailable):
        await writer.run(unit)
    assert writer.syncer is refused   # a refusal is the disk's, the syncer goes on
    with pytest.raises(StoreUnavailable):
        await writer.run(unit)


async def test_closing_ends_the_syncer_a_signal_to_the_process_group_does_not(
        tmp_path: Path) -> None:
    """A Ctrl-C or a service manager's SIGTERM reaches the syncer with the bot: it keeps
    syncing until the bot, stopping, closes the store."""
    opened = await Store(tmp_path / "closing.db").open()
    writer = opened.writer
    assert writer is not None and writer.syncer is not None
    process = writer.syncer.process
    syncs = writer.syncer_syncs
    try:
        assert await store_event(opened, source="checkfront", event_id="one", kind="booking",
                                 payload=payload(0)) is not None   # answered: the child serves
        os.kill(process.pid, signal.SIGTERM)
        os.kill(process.pid, signal.SIGINT)
        assert await store_event(opened, source="checkfront", event_id="two", kind="booking",
                                 payload=payload(1)) is not None
        assert process.poll() is None and writer.syncer is not None
        assert writer.syncer_syncs == syncs + 2
    finally:
        await opened.close()
    assert process.poll() == 0 and writer.syncer is None


async def test_a_unit_committed_on_the_loop_sees_no_caller_s_context(store: Store) -> None:
    """A batch is written from one caller's turn of the loop: its units must not read that
    caller's context (its correlation id would be stamped on the others' audit rows); they
    see none, as in the writer's thread."""
    from services import correlation
    assert store.writer is not None
    seen: list[object] = []

    def unit(batch: Batch) -> int:
        seen.append(correlation.current())
        return 1

    token = correlation.begin("ev-caller")
    try:
        inline = store.writer.inline_batches
        assert await store.writer.run(unit) == 1
        assert store.writer.inline_batches == inline + 1
    finally:
        correlation.reset(token)
    assert seen == [None]
