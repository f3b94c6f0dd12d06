"""The embedded store: one SQLite file through aiosqlite, WAL mode, versioned migrations.

Every write happens inside `transaction()`, which serialises writers in this process (an
asyncio lock) and across processes (`BEGIN IMMEDIATE`), so a check-then-write in one
transaction cannot interleave with another.

Long reads (reports, listings, the health check's counts) go through `read_one`/`read_all`, on
a read-only connection of their own: in WAL mode a reader sees the last committed state and
neither waits for the writer nor holds it up, so a report never stalls intake or the worker.
Reads that must see the caller's own uncommitted writes stay on the transaction (`tx`).

Webhook intake writes through a connection of its own too, the intake writer
(`services.store.writer`: group commit, each webhook synced to disk before its answer), so
a webhook's answer never waits behind the worker's transactions; SQLite's write lock
(`BEGIN IMMEDIATE`) serialises it with this one.
It starts with `open` and is closed first by `close`, with what it holds committed.

Trips. A transaction (`Tx`, `services.store.sqlite_tx`) runs its statements on the event
loop's own thread whenever the connection's thread has nothing under way, and only what
must wait (a write lock held elsewhere, a checkpoint, a durable commit's sync) in a thread;
that module says why and how.

Webhooks first. Before a store transaction takes the write lock, it waits for the webhooks the
intake writer holds (handed over, not yet answered) to commit, at most `INTAKE_FIRST`, so a
webhook's answer does not wait behind a worker transaction that began just after it.

Durability. In WAL mode every commit survives the process being killed. Surviving an OS crash
or a power cut takes a sync of the log to disk, which costs a few milliseconds a commit, so it
is paid where it matters and nowhere else (`synchronous` NORMAL, and for those commits a sync
of the log, `sync_log`, before their transaction returns: as FULL would at their commit, but
made after the store's lock is let go, so the next transaction does not wait for the disk,
and one sync covers every commit before it):
- what came from outside and cannot be asked for again: every webhook before its 200 (the
  intake writer always syncs) and a person's decision (`transaction(durable=True)`);
- what precedes money leaving: the commit that marks a planned refund as sent, just before the
  Stripe call (it carries the plan and its idempotency key to disk, and every commit before it,
  since the log is written in order).
Everything else the bot writes it can work out again from those after an OS crash: an event
whose outcome was lost is applied again (every handler is idempotent), a refund whose answer
was lost is asked again with its key. What an OS crash can repeat is a chat post whose "sent"
mark was lost.

Two engines. This module is the SQLite store, the embedded default; `services.store.postgres`
is the same interface on PostgreSQL, for more than one instance. `open_store(target)` picks
one from `DATABASE_URL` (`sqlite:///path` or a path: this store; `postgresql://...`: that
one). Callers write one SQL for both (`?` placeholders, `ON CONFLICT`, `RETURNING id`, times
compared as stored ISO-8601 text) and catch `services.store.errors.IntegrityError`; the rare
place that must know asks `store.dialect`. `tx.lock(name)` is a per-key exclusive section:
here a no-op, since SQLite's write lock already covers the whole transaction.

Migrations: one history in `services/store/migrations`, `NNN_name.sql` for both engines or,
where they differ, `NNN_name.sqlite.sql` beside `NNN_name.postgresql.sql` (`migrations`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from contextvars import ContextVar
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from services.store.errors import IntegrityError
from services.store.sqlite_lock import sync_log
from services.store.sqlite_tx import BUSY_MS, Tx, count_thread_work
from services.store.writer import IntakeWriter, StoreUnavailable

Row = aiosqlite.Row


SYNC_NORMAL, SYNC_FULL = 1, 2   # SQLite's `synchronous` levels (see Durability above)


def utcnow() -> datetime:
    return datetime.now(UTC)


def now_iso() -> str:
    moment = datetime.now(UTC)   # `isoformat()` writes microseconds when there are some,
    if moment.microsecond:       # without parsing a keyword (a third of the call)
        return moment.isoformat()
    return moment.isoformat(timespec="microseconds")


def iso_utc(moment: datetime) -> str:
    """A moment as the store writes times (UTC, ISO 8601, microseconds), for comparing with
    stored times."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def clock_utc(stored: str) -> str:
    """The time of day of a stored time as "HH:MM UTC" (the store writes times in UTC)."""
    return f"{stored[11:16]} UTC"


def dumps(value: Any) -> str:
    """Canonical JSON: the audit chain hashes this text, so it must be deterministic."""
    return _CANONICAL.encode(value)


# what `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# default=str)` builds on every call, built once (the same text)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              default=str)


_ACTIVE: ContextVar[Tx | None] = ContextVar("store_transaction", default=None)

CHECKPOINT_EVERY = 100   # transactions between the WAL checkpoints the store's thread makes
INTAKE_FIRST = 0.002   # seconds a transaction waits at most for the webhooks being stored


