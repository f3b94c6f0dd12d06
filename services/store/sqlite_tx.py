"""One write transaction on the SQLite store's connection (`Tx`), in as few trips as it can.

aiosqlite runs each statement in the connection's thread, one hand-off (and two event-loop
wake-ups) a statement, and a transaction holds the store's lock across all of them, each
wake-up waiting behind every other task's ready callbacks. So a transaction (`Tx`) runs its
statements on the event loop's own thread instead, whenever the connection's thread has nothing
under way (`count_thread_work`: the two never use the connection at once; each statement takes
microseconds): a transaction whose body awaits nothing but the store begins, runs and commits
within one turn of the loop, and the lock is held for its CPU only. What waits goes to a
thread, where waiting does not stall the loop: a `BEGIN IMMEDIATE` that finds SQLite's write
lock taken (by the intake writer or another process; tried on the loop with no busy wait first)
and every `CHECKPOINT_EVERY`th commit (`services.store.db`), which checkpoints the WAL
(automatic checkpoints are off on this connection, so none runs on the loop), in the
connection's thread; a durable commit's sync, in a thread of its own after the lock is let go
(Durability, in `services.store.db`). Work that needs no answer inside the body, the audit
chain's rows (`audit.append`) and writes whose answer is not read (`db.write`), is still
deferred to the transaction's next statement or its commit, in order; several reads can share
one call (`db.reads`). Inside a transaction, `Store.db` is the transaction, so a read made
through the store in its body is part of it (after its `BEGIN`, seeing its deferred rows).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager as _awaitable_or_context

from services.store.sqlite_lock import is_busy, rollback

Deferred = Callable[[sqlite3.Connection, dict[Any, Any]], Any]


class Tx:
    """One write transaction on the store's connection, its statements on the event loop's
    thread (`inline`; the module's docstring says why) and only what must wait in the
    connection's thread: `BEGIN IMMEDIATE` goes with the first statement, `COMMIT` with what
    is still deferred (`defer`); each statement's answer is awaited as with aiosqlite's own
    methods (`execute`, `execute_fetchall`, `executemany`; anything else is the connection's
    own, in its thread). Used only through `Store.transaction`, which holds the store's lock
    for it."""

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, *, inline: bool = False,
                 checkpoint: bool = False) -> None:
        self.raw = conn
        self._idle: Callable[[], bool] = getattr(conn, "thread_idle", lambda: True)
        self.open = True
        self.memo: dict[Any, Any] = {}   # the deferred work's own state
        self._inline = inline            # statements on the loop's thread
        self._checkpoint = checkpoint    # a WAL checkpoint after the commit, in the thread
        self._pending: list[Deferred] = []
        self._begin_sent = False
        self._threaded = False   # a trip of it went to the connection's thread

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def later(self, sql: str, parameters: Iterable[Any] = ()) -> None:
        """A write whose answer nobody reads (no row count, no id, no rows), sent with the
        transaction's next trip, in order with its other statements; failing, it fails that
        trip (a statement or the commit), and the transaction rolls back."""
        params = tuple(parameters)
        self._pending.append(lambda conn, memo: conn.execute(sql, params))

    async def lock(self, name: str) -> None:
        """An exclusive section on `name` until the transaction ends: on SQLite the write lock
        (`BEGIN IMMEDIATE`) already holds every other writer off, so nothing to take."""

    def defer(self, work: Deferred) -> None:
        """Run `work(sqlite3_connection, memo)` in the connection's thread inside this
        transaction, before its next statement or its commit (in the order deferred)."""
        self._pending.append(work)

    async def _trip(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        begin = not self._begin_sent
        pending, self._pending = self._pending, []
        self._begin_sent = True
        if self._inline and self._idle():
            conn = self.raw._conn
            if not begin or self._begin_now(conn):
                for deferred in pending:
                    deferred(conn, self.memo)
                return work(conn)
            # SQLite's write lock is taken (the intake writer is committing): wait for it in
            # the connection's thread, never on the event loop
        return await self._in_thread(begin, pending, work)

    async def _in_thread(self, begin: bool, pending: list[Deferred],
                         work: Callable[[sqlite3.Connection], Any]) -> Any:
        def run() -> Any:
            conn = self.raw._conn
            if begin:
                conn.execute("BEGIN IMMEDIATE")
            for deferred in pending:
                deferred(conn, self.memo)
            return work(conn)

        self._threaded = True
        return await self.raw._execute(run)

    @_awaitable_or_context
    async def execute(self, sql: str, parameters: Iterable[Any] | None = None
                      ) -> aiosqlite.Cursor:
        params = () if parameters is None else parameters
        return aiosqlite.Cursor(self.raw, await self._trip(lambda c: c.execute(sql, params)))

    @_awaitable_or_context
    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None
                               ) -> list[sqlite3.Row]:
        params = () if parameters is None else parameters
        return await self._trip(lambda c: c.execute(sql, params).fetchall())

    @_awaitable_or_context
    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]
                          ) -> aiosqlite.Cursor:
        return aiosqlite.Cursor(self.raw, await self._trip(
            lambda c: c.executemany(sql, parameters)))

    async def _commit(self) -> None:
        if not self._begin_sent and not self._pending:
            return   # nothing was asked of the store: nothing to begin or commit
        if not self._checkpoint:
            await self._trip(_commit_now)   # inline: no trip at all
            return
        pending, self._pending = self._pending, []
        begin, self._begin_sent = not self._begin_sent, True

        def run() -> None:   # in the connection's thread: the checkpoint waits for the disk
            conn = self.raw._conn
            if begin:
                conn.execute("BEGIN IMMEDIATE")
            for deferred in pending:
                deferred(conn, self.memo)
            conn.execute("COMMIT")   # failing, the caller rolls back (`_rollback`)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

        self._threaded = True
        await self.raw._execute(run)

    async def _rollback(self) -> None:
        self._pending = []
        if not self._begin_sent:
            return
        if self._inline and not self._threaded and self._idle():   # nothing in the thread
            self._rollback_now()
            return
        await self.raw._execute(self._rollback_now)   # after any trip still under way

    def _rollback_now(self) -> None:
        rollback(self.raw._conn)

    def _begin_now(self, conn: sqlite3.Connection) -> bool:
        """`BEGIN IMMEDIATE` on the event loop's thread if SQLite's write lock is free now;
        False (nothing begun) when another connection holds it, to wait for it in the
        connection's thread instead of on the loop."""
        conn.execute("PRAGMA busy_timeout=0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):   # "database is locked", in any of its extended codes
                raise
            return False
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        return True


def count_thread_work(conn: aiosqlite.Connection) -> None:
    """Count what is sent to the connection's thread and not yet answered, so that a
    transaction runs its statements on the loop's thread only while that thread has nothing
    under way (`thread_idle`): never the two threads on the connection at once. SQLite would
    serialise them, but a Python callback on the connection (a trace) would then wait for the
    interpreter, which the loop's thread holds while it waits for SQLite: a deadlock. Work is
    only ever sent from the loop's thread, so a count of zero read there means the thread is
    idle until the loop sends it more."""
    sent = conn._execute
    under_way = [0]

    async def counted(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        under_way[0] += 1
        try:
            return await sent(fn, *args, **kwargs)
        finally:
            under_way[0] -= 1

    conn._execute = counted   # type: ignore[method-assign]
    conn.thread_idle = lambda: under_way[0] == 0   # type: ignore[attr-defined]


def _commit_now(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")   # failing, the caller rolls back (`_rollback`)


BUSY_MS = 5000   # how long a statement waits for SQLite's write lock (`busy_timeout`)
