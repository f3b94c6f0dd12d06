"""The audit trail: append-only rows chained by SHA-256, so any edit shows.

Each row's hash covers its own content and the previous row's hash. Rows are written in the
same transaction as the state change they describe: `append` inside a store transaction (with
its next trip to the connection's thread, the chain's end read once per transaction), `Chain`
inside the intake writer's batches (the chain's end read once per batch). Both hold the
store's write lock (SQLite's `BEGIN IMMEDIATE`; on PostgreSQL the advisory lock every write
transaction takes, `services.store.postgres`), so the chain stays linear whatever the number
of processes. Triggers refuse UPDATE and DELETE on both engines (and TRUNCATE on PostgreSQL);
`verify` catches whatever goes around them (an edited file, a superuser). A row written
while a correlation is bound (`services.correlation`: a webhook's event, a Slack request)
carries its id in the detail as `correlation_id`, inside what the hash covers.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

import aiosqlite

from services import correlation
from services.store.db import Store, Tx, dumps, now_iso, one
from services.store.writer import Batch

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str
    case_id: int | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    bad_row: int | None = None
    problem: str = ""


def row_hash(prev_hash: str, at: str, actor: str, action: str, case_id: int | None,
             detail_json: str) -> str:
    """SHA-256 of the canonical JSON list `[prev_hash, at, actor, action, case_id,
    detail_json]` (`dumps`'s text), written directly for texts and a plain integer or null:
    each text through the string encoder the canonical encoder uses, so the bytes are the
    same; anything else through `dumps` itself."""
    if case_id is None or type(case_id) is int:
        material = (f"[{_text(prev_hash)},{_text(at)},{_text(actor)},{_text(action)},"
                    f"{'null' if case_id is None else int.__repr__(case_id)},"
                    f"{_text(detail_json)}]")
    else:
        material = dumps([prev_hash, at, actor, action, case_id, detail_json])
    return hashlib.sha256(material.encode()).hexdigest()


def _text(value: str) -> str:
    return encode_basestring(value) if type(value) is str else dumps(value)


async def append(
    tx: aiosqlite.Connection,
    *,
    actor: str,
    action: str,
    case_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> int | None:
    """Append one row inside the caller's transaction (which holds the write lock).

    In a store transaction (`Tx`) the row is written with the transaction's next trip to the
    connection's thread (its next statement or its commit), linked to the chain's end read
    there once per transaction (`Chain`): no trip of its own, and None for its id. On a bare
    connection it is written now, and its id returned."""
    detail_json = dumps(correlation.stamp(detail) or {})  # the correlation id, if any
    if isinstance(tx, Tx):
        tx.defer(lambda conn, memo: Chain.in_memo(conn, memo).append_json(
            actor=actor, action=action, case_id=case_id, detail_json=detail_json))
        return None
    later = getattr(tx, "later", None)
    if later is not None:   # a PostgreSQL store transaction (which holds the store's lock)
        prev = tx.memo.get(Chain)
        if prev is None:
            last = await one(tx, _LAST)
            prev = last[0] if last else GENESIS
        at = now_iso()
        digest = row_hash(prev, at, actor, action, case_id, detail_json)
        later(_INSERT, (at, actor, action, case_id, detail_json, prev, digest))
        tx.memo[Chain] = digest
        return None
    last = await one(tx, _LAST)
    prev = last[0] if last else GENESIS
    at = now_iso()
    digest = row_hash(prev, at, actor, action, case_id, detail_json)
    row = await one(tx, _INSERT + " RETURNING id",
                    (at, actor, action, case_id, detail_json, prev, digest))
    return int(row[0]) if row else 0


_LAST = "SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1"
_INSERT = ("INSERT INTO audit_log (at, actor, action, case_id, detail, prev_hash, hash) "
           "VALUES (?, ?, ?, ?, ?, ?, ?)")


class Chain:
    """The chain's end inside an intake writer's batch (`services.store.writer`): read once a
    transaction, on the first row appended; each row written exactly as `append` writes it,
    linked to the one before, without reading the last hash again."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        last = conn.execute(_LAST).fetchone()
        self.last_hash: str = last[0] if last else GENESIS

    @classmethod
    def of(cls, batch: Batch) -> Chain:
        """The chain of `batch`'s transaction (the batch holds the write lock)."""
        chain = batch.memo.get(cls)
        if chain is None:
            chain = batch.memo[cls] = cls(batch.conn)
        return chain

    @classmethod
    def in_memo(cls, conn: sqlite3.Connection, memo: dict[Any, Any]) -> Chain:
        """The chain of a store transaction (`Tx.memo`, in the connection's thread)."""
        chain = memo.get(cls)
        if chain is None:
            chain = memo[cls] = cls(conn)
        return chain

    def append(self, *, actor: str, action: str, case_id: int | None = None,
               detail: dict[str, Any] | None = None) -> int:
        return self.append_json(actor=actor, action=action, case_id=case_id,
                                detail_json=dumps(correlation.stamp(detail) or {}))

    def append_json(self, *, actor: str, action: str, case_id: int | None,
                    detail_json: str, at: str | None = None) -> int:
        """The row, with its time `at` when the caller has the moment's text already."""
        prev = self.last_hash
        if at is None:
            at = now_iso()
        digest = row_hash(prev, at, actor, action, case_id, detail_json)
        # a SQLite connection: the new row's id is the cursor's (RETURNING would cost SQLite
        # a result table and this a fetch, a third of the insert's time)
        written = self._conn.execute(_INSERT, (at, actor, action, case_id, detail_json, prev,
                                               digest))
        self.last_hash = digest
        return int(written.lastrowid or 0)


class NativeChain:
    """`Chain` for a batch whose statements are awaited on the event loop (the PostgreSQL
    intake writer's native units, `services.store.pg_writer.NativeBatch`): the chain's end read
    once a transaction, each row written exactly as `append` writes it."""

    def __init__(self, batch: Any, last_hash: str) -> None:
        self._batch = batch
        self.last_hash = last_hash

    @classmethod
    async def of(cls, batch: Any) -> NativeChain:
        """The chain of `batch`'s transaction (the batch holds the write lock)."""
        chain = batch.memo.get(cls)
        if chain is None:
            last = await batch.fetch(_LAST, ())
            chain = batch.memo[cls] = cls(batch, last[0][0] if last else GENESIS)
        return chain

    async def append(self, *, actor: str, action: str, case_id: int | None = None,
                     detail: dict[str, Any] | None = None) -> int:
        detail_json = dumps(correlation.stamp(detail) or {})
        prev = self.last_hash
        at = now_iso()
        digest = row_hash(prev, at, actor, action, case_id, detail_json)
        written = await self._batch.fetch(
            _INSERT + " RETURNING id", (at, actor, action, case_id, detail_json, prev, digest))
        self.last_hash = digest
        return int(written[0][0])


async def record(store: Store, **entry: Any) -> int:
    """Append one row in a transaction of its own (for events with no state change)."""
    async with store.transaction() as tx:
        return await append(tx, **entry)


async def verify(store: Store) -> VerifyResult:
    prev = GENESIS
    count = 0
    async with store.db.execute(
        "SELECT id, at, actor, action, case_id, detail, prev_hash, hash FROM audit_log ORDER BY id"
    ) as cursor:
        async for row in cursor:
            count += 1
            if row["prev_hash"] != prev:
                return VerifyResult(False, count, row["id"], "previous-hash link broken "
                                    "(a row before it was removed or reordered)")
            expected = row_hash(prev, row["at"], row["actor"], row["action"], row["case_id"],
                                row["detail"])
            if expected != row["hash"]:
                return VerifyResult(False, count, row["id"], "content does not match its hash")
            prev = row["hash"]
    return VerifyResult(True, count)


async def history(store: Store, case_id: int) -> list[AuditEntry]:
    rows = await store.fetch_all(
        "SELECT id, at, actor, action, case_id, detail FROM audit_log WHERE case_id = ? "
        "ORDER BY id", (case_id,)
    )
    return [AuditEntry(r["id"], r["at"], r["actor"], r["action"], r["case_id"],
                       json.loads(r["detail"])) for r in rows]