class _IntakeFirst(IntakeWriter):
    """The intake writer, counting the units it holds (handed over, not yet answered), so that
    a store transaction about to take the write lock lets them commit first
    (`Store.transaction`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def run(self, work: Any) -> Any:
        self.in_flight += 1
        self.idle.clear()
        try:
            return await super().run(work)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()


class Store:
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path.startswith(("postgresql://", "postgres://")):
            # as a file name it would be a folder "postgresql:" holding an empty SQLite store
            raise ValueError("a PostgreSQL URL is not a SQLite file: open it with open_store")
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._writer: IntakeWriter | None = None
        self._lock = asyncio.Lock()
        self._commits = 0   # transactions since the last WAL checkpoint

    @property
    def db(self) -> aiosqlite.Connection:
        """The store's connection; inside one of its transactions, that transaction (`Tx`)."""
        if self._db is None:
            raise RuntimeError("store is not open")
        tx = _ACTIVE.get()
        if tx is not None and tx.open and tx.raw is self._db:
            return tx  # type: ignore[return-value]   # the connection's methods, in its trips
        return self._db

    @property
    def writer(self) -> IntakeWriter | None:
        """The intake writer (`services.store.writer`); None for an in-memory store, whose
        one connection is the store's own."""
        if self._db is None:
            raise StoreUnavailable("store is not open")
        return self._writer

    async def open(self) -> Store:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # its transactions' statements also run on the event loop's thread (`Tx`)
        self._db = await aiosqlite.connect(self.path, isolation_level=None,
                                           check_same_thread=False)
        count_thread_work(self._db)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute(f"PRAGMA synchronous={SYNC_NORMAL}")
        await self._db.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        # its checkpoints are made in its thread, every `CHECKPOINT_EVERY` transactions
        await self._db.execute("PRAGMA wal_autocheckpoint=0")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._migrate()
        if self.path != ":memory:":
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            self._reader.row_factory = aiosqlite.Row
            await self._reader.execute("PRAGMA busy_timeout=5000")
            await self._reader.execute("PRAGMA query_only=ON")
            self._writer = await _IntakeFirst(self.path, synchronous=SYNC_FULL).start()
        return self

    async def close(self) -> None:
        if self._writer is not None:   # first: what it holds is committed before the rest
            await self._writer.close()
            self._writer = None
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> Store:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self, *, durable: bool = False
                          ) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction. `durable`: its commit is synced to disk before this returns
        (a person's decision, the mark before a Stripe refund; see the module's docstring)."""
        committed = False
        async with self._lock:
            if self._db is None:
                raise RuntimeError("store is not open")
            await self._intake_first()
            self._commits += 1
            checkpoint = self._commits >= CHECKPOINT_EVERY
            if checkpoint:
                self._commits = 0
            tx = Tx(self._db, inline=True, checkpoint=checkpoint)
            token = _ACTIVE.set(tx)
            try:
                try:
                    yield tx  # type: ignore[misc]   # the connection's methods, inline
                except BaseException:
                    await tx._rollback()
                    raise
                else:
                    try:
                        await tx._commit()
                    except BaseException:
                        await tx._rollback()
                        raise
                    committed = True
            finally:
                tx.open = False
                with suppress(ValueError):   # ended in another context (closed late)
                    _ACTIVE.reset(token)
        if durable and committed and self._reader is not None:   # a file, with its log
            await asyncio.to_thread(sync_log, self.path)

    async def _intake_first(self) -> None:
        """Webhooks first: while the intake writer holds webhooks to store, wait until they
        are committed (at most `INTAKE_FIRST`) before taking SQLite's write lock, so their
        answers do not wait behind this transaction."""
        writer = self._writer
        if isinstance(writer, _IntakeFirst) and writer.in_flight:
            with suppress(TimeoutError):
                await asyncio.wait_for(writer.idle.wait(), INTAKE_FIRST)

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """The first row of a query on the store's connection (for queries of one row)."""
        return await one(self.db, sql, params)

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return await rows(self.db, sql, params)

    async def read_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """One row from the read-only connection (committed state only)."""
        return await one(self._reader or self.db, sql, params)

    async def read_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """Every row from the read-only connection (committed state only)."""
        return await rows(self._reader or self.db, sql, params)

    async def get_state(self, key: str) -> Any:
        row = await self.fetch_one("SELECT value FROM state WHERE key = ?", (key,))
        return json.loads(row["value"]) if row else None

    async def schema_version(self) -> int:
        row = await self.fetch_one("SELECT MAX(version) AS v FROM schema_migrations")
        return int(row["v"] or 0) if row else 0

    async def _migrate(self) -> None:
        db = self.db
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        current = await self.schema_version()
        for version, name, sql in migrations(self.dialect):
            if version <= current:
                continue
            async with self.transaction() as tx:
                for statement in _statements(sql):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, now_iso()),
                )


