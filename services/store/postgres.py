"""The shared store: PostgreSQL through asyncpg, behind the same interface as the SQLite store
(`services.store.db.Store`), for more than one bot instance on one database.

The callers' SQL is the same on both engines: `?` placeholders (and SQLite's `?NNN`) are
translated to `$n` once per statement text (`translate`, cached), rows are asyncpg records
(indexable by name and by position, as `sqlite3.Row`), a cursor answers `fetchone`, `fetchall`
and `rowcount`, a unique constraint refused raises the store's `IntegrityError` and an integer
beyond 64 bits `OverflowError` (as sqlite3 raises them).

One writer at a time. Every check-then-write in the code relies on SQLite's rule that a write
transaction runs alone (`BEGIN IMMEDIATE`); every state change also appends to the audit chain,
which must stay linear. So a write transaction here takes, right after `BEGIN`, a
transaction-scoped advisory lock on the store's key (`pg_advisory_xact_lock(STORE_KEY)`): the
honest equivalent of `BEGIN IMMEDIATE` across every process on the database, released by
COMMIT or ROLLBACK (a killed process's session ends and its lock with it). Transactions run at
READ COMMITTED, so each statement after the lock sees everything committed before it was taken
(a REPEATABLE READ snapshot would be taken before the lock was granted). `tx.lock(name)` is a
per-key exclusive section (`pg_advisory_xact_lock(hashtext(name))`) for the places that want
one named even though the store's lock already covers them (the over-refund guard).

Connections: one for write transactions (in this process they are serialised by an asyncio
lock as on SQLite), a pool for reads outside a transaction (`read_one`, `read_all`, the
statements run on `store.db` with no transaction open: each its own autocommit statement), and
one for the intake writer (`services.store.pg_writer`).

Durability, as on SQLite. There a commit is synced to disk only for a webhook, a person's
decision and the mark before a Stripe call (`durable=True`); the other transactions are
written to the WAL at once and synced later (`synchronous=NORMAL`): a bot process killed loses
none of them, a power cut may lose the last of them, never tear one. Here the same: a durable
transaction's COMMIT waits for the WAL flush (the server's `synchronous_commit`, on by
default); the others run with `SET LOCAL synchronous_commit TO OFF` (sent with their BEGIN, no
trip of its own): committed and visible to every session at once, flushed by the WAL writer
within a fraction of a second, lost only if the server itself crashes first. Waiting for a
flush per commit behind the store's one-writer lock had bound every instance's worker to the
disk's flush rate (about 10 cases a second). The intake writer always waits: a webhook's 200
means stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextvars import ContextVar
from importlib import resources
from typing import TYPE_CHECKING, Any

import asyncpg
from aiosqlite.context import contextmanager as _awaitable_or_context

from services.store.errors import IntegrityError, StoreUnavailable

if TYPE_CHECKING:
    from services.store.pg_writer import PgIntakeWriter

STORE_KEY = 0x7265_6675_6E64   # the advisory lock every write transaction takes ("refund")
MIGRATE_KEY = STORE_KEY + 1    # held while one instance migrates the schema
POOL_SIZE = 4

_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|\?(\d*)")


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """`?` and `?NNN` placeholders as PostgreSQL's `$n` (quoted text and comments untouched)."""
    counter = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal counter
        text = match.group(0)
        if not text.startswith("?"):
            return text
        if match.group(1):
            counter = max(counter, int(match.group(1)))
            return f"${match.group(1)}"
        counter += 1
        return f"${counter}"

    return _PLACEHOLDER.sub(replace, sql)


def row_count(status: str | None) -> int:
    """The row count of a command tag ("INSERT 0 1", "UPDATE 3", "SELECT 2")."""
    if not status:
        return -1
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


