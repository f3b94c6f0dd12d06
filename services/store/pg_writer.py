"""The PostgreSQL store's intake writer (`PgIntakeWriter`): webhooks written through a
connection of their own, in groups, each answered once its transaction is committed and the
WAL flushed. The SQLite store's counterpart is `services.store.writer`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import asyncpg

from services.store.errors import StoreUnavailable
from services.store.postgres import STORE_KEY, row_count, run_statement, shielded, translate

MAX_BATCH = 256


class _SyncCursor:
    """A cursor as `sqlite3` gives it (`fetchone`, `fetchall`, `rowcount`), for a unit."""

    lastrowid = None

    def __init__(self, rows: list[asyncpg.Record], status: str | None) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = row_count(status)

    def fetchone(self) -> asyncpg.Record | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[asyncpg.Record]:
        rest, self._next = self._rows[self._next:], len(self._rows)
        return rest


class _SyncBridge:
    """The intake writer's connection as a unit of work sees it: `execute(sql, params)`
    answering at once, as a `sqlite3` connection does. A unit runs in a worker thread; each
    statement is run on the event loop's asyncpg connection and waited for there."""

    def __init__(self, conn: asyncpg.Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._conn = conn
        self._loop = loop

    def execute(self, sql: str, parameters: Iterable[Any] = ()) -> _SyncCursor:
        future = asyncio.run_coroutine_threadsafe(
            run_statement(self._conn, sql, tuple(parameters)), self._loop)
        return _SyncCursor(*future.result())


class PgIntakeWriter:
    """Webhook intake on PostgreSQL: a connection of its own, group commit. The units handed to
    `run` in one turn of the event loop (and those that arrive while a batch is written) are
    written in one transaction, which takes the store's advisory lock like every write (so the
    event rows and their `webhook.received` audit rows extend the same linear chain), and each
    caller is answered only after COMMIT returned, that is after the WAL was flushed
    (`synchronous_commit=on`). The units are those of the SQLite writer
    (`services.store.writer`): plain functions of a `Batch` whose `conn.execute` answers at
    once; they run in a worker thread, their statements on this writer's connection. A unit
    that raises fails alone (the batch is rolled back and its others written again, each
    alone); a batch that cannot be written fails its units with `StoreUnavailable`.

    Native units (`run_native`): coroutine functions of a `NativeBatch`, whose `fetch` awaits
    each statement on this writer's connection in the event loop, with no thread hop (the
    webhook's own unit, `services.intake.events`, is one). A batch holds units of one kind
    (the audit chain's end each kind keeps for its transaction stays true)."""

    native = True   # `run_native` is offered

    def __init__(self, url: str, *, max_batch: int = MAX_BATCH) -> None:
        self.url = url
        self.max_batch = max_batch
        self.batches = 0
        self.lock_waits = 0
        self.lock_wait_seconds = 0.0
        self.lock_wait_longest = 0.0
        self._conn: asyncpg.Connection | None = None
        self._waiting: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = True

    async def start(self) -> PgIntakeWriter:
        self._conn = await asyncpg.connect(self.url)
        self._closed = False
        self._task = asyncio.create_task(self._serve(), name="pg-intake-writer")
        return self

    async def run(self, work: Callable[[Any], Any]) -> Any:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        self._wake.set()
        return await future

    async def run_native(self, work: Callable[[NativeBatch], Awaitable[Any]]) -> Any:
        """Run the coroutine function `work` in the next batch, on the event loop; its result
        once the batch is committed."""
        return await self.run(_Native(work))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _serve(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(0)   # what else this turn of the loop hands over comes too
            self._wake.clear()
            while self._waiting:   # a batch is of one kind: native units or threaded ones
                kind, n = isinstance(self._waiting[0][0], _Native), 1
                while (n < min(len(self._waiting), self.max_batch)
                       and isinstance(self._waiting[n][0], _Native) == kind):
                    n += 1
                batch, self._waiting = self._waiting[:n], self._waiting[n:]
                await self._write(batch)
            if self._closed:
                return

    async def _write(self, batch: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]]
                     ) -> None:
        try:
            results = await self._transaction([work for work, _ in batch])
        except _UnitFailed as failed:
            if len(batch) > 1:
                for one in batch:
                    await self._write([one])
                return
            cause = failed.__cause__ or failed
            if isinstance(cause, (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
                cause = StoreUnavailable(f"{type(cause).__name__}: {cause}")
            _settle(batch[0][1], error=cause)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            for _, future in batch:
                _settle(future, error=StoreUnavailable(f"{type(exc).__name__}: {exc}"))
        else:
            self.batches += 1
            for (_, future), result in zip(batch, results, strict=True):
                _settle(future, result=result)

    async def _transaction(self, units: list[Callable[[Any], Any]]) -> list[Any]:
        from services.store.writer import Batch
        conn = self._conn
        if conn is None:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        began = loop.time()
        await conn.execute(f"BEGIN ISOLATION LEVEL READ COMMITTED; "
                           f"SELECT pg_advisory_xact_lock({STORE_KEY})")
        waited = loop.time() - began
        self.lock_wait_seconds += waited
        self.lock_wait_longest = max(self.lock_wait_longest, waited)
        try:
            if isinstance(units[0], _Native):   # on the loop, each statement awaited
                native, results = NativeBatch(conn), []
                for unit in units:
                    try:
                        results.append(await unit.work(native))  # type: ignore[attr-defined]
                    except Exception as exc:
                        raise _UnitFailed() from exc
            else:
                context = Batch(_SyncBridge(conn, loop))  # type: ignore[arg-type]

                def run_all() -> list[Any]:
                    results = []
                    for work in units:
                        try:
                            results.append(work(context))
                        except Exception as exc:
                            raise _UnitFailed() from exc
                    return results

                results = await asyncio.to_thread(run_all)
            await conn.execute("COMMIT")
        except BaseException:
            if not conn.is_closed() and conn.is_in_transaction():
                await shielded(conn.execute("ROLLBACK"))
            raise
        return results


class NativeBatch:
    """What a native unit of the intake writer sees: `fetch` (a statement's rows, awaited on
    the writer's connection inside the batch's transaction, `?` placeholders as everywhere)
    and `memo`, kept for the length of that one transaction (the audit chain's end lives
    there)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.memo: dict[Any, Any] = {}

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        return list(await self._conn.fetch(translate(sql), *params))


class _Native:
    """A native unit queued among the threaded ones."""

    __slots__ = ("work",)

    def __init__(self, work: Callable[[NativeBatch], Awaitable[Any]]) -> None:
        self.work = work


class _UnitFailed(Exception):
    """A unit of work raised (as opposed to BEGIN or COMMIT failing)."""


def _settle(future: asyncio.Future[Any], *, result: Any = None,
            error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