async def rows(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> list[Row]:
    """Every row of a query, in one trip to the connection's thread (a cursor used by hand
    takes three: execute, fetch, close). For a transaction's reads too (`rows(tx, ...)`)."""
    return list(await conn.execute_fetchall(sql, tuple(params)))


async def reads(conn: aiosqlite.Connection, queries: Iterable[tuple[str, Iterable[Any]]]
                ) -> list[list[Row]]:
    """Every row of each of several queries, in order, in one trip to the connection's thread
    (`rows` takes one a query); on a transaction, inside it, after what it has deferred."""
    wanted = [(sql, tuple(params)) for sql, params in queries]

    def run(c: sqlite3.Connection) -> list[list[Row]]:
        return [c.execute(sql, params).fetchall() for sql, params in wanted]

    if isinstance(conn, Tx):
        return await conn._trip(run)
    if not isinstance(conn, aiosqlite.Connection):   # the PostgreSQL store's
        return list(await conn.reads(wanted))
    raw = conn

    def on_raw() -> list[list[Row]]:
        return run(raw._conn)

    return await raw._execute(on_raw)


async def one(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> Row | None:
    """The first row of a query of (at most) one row, in one trip: see `rows`."""
    found = await conn.execute_fetchall(sql, tuple(params))
    return next(iter(found), None)


async def write(tx: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> None:
    """A write inside the caller's transaction whose answer is not read: in a store
    transaction (`Tx.later`) it goes with the transaction's next trip (no trip of its own);
    on a bare connection, now."""
    later = getattr(tx, "later", None)   # a store transaction, on either engine
    if later is not None:
        later(sql, params)
    else:
        await tx.execute(sql, tuple(params))


async def set_state(tx: aiosqlite.Connection, key: str, value: Any) -> None:
    await tx.execute(
        "INSERT INTO state (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, dumps(value), now_iso()),
    )


DIALECTS = ("sqlite", "postgresql")


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """The migrations for `dialect`, in version order, as (version, name, SQL): each version's
    `NNN_name.<dialect>.sql` when it has one, else its `NNN_name.sql` (for both engines). The
    name recorded is the one without the dialect, the same on both."""
    folder = resources.files("services.store") / "migrations"
    chosen: dict[int, tuple[int, str, str]] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        stem = entry.name[:-len(".sql")]
        base, _, suffix = stem.rpartition(".")
        if base and suffix in DIALECTS:
            if suffix != dialect:
                continue
            name, specific = f"{base}.sql", True
        else:
            name, specific = entry.name, False
        version = int(name.split("_", 1)[0])
        if version in chosen and not specific:
            continue   # the dialect's own file wins over a shared one of the same version
        chosen[version] = (version, name, entry.read_text(encoding="utf-8"))
    for version, name, _ in chosen.values():
        others = [d for d in DIALECTS if d != dialect]
        for other in others:
            if (folder / f"{name[:-4]}.{other}.sql").is_file() and not (
                    folder / f"{name[:-4]}.{dialect}.sql").is_file():
                raise RuntimeError(f"migration {version} has a {other} file and no {dialect} one")
    return sorted(chosen.values())


def _migrations() -> list[tuple[int, str, str]]:
    """The SQLite store's migrations (as before there were two engines)."""
    return migrations("sqlite")


def store_target(url: str | None, path: str | Path | None = None) -> str:
    """Where the store is, from `DATABASE_URL` (else the SQLite file at `path`)."""
    if url:
        return url
    return f"sqlite:///{path}"


def open_store(target: str | Path) -> Any:
    """The store at `target`, not opened yet: `postgresql://...` (or `postgres://...`) on
    PostgreSQL, `sqlite:///path` or a bare path on SQLite."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        from services.store.postgres import PgStore  # asyncpg only when it is used
        return PgStore(text)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    elif text.startswith("sqlite://"):
        text = text[len("sqlite://"):] or ":memory:"
    return Store(text)


__all__ = ["IntegrityError", "Row", "Store", "Tx", "open_store", "store_target"]


def _statements(sql: str) -> list[str]:
    """Split a migration into statements; triggers keep their inner `;` (BEGIN ... END;)."""
    statements: list[str] = []
    buffer: list[str] = []
    for line in sql.splitlines():
        stripped = line.split("--", 1)[0].rstrip()
        if not stripped:
            continue
        buffer.append(stripped)
        text = "\n".join(buffer)
        if stripped.endswith(";") and (
            "CREATE TRIGGER" not in text.upper() or text.upper().rstrip(";").endswith("END")
        ):
            statements.append(text)
            buffer = []
    if buffer:
        statements.append("\n".join(buffer))
    return statements