class PgCursor:
    """What `execute` answers: the statement's rows and its row count, already fetched."""

    lastrowid = None   # PostgreSQL has none: write `RETURNING id` and read the row

    def __init__(self, rows: Sequence[asyncpg.Record], status: str | None) -> None:
        self._rows = list(rows)
        self._next = 0
        self.rowcount = row_count(status)

    async def fetchone(self) -> asyncpg.Record | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def fetchall(self) -> list[asyncpg.Record]:
        rest, self._next = self._rows[self._next:], len(self._rows)
        return rest

    def __aiter__(self) -> AsyncIterator[asyncpg.Record]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[asyncpg.Record]:
        while (row := await self.fetchone()) is not None:
            yield row

    async def close(self) -> None:
        self._rows = []

    async def __aenter__(self) -> PgCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def run_statement(conn: asyncpg.Connection, sql: str, params: Iterable[Any]
               ) -> tuple[list[asyncpg.Record], str | None]:
    """One statement on `conn` (prepared once per text, in asyncpg's statement cache)."""
    try:
        rows, status, _ = await conn._execute(translate(sql), tuple(params), 0, None,
                                              return_status=True)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(str(exc)) from exc
    except asyncpg.DataError as exc:
        if isinstance(exc.__cause__, OverflowError):   # as sqlite3 raises it: an integer
            raise OverflowError(str(exc)) from exc      # beyond 64 bits never reaches a row
        raise
    return rows, status.decode() if isinstance(status, bytes) else status


class _Statements:
    """The statement methods both a transaction and the bare store share (aiosqlite's names)."""

    dialect = "postgresql"

    async def _statement(self, sql: str, params: Iterable[Any]
                         ) -> tuple[list[asyncpg.Record], str | None]:
        raise NotImplementedError

    @_awaitable_or_context
    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> PgCursor:
        return PgCursor(*await self._statement(sql, parameters or ()))

    @_awaitable_or_context
    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None
                               ) -> list[asyncpg.Record]:
        return (await self._statement(sql, parameters or ()))[0]

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> PgCursor:
        count = 0
        for params in parameters:
            count += max(PgCursor(*await self._statement(sql, params)).rowcount, 0)
        cursor = PgCursor([], None)
        cursor.rowcount = count
        return cursor

    async def reads(self, queries: Sequence[tuple[str, tuple[Any, ...]]]
                    ) -> list[list[asyncpg.Record]]:
        return [(await self._statement(sql, params))[0] for sql, params in queries]


class PgTx(_Statements):
    """One write transaction on the store's writer connection: `BEGIN` and the store's advisory
    lock go with its first statement, writes whose answer is not read (`later`) with its next
    statement or its commit, in order. Used only through `PgStore.transaction`."""

    def __init__(self, conn: asyncpg.Connection, *, durable: bool = True) -> None:
        self.raw = conn
        self.open = True
        self.memo: dict[Any, Any] = {}
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._begun = False
        self._durable = durable

    async def _begin(self) -> None:
        if not self._begun:
            self._begun = True
            relaxed = "" if self._durable else "SET LOCAL synchronous_commit TO OFF; "
            await self.raw.execute(f"BEGIN ISOLATION LEVEL READ COMMITTED; {relaxed}"
                                   f"SELECT pg_advisory_xact_lock({STORE_KEY})")

    async def _flush(self) -> None:
        await self._begin()
        while self._pending:
            sql, params = self._pending.pop(0)
            await run_statement(self.raw, sql, params)

    async def _statement(self, sql: str, params: Iterable[Any]
                         ) -> tuple[list[asyncpg.Record], str | None]:
        await self._flush()
        return await run_statement(self.raw, sql, params)

    def later(self, sql: str, parameters: Iterable[Any] = ()) -> None:
        """A write whose answer nobody reads, sent before the transaction's next statement or
        its commit; failing, it fails that statement (or the commit) and the transaction."""
        self._pending.append((sql, tuple(parameters)))

    async def lock(self, name: str) -> None:
        """An exclusive section on `name` until this transaction ends, across processes."""
        await self._flush()
        await self.raw.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)

    async def _commit(self) -> None:
        if not self._begun and not self._pending:
            return
        await self._flush()
        try:
            await self.raw.execute("COMMIT")
        except asyncpg.IntegrityConstraintViolationError as exc:   # a deferred constraint
            raise IntegrityError(str(exc)) from exc

    async def _rollback(self) -> None:
        self._pending = []
        if self._begun and self.raw.is_in_transaction():
            await self.raw.execute("ROLLBACK")


