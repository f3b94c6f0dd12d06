"""Store transactions in few trips (`services.store.sqlite_tx.Tx`): BEGIN IMMEDIATE goes with
the first statement, COMMIT with the audit rows still deferred; what a transaction does and
refuses is what it was when each of those was a trip of its own."""

from __future__ import annotations

import asyncio
import faulthandler
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot.cli.world import STRIPE_WEBHOOK_SECRET, Item, World
from services.intake.events import body_hash, store_event
from services.intake.routing import process
from services.refunds import cases
from services.store import audit, db
from services.store.db import BUSY_MS, SYNC_NORMAL, Store, Tx, one, reads, write


def count_trips(store: Store) -> list[int]:
    """A counter of the trips made to the store connection's thread from now on."""
    made = [0]
    conn = store._db
    assert conn is not None
    original = conn._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        made[0] += 1
        return await original(fn, *args, **kwargs)

    conn._execute = counted  # type: ignore[method-assign]
    return made


async def audit_rows(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return [(r[0], r[1]) for r in db.execute("SELECT actor, action FROM audit_log ORDER BY id")]


async def test_a_transaction_of_a_write_and_two_audit_rows_is_two_trips(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db") as store:
        trips = count_trips(store)
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO state (key, value, updated_at) VALUES ('k', '1', 'x')")
            await audit.append(tx, actor="t", action="one")
            await audit.append(tx, actor="t", action="two")
        assert trips[0] == 0   # all of it on the loop's thread (2 trips when each went there)
        assert (await audit.verify(store)).ok
    assert await audit_rows(tmp_path / "s.db") == [("t", "one"), ("t", "two")]


async def test_audit_rows_alone_are_one_trip_and_an_empty_transaction_none(
        tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db") as store:
        trips = count_trips(store)
        await audit.record(store, actor="t", action="alone")
        assert trips[0] == 0   # on the loop's thread (1 trip when it went to the store's)
        async with store.transaction():
            pass
        assert trips[0] == 0
        assert (await audit.verify(store)).ok


async def test_a_failing_body_leaves_neither_its_writes_nor_its_deferred_audit_rows(
        tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db") as store:
        await audit.record(store, actor="t", action="before")
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO state (key, value, updated_at) "
                                 "VALUES ('k', '1', 'x')")
                await audit.append(tx, actor="t", action="lost")
                raise RuntimeError("the body failed")
        assert not store.db.in_transaction
        assert await store.get_state("k") is None
        await audit.record(store, actor="t", action="after")
        assert (await audit.verify(store)).ok
    assert await audit_rows(tmp_path / "s.db") == [("t", "before"), ("t", "after")]


async def test_a_failing_deferred_row_rolls_the_transaction_back(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db") as store:
        with pytest.raises(sqlite3.OperationalError):
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO state (key, value, updated_at) "
                                 "VALUES ('k', '1', 'x')")
                tx.defer(lambda conn, memo: conn.execute("SELECT * FROM no_such_table"))
        assert not store.db.in_transaction
        assert await store.get_state("k") is None


async def test_a_write_nobody_reads_goes_with_the_next_trip_and_fails_the_transaction(
        tmp_path: Path) -> None:
    """`write` in a transaction: no trip of its own, in order with the statements around it
    (a read after it sees it), and a write that fails there rolls everything back."""
    async with Store(tmp_path / "s.db") as store:
        trips = count_trips(store)
        async with store.transaction() as tx:
            await write(tx, "INSERT INTO state (key, value, updated_at) VALUES ('a', '1', 'x')")
            await write(tx, "UPDATE state SET value = '2' WHERE key = 'a'")
            assert trips[0] == 0
            row = await one(tx, "SELECT value FROM state WHERE key = 'a'")
            assert row is not None and row[0] == "2" and trips[0] == 0
            await write(tx, "INSERT INTO state (key, value, updated_at) VALUES ('b', '3', 'x')")
        assert trips[0] == 0   # on the loop's thread (2 trips when each went to the store's)
        assert (await store.get_state("a"), await store.get_state("b")) == (2, 3)

        with pytest.raises(sqlite3.IntegrityError):
            async with store.transaction() as tx:
                await write(tx, "UPDATE state SET value = '9' WHERE key = 'a'")
                await write(tx, "INSERT INTO state (key, value, updated_at) "
                                "VALUES ('b', '4', 'x')")   # b exists: refused at the commit
        assert not store.db.in_transaction
        assert (await store.get_state("a"), await store.get_state("b")) == (2, 3)


async def test_reads_through_the_store_inside_a_transaction_are_part_of_it(
        tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db") as store:
        async with store.transaction() as tx:
            assert store.db is tx and isinstance(tx, Tx)
            await audit.append(tx, actor="t", action="deferred")
            # a read through the store sends BEGIN and the deferred row first: it sees both
            row = await store.fetch_one("SELECT COUNT(*) FROM audit_log")
            assert row is not None and row[0] == 1
            assert store.db.raw.in_transaction
        assert store.db is not tx and isinstance(store.db, aiosqlite.Connection)


async def test_a_durable_transaction_syncs_its_commit_after_the_lock_before_it_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`durable=True`: the log is synced to disk (`sync_log`) once the commit is made and the
    store's lock let go, before the transaction returns; never for a transaction that rolled
    back nor for one not asked to be durable; the connection stays at `synchronous` NORMAL."""
    async with Store(tmp_path / "s.db") as store:
        synced: list[tuple[str | None, bool]] = []
        real = db.sync_log

        def spy(path: str) -> None:
            with sqlite3.connect(path) as other:   # the commit is made when the sync starts
                row = other.execute("SELECT value FROM state WHERE key = 'd'").fetchone()
            synced.append((row[0] if row else None, store._lock.locked()))
            real(path)

        monkeypatch.setattr(db, "sync_log", spy)
        async with store.transaction(durable=True) as tx:
            await tx.execute("INSERT INTO state (key, value, updated_at) VALUES ('d', '1', 'x')")
            assert synced == []
        assert synced == [("1", False)]
        with pytest.raises(RuntimeError):
            async with store.transaction(durable=True) as tx:
                await tx.execute("UPDATE state SET value = '2' WHERE key = 'd'")
                raise RuntimeError("the body failed")
        async with store.transaction() as tx:
            await tx.execute("UPDATE state SET value = '3' WHERE key = 'd'")
        assert synced == [("1", False)]
        row = await store.fetch_one("PRAGMA synchronous")
        assert row is not None and row[0] == SYNC_NORMAL


async def test_the_chain_stays_linear_with_the_intake_writer_appending_between(
        tmp_path: Path) -> None:
    """The chain's end is read inside each transaction, so rows the intake writer (another
    connection) appended between two transactions are linked to, never forked from."""
    async with Store(tmp_path / "s.db") as store:
        async def worker_side(n: int) -> None:
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO state (key, value, updated_at) VALUES (?, '1', 'x') "
                                 "ON CONFLICT (key) DO NOTHING", (f"k{n}",))
                await audit.append(tx, actor="worker", action=f"w{n}")
                await audit.append(tx, actor="worker", action=f"w{n}b")

        async def intake_side(n: int) -> None:
            await store_event(store, source="checkfront", kind="booking", event_id=f"e{n}",
                              payload={"n": n})

        await asyncio.gather(*(f(n) for n in range(20) for f in (worker_side, intake_side)))
        result = await audit.verify(store)
        assert result.ok and result.rows == 60, result


TRIPS = 25   # trips to the store's thread for one automatic refund (about 56 at a trip a statement;
#             32 before the writes nobody reads the answer of went with the next trip and
#             a booking's stored payments and own refunds were read in one)


async def test_an_automatic_refund_in_few_trips_to_the_store_thread(world: World) -> None:
    world.stripe.configure_webhook(f"{world.bot_url}/webhooks/stripe",
                                   STRIPE_WEBHOOK_SECRET, events=["charge.dispute.created"])
    world.paid_booking("TRIPS-2", [Item("kayak-tour", "120.00", "0.00", hours_ahead=72)])
    booking = world.checkfront.booking("TRIPS-2")
    booking.status = "STOP"
    for item in booking.items:
        item.status = "STOP"
    body = world.checkfront.webhook_body("TRIPS-2")
    svc = world.bot.svc
    event = await store_event(svc.store, source="checkfront", kind="booking",
                              event_id=body_hash(json.dumps(body).encode()), payload=body)
    assert event is not None
    trips = count_trips(svc.store)
    outcome = await process(svc, event)
    made = trips[0]
    [case] = await cases.list_cases(svc.store)
    assert outcome == f"case {case.id} refunded"
    assert made <= TRIPS, made
    assert [e.action for e in await audit.history(svc.store, case.id)] == [
        "case.opened", "quote.made", "case.auto_approved", "case.executing",
        "execution.planned", "stripe.refund", "checkfront.written", "case.refunded"]
    assert (await audit.verify(svc.store)).ok


async def test_a_transaction_lets_the_webhooks_being_stored_commit_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the intake writer holds webhooks (handed over, not answered), a store transaction
    waits for them before it takes the write lock; at most `INTAKE_FIRST`, then it goes."""
    async with Store(tmp_path / "s.db") as store:
        writer = store.writer
        assert isinstance(writer, db._IntakeFirst)
        began: list[str] = []

        def holding(units: int) -> None:   # as `run` counts a webhook handed over, answered
            writer.in_flight = units
            (writer.idle.clear if units else writer.idle.set)()

        async def worker_side(key: str) -> None:
            async with store.transaction() as tx:
                began.append(key)
                await write(tx, "INSERT INTO state (key, value, updated_at) VALUES (?, '1', 'x')",
                            (key,))

        monkeypatch.setattr(db, "INTAKE_FIRST", 5.0)
        holding(1)   # a webhook being stored
        waiting = asyncio.create_task(worker_side("a"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert began == [] and not waiting.done()
        holding(0)   # committed and answered
        await waiting
        assert began == ["a"]

        monkeypatch.setattr(db, "INTAKE_FIRST", 0.01)
        holding(1)   # never answered: the worker still goes
        await asyncio.wait_for(worker_side("b"), 2.0)
        assert began == ["a", "b"]
        holding(0)

        # a real webhook: counted while it is stored, not after
        counts: list[int] = []
        stored = await writer.run(lambda batch: counts.append(writer.in_flight) or 7)
        assert (stored, counts, writer.in_flight, writer.idle.is_set()) == (7, [1], 0, True)


async def test_several_reads_in_one_trip_see_the_transaction(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db") as store:
        await store.fetch_all("SELECT 1")
        trips = count_trips(store)
        found = await reads(store.db, [("SELECT 1 AS n", ()), ("SELECT ? AS n", (2,))])
        assert [[r["n"] for r in rows] for rows in found] == [[1], [2]] and trips[0] == 1
        async with store.transaction() as tx:
            await write(tx, "INSERT INTO state (key, value, updated_at) VALUES ('k', '5', 'x')")
            [keys, none] = await reads(tx, [("SELECT key FROM state", ()),
                                            ("SELECT key FROM state WHERE key = ?", ("z",))])
            assert [r["key"] for r in keys] == ["k"] and none == []
        assert trips[0] == 1   # the reads outside a transaction; the transaction on the loop's


async def test_a_transaction_waits_for_a_held_write_lock_in_the_thread_not_on_the_loop(
        tmp_path: Path) -> None:
    """Statements of a transaction run on the loop's thread, but its BEGIN never waits there
    for SQLite's write lock: held by another connection, the BEGIN goes to the store's thread
    (the loop keeps running), and the transaction commits once the lock is free."""
    async with Store(tmp_path / "s.db") as store:
        other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        trips = count_trips(store)
        ticks = 0

        async def writer() -> None:
            async with store.transaction() as tx:
                await write(tx, "INSERT INTO state (key, value, updated_at) "
                                "VALUES ('w', '1', 'x')")
                await tx.execute("UPDATE state SET value = '2' WHERE key = 'w'")

        task = asyncio.create_task(writer())
        for _ in range(20):   # the loop runs on while the BEGIN waits
            await asyncio.sleep(0.005)
            ticks += 1
        assert not task.done() and ticks == 20
        other.execute("COMMIT")
        other.close()
        await task
        assert trips[0] == 1 and await store.get_state("w") == 2
        assert not store.db.in_transaction


async def test_a_durable_transaction_makes_no_trip_of_its_own(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db") as store:
        trips = count_trips(store)
        async with store.transaction(durable=True) as tx:
            await tx.execute("INSERT INTO state (key, value, updated_at) VALUES ('d', '1', 'x')")
            await audit.append(tx, actor="t", action="durable")
        assert trips[0] == 0   # the commit inline, the log's sync in a thread of its own
        assert await store.get_state("d") == 1 and (await audit.verify(store)).ok


async def test_the_store_checkpoints_its_log_every_so_many_transactions(
        tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db") as store:
        for n in range(db.CHECKPOINT_EVERY * 2 + 1):
            async with store.transaction() as tx:
                await write(tx, "INSERT INTO state (key, value, updated_at) VALUES (?, ?, 'x') "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            ("n", str(n)))
        row = await one(store.db, "PRAGMA wal_checkpoint(PASSIVE)")
        assert row is not None
        busy, logged, done = row
        assert busy == 0 and done == logged
        assert logged < db.CHECKPOINT_EVERY * 2   # frames since the last checkpoint only


class _BusyConnection:
    """A connection whose `BEGIN IMMEDIATE` meets SQLite's write lock held elsewhere, with the
    extended result code SQLite gives in WAL mode (SQLITE_BUSY_SNAPSHOT, 517 = 5 | 2 << 8)."""

    def __init__(self, code: int) -> None:
        self.code, self.statements = code, []

    def execute(self, sql: str) -> None:
        self.statements.append(sql)
        if sql == "BEGIN IMMEDIATE":
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = self.code
            raise error


@pytest.mark.parametrize("code", [sqlite3.SQLITE_BUSY, 517, 261])   # BUSY, _SNAPSHOT, _RECOVERY
def test_a_busy_begin_on_the_loop_waits_in_the_thread_whatever_its_extended_code(
        code: int) -> None:
    conn = _BusyConnection(code)
    assert Tx._begin_now(Tx.__new__(Tx), conn) is False   # wait for it off the loop
    assert conn.statements[-1] == f"PRAGMA busy_timeout={BUSY_MS}"   # the wait restored


def test_another_error_at_begin_is_raised() -> None:
    with pytest.raises(sqlite3.OperationalError):
        Tx._begin_now(Tx.__new__(Tx), _BusyConnection(sqlite3.SQLITE_IOERR))


async def test_transactions_and_reads_outside_them_never_use_the_connection_at_once(
        tmp_path: Path) -> None:
    """A transaction's statements run on the loop's thread only while the connection's own
    thread has nothing of it under way (reads made outside a transaction go there): SQLite
    would serialise the two, but a Python callback on the connection (a trace, as the
    query-plan tests install) then needs the interpreter the loop's thread holds while it
    waits for SQLite: a deadlock. Here both run at once, with a trace callback on."""
    store = await Store(tmp_path / "bot.db").open()
    seen: list[str] = []
    faulthandler.dump_traceback_later(30, exit=True)   # a deadlock ends the run, not hangs it
    try:
        await store.db.set_trace_callback(seen.append)

        async def writes() -> None:
            for n in range(3000):
                async with store.transaction() as tx:
                    await tx.execute("INSERT INTO state (key, value, updated_at) "
                                     "VALUES (?, '1', 'now') ON CONFLICT (key) "
                                     "DO UPDATE SET value = excluded.value", (f"k{n % 7}",))

        async def reads_outside() -> None:
            for _ in range(3000):
                await reads(store.db, [("SELECT key, value FROM state WHERE key > ?", ("",))])

        await asyncio.wait_for(asyncio.gather(writes(), reads_outside()), 20)
    finally:
        faulthandler.cancel_dump_traceback_later()
        await store.db.set_trace_callback(None)
        await store.close()
    assert any(s.startswith("INSERT INTO state") for s in seen)