class _Pooled(_Statements):
    """`store.db` with no transaction open: each statement on a pooled connection, on its own
    (autocommit), as statements on SQLite's connection outside a transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _statement(self, sql: str, params: Iterable[Any]
                         ) -> tuple[list[asyncpg.Record], str | None]:
        async with self._pool.acquire() as conn:
            return await run_statement(conn, sql, params)

    async def reads(self, queries: Sequence[tuple[str, tuple[Any, ...]]]
                    ) -> list[list[asyncpg.Record]]:
        async with self._pool.acquire() as conn:
            return [(await run_statement(conn, sql, params))[0] for sql, params in queries]


_ACTIVE: ContextVar[PgTx | None] = ContextVar("pg_store_transaction", default=None)


class PgStore:
    """The store on PostgreSQL; `url` is a `postgresql://` URL (asyncpg's DSN)."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = url   # what the SQLite store calls its location
        self._conn: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._writer: PgIntakeWriter | None = None
        self._lock = asyncio.Lock()

    @property
    def db(self) -> Any:
        """Inside one of the store's transactions, that transaction; else the pool."""
        if self._pool is None:
            raise RuntimeError("store is not open")
        tx = _ACTIVE.get()
        if tx is not None and tx.open and tx.raw is self._conn:
            return tx
        return _Pooled(self._pool)

    @property
    def writer(self) -> PgIntakeWriter | None:
        if self._conn is None:
            raise StoreUnavailable("store is not open")
        return self._writer

    async def open(self) -> PgStore:
        try:
            self._conn = await asyncpg.connect(self.url)
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=POOL_SIZE)
        except (OSError, asyncpg.PostgresError) as exc:
            await self.close()
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        await self._migrate()
        from services.store.pg_writer import PgIntakeWriter  # it uses this module's helpers
        self._writer = await PgIntakeWriter(self.url).start()
        return self

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> PgStore:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def transaction(self, *, durable: bool = False) -> AsyncIterator[PgTx]:
        """One write transaction, alone across every process (the module's docstring); its
        COMMIT waits for the WAL flush only when `durable` (the module's docstring)."""
        async with self._lock:
            if self._conn is None:
                raise RuntimeError("store is not open")
            tx = PgTx(self._conn, durable=durable)
            token = _ACTIVE.set(tx)
            try:
                try:
                    yield tx
                except BaseException:
                    await shielded(tx._rollback())
                    raise
                else:
                    try:
                        await tx._commit()
                    except BaseException:
                        await shielded(tx._rollback())
                        raise
            finally:
                tx.open = False
                with contextlib.suppress(ValueError):
                    _ACTIVE.reset(token)

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> asyncpg.Record | None:
        return next(iter(await self.db.execute_fetchall(sql, tuple(params))), None)

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[asyncpg.Record]:
        return list(await self.db.execute_fetchall(sql, tuple(params)))

    async def read_one(self, sql: str, params: Iterable[Any] = ()) -> asyncpg.Record | None:
        """One row from the pool (committed state only)."""
        return next(iter(await self.read_all(sql, params)), None)

    async def read_all(self, sql: str, params: Iterable[Any] = ()) -> list[asyncpg.Record]:
        """Every row from the pool (committed state only)."""
        if self._pool is None:
            raise RuntimeError("store is not open")
        return await _Pooled(self._pool).execute_fetchall(sql, tuple(params))

    async def get_state(self, key: str) -> Any:
        import json
        row = await self.fetch_one("SELECT value FROM state WHERE key = ?", (key,))
        return json.loads(row["value"]) if row else None

    async def schema_version(self) -> int:
        row = await self.fetch_one("SELECT MAX(version) AS v FROM schema_migrations")
        return int(row["v"] or 0) if row else 0

    async def _migrate(self) -> None:
        """Every migration not applied yet, each in a transaction of its own (PostgreSQL's DDL
        is transactional), under an advisory lock so two instances starting together do not
        both migrate."""
        from services.store.db import migrations, now_iso
        conn = self._conn
        assert conn is not None
        await conn.execute(f"SELECT pg_advisory_lock({MIGRATE_KEY})")
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at TEXT NOT NULL)")
            current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) "
                                          "FROM schema_migrations")
            for version, name, sql in migrations(self.dialect):
                if version <= current:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)   # the whole file: PL/pgSQL bodies keep their `;`
                    await conn.execute("INSERT INTO schema_migrations (version, name, "
                                       "applied_at) VALUES ($1, $2, $3)",
                                       version, name, now_iso())
        finally:
            await conn.execute(f"SELECT pg_advisory_unlock({MIGRATE_KEY})")


async def shielded(work: Any) -> None:
    """A rollback that a cancellation must not cut short (the connection would be left in a
    transaction holding the store's lock)."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def migration_files() -> list[str]:
    """The names of the migration files (for tests)."""
    folder = resources.files("services.store") / "migrations"
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
