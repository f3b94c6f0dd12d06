"""Received webhook events and their table: stored once (de-duplicated by source and id)
before anyone answers 200, read back by the worker, marked processed with their outcome.
Storing goes through the store's intake writer (`services.store.writer`), never behind the
worker's transactions; everything after it through the store's own connection.

An event that could not be applied is never marked processed without a result: one that met
a Checkfront or Stripe outage is kept for a retry (`defer`: its attempts, last error and next
time stored; past the bound it is failed), any other error makes it a dead letter (`fail`).
Failed events stay until a person retries one (`claim_failed`); neither kind blocks the
events behind it. Each event row is in one of four states (`EventRow.state`):

    queued      stored, waiting for the worker (a restart queues it again)
    retrying    waiting for `next_at` (also while a retry has claimed it)
    failed      a dead letter, or an outage past the bound: shown, retried by hand
    processed   done, with its outcome

What an event *does* is `services.intake.routing`. What is stored is scrubbed of the
customer's contact details (`services.privacy`); a processed event's body is kept for the
retention period, then emptied (the row stays, so a redelivery is still recognised).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from json.encoder import encode_basestring
from typing import Any

import orjson

from services import correlation
from services.config import EventRetries
from services.errors import DomainError
from services.privacy import scrub
from services.store import audit, leases
from services.store.db import Row, Store, dumps, iso_utc, now_iso, one, utcnow
from services.store.writer import Batch, StoreUnavailable

CLAIM_FOR = timedelta(minutes=15)  # a retry in progress keeps others off the event this long
QUEUED, RETRYING, FAILED, PROCESSED = "queued", "retrying", "failed", "processed"
_WAITING = "processed_at IS NULL AND failed_at IS NULL"
_SUBJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


@dataclass(frozen=True)
class StoredEvent:
    row_id: int
    source: str
    event_id: str
    kind: str
    received_at: str
    payload: dict[str, Any]


class EventError(DomainError):
    """An event that cannot be retried as asked (unknown, processed, not failed)."""


@dataclass(frozen=True)
class EventRow:
    """Where an event stands, without its payload: for the health check, lists and cards."""

    row_id: int
    source: str
    event_id: str
    kind: str
    received_at: str
    subject: str | None        # the booking (Checkfront) or object (Stripe) it is about
    attempts: int
    last_error: str | None
    next_at: str | None
    retrying_since: str | None
    failed_at: str | None
    processed_at: str | None
    outcome: str | None

    @property
    def state(self) -> str:
        return _state(self.processed_at, self.failed_at, self.next_at)


def body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def checkfront_kind(payload: dict[str, Any]) -> str:
    if payload.get("type") == "transaction" or "transaction" in payload:
        return "transaction"
    if "booking" in payload:
        return "booking"
    return "unknown"


_INSERT = ("INSERT INTO webhook_events (source, event_id, kind, received_at, payload, "
           "claimed_by, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (source, event_id) DO NOTHING RETURNING id")
# the same on the SQLite writer's connection, whose cursor has the row's id and whether one
# was inserted (RETURNING costs SQLite a result table, a third of the insert's time)
_INSERT_ROW = _INSERT.removesuffix(" RETURNING id")


async def store_event(store: Store, *, source: str, event_id: str, kind: str,
                      payload: dict[str, Any], salt: str | None = None) -> StoredEvent | None:
    """Insert the event, scrubbed (with `salt`, the customer's email is kept as its salted
    hash), with its `webhook.received` audit row; None when an event with this id was already
    received. The event returned holds the payload as received, for the worker to process now:
    it is stored claimed by this instance (`services.store.leases`), so no other instance
    takes it while its lease is renewed.

    It goes through the store's intake writer (a connection of its own, group commit): when
    this returns, the event and its audit row are committed. StoreUnavailable when the store
    could not take it (closed, disk error, locked too long): not stored, to be sent again."""
    moment = utcnow()
    received = utc_text(moment)
    me = leases.this()
    params = (source, event_id, kind, received, payload_json(scrub(payload, salt)), me.id,
              utc_text(moment + me.lease))
    writer = store.writer
    if writer is not None and getattr(writer, "native", False):   # PostgreSQL's
        row_id = await writer.run_native(partial(_insert_event_native, params))
    elif writer is not None:
        row_id = await writer.run(partial(_insert_event, params))
    else:   # an in-memory store has one connection
        try:
            async with store.transaction() as tx:
                inserted = await one(tx, _INSERT, params)
                row_id = int(inserted[0]) if inserted is not None else None
                if row_id is not None:
                    await audit.append(tx, actor=source, action="webhook.received",
                                       detail={"event_id": event_id, "kind": kind,
                                               "row": row_id})
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if row_id is None:
        return None
    return StoredEvent(row_id, source, event_id, kind, received, payload)


def payload_json(value: dict[str, Any]) -> str:
    """The stored text of an event's payload: what `dumps` writes (keys sorted, no spaces,
    non-ASCII as is), through orjson. The two differ only where `dumps` would be needed: a
    value orjson cannot write (an integer past 64 bits, a key that is not text, a lone
    surrogate) and a float that is not finite (orjson writes it as null, `dumps` as NaN or
    Infinity); so a text with a null in it, or none at all, is written by `dumps`. Floats may
    be spelled otherwise (1e16 for 1e+16): the same numbers read back. Not for the audit
    chain, whose hashed text is `dumps`'s byte for byte."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return dumps(value)
    if b"null" in text:
        return dumps(value)
    return text.decode()


def _insert_event(params: tuple[str, ...], batch: Batch) -> int | None:
    """In the writer's batch: the event's row and its audit row; None for a duplicate (also
    of an event earlier in the same batch)."""
    inserted = batch.conn.execute(_INSERT_ROW, params)
    if inserted.rowcount != 1:   # the conflict's DO NOTHING: a duplicate
        return None
    row_id = int(inserted.lastrowid or 0)
    source, event_id, kind = params[0], params[1], params[2]
    if correlation.current() is None:   # as in the writer's thread: `dumps`'s text, written
        detail = received_detail(event_id, kind, row_id)
    else:
        detail = dumps(correlation.stamp({"event_id": event_id, "kind": kind, "row": row_id}))
    audit.Chain.of(batch).append_json(actor=source, action="webhook.received", case_id=None,
                                      detail_json=detail, at=params[3])   # when received
    return row_id


async def _insert_event_native(params: tuple[str, ...], batch: Any) -> int | None:
    """`_insert_event` for a writer whose statements are awaited on the event loop (the
    PostgreSQL intake writer: no thread hop a statement)."""
    inserted = await batch.fetch(_INSERT, params)
    if not inserted:
        return None
    row_id = int(inserted[0][0])
    source, event_id, kind = params[0], params[1], params[2]
    chain = await audit.NativeChain.of(batch)
    await chain.append(actor=source, action="webhook.received",
                       detail={"event_id": event_id, "kind": kind, "row": row_id})
    return row_id


def utc_text(moment: datetime) -> str:
    """`iso_utc(moment)`, cheaper for what `utcnow()` gives: a UTC moment with microseconds
    is written by `isoformat()` as `isoformat(timespec="microseconds")` writes it, without
    parsing the keyword (which costs more than the formatting)."""
    if moment.tzinfo is UTC and moment.microsecond:
        return moment.isoformat()
    return iso_utc(moment)


def received_detail(event_id: str, kind: str, row: int) -> str:
    """`dumps({"event_id": event_id, "kind": kind, "row": row})`, the detail of a
    `webhook.received` audit row, written directly: keys in sorted order, no spaces, each text
    through the same string encoder the canonical encoder uses (non-ASCII as is)."""
    return (f'{{"event_id":{encode_basestring(event_id)},"kind":{encode_basestring(kind)},'
            f'"row":{int(row)}}}')


async def purge_payloads(store: Store, keep: timedelta, now: datetime | None = None) -> int:
    """Empty the bodies of events processed and received more than `keep` ago; how many."""
    cutoff = ((now or utcnow()) - keep).isoformat(timespec="microseconds")
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "UPDATE webhook_events SET payload = '{}' WHERE processed_at IS NOT NULL "
            "AND received_at < ? AND payload != '{}'", (cutoff,))
        purged = cursor.rowcount
        if purged:
            await audit.append(tx, actor="retention", action="webhook.purged",
                               detail={"events": purged, "received_before": cutoff})
    return purged


async def unprocessed(store: Store) -> list[StoredEvent]:
    """Events queued for the worker (not those waiting for a retry, nor failed ones)."""
    rows = await store.fetch_all(
        f"SELECT * FROM webhook_events WHERE {_WAITING} AND next_at IS NULL ORDER BY id")
    return [_stored(r) for r in rows]


_QUEUED = f"{_WAITING} AND next_at IS NULL"


async def claim_queued(store: Store, now: datetime, *, me: leases.Instance | None = None,
                       mine_too: bool = False, limit: int = 1000) -> list[StoredEvent]:
    """Claim the queued events no live instance holds (never claimed, a lease passed, a
    holder known dead; with `mine_too`, also those this instance's id holds, as at start-up),
    oldest first, each leased to `me` (`services.store.leases.claim`)."""
    found = await leases.claim(store, "webhook_events", where=_QUEUED, now=now, me=me,
                               limit=limit, mine_too=mine_too)
    return [_stored(r) for r in found]


async def renew_queued(store: Store, now: datetime, me: leases.Instance | None = None) -> int:
    """Extend this instance's leases on the queued events it holds (its worker has them)."""
    return await leases.renew_rows(store, "webhook_events", where=_QUEUED, now=now, me=me)


async def release_queued(store: Store, me: leases.Instance | None = None) -> int:
    """Give back the queued events this instance holds and did not apply (on stopping)."""
    return await leases.release_rows(store, "webhook_events", where=_QUEUED, me=me)


async def get(store: Store, row_id: int) -> EventRow | None:
    row = await store.fetch_one("SELECT * FROM webhook_events WHERE id = ?", (row_id,))
    return None if row is None else _row(row)


async def processed_at(store: Store, row_id: int) -> str | None:
    row = await store.fetch_one("SELECT processed_at FROM webhook_events WHERE id = ?", (row_id,))
    return None if row is None else row["processed_at"]


async def state_of(store: Store, row_id: int) -> str | None:
    """The event's state (QUEUED, RETRYING, FAILED, PROCESSED); None for no such event."""
    row = await store.fetch_one(
        "SELECT processed_at, failed_at, next_at FROM webhook_events WHERE id = ?", (row_id,))
    return None if row is None else _state(row["processed_at"], row["failed_at"], row["next_at"])


async def mark_processed(store: Store, row_id: int, outcome: str) -> None:
    async with store.transaction() as tx:
        await tx.execute("UPDATE webhook_events SET processed_at = ?, outcome = ?, next_at = NULL, "
                         "failed_at = NULL WHERE id = ?", (now_iso(), outcome, row_id))


async def defer(store: Store, event: StoredEvent, error: str, now: datetime,
                retries: EventRetries) -> EventRow:
    """An outage met `event`: keep it for a retry with a growing wait, or, once it has failed
    for `retries.give_up_after`, mark it failed. The event as it now stands."""
    async with store.transaction() as tx:
        async with tx.execute("SELECT attempts, retrying_since FROM webhook_events WHERE id = ?",
                              (event.row_id,)) as cursor:
            found = await cursor.fetchone()
        attempts = int(found[0]) + 1 if found else 1
        since = datetime.fromisoformat(found[1]) if found and found[1] else now
        bound = since + retries.give_up_after
        detail: dict[str, Any] = {"event_id": event.event_id, "kind": event.kind,
                                  "row": event.row_id, "attempt": attempts, "error": error}
        if now >= bound:
            await tx.execute(
                "UPDATE webhook_events SET attempts = ?, last_error = ?, retrying_since = ?, "
                "next_at = NULL, failed_at = ? WHERE id = ?",
                (attempts, error, iso_utc(since), iso_utc(now), event.row_id))
            await audit.append(tx, actor="worker", action="webhook.gave_up", detail=detail)
        else:
            retry_at = iso_utc(min(now + retries.wait(attempts), bound))
            await tx.execute(
                "UPDATE webhook_events SET attempts = ?, last_error = ?, retrying_since = ?, "
                "next_at = ?, failed_at = NULL WHERE id = ?",
                (attempts, error, iso_utc(since), retry_at, event.row_id))
            await audit.append(tx, actor="worker", action="webhook.retry_scheduled",
                               detail={**detail, "retry_at": retry_at})
    row = await get(store, event.row_id)
    assert row is not None
    return row


async def fail(store: Store, event: StoredEvent, error: str, now: datetime) -> EventRow:
    """A dead letter: processing `event` raised an error no retry by itself would mend."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE webhook_events SET attempts = attempts + 1, last_error = ?, next_at = NULL, "
            "failed_at = ? WHERE id = ?", (error, iso_utc(now), event.row_id))
        await audit.append(tx, actor="worker", action="webhook.dead_letter", detail={
            "event_id": event.event_id, "kind": event.kind, "row": event.row_id,
            "error": error})
    row = await get(store, event.row_id)
    assert row is not None
    return row


async def claim_due(store: Store, now: datetime) -> list[StoredEvent]:
    """The events whose retry is due at `now`, each claimed (its next time moved on by
    `CLAIM_FOR`) so that no other retry takes it meanwhile; a crash mid-way retries it then."""
    rows = await store.fetch_all(
        f"SELECT * FROM webhook_events WHERE {_WAITING} AND next_at <= ? ORDER BY next_at, id",
        (iso_utc(now),))
    claimed = []
    for row in rows:
        async with store.transaction() as tx:
            cursor = await tx.execute(
                f"UPDATE webhook_events SET next_at = ? WHERE id = ? AND {_WAITING} "
                "AND next_at <= ?", (iso_utc(now + CLAIM_FOR), row["id"], iso_utc(now)))
            if cursor.rowcount == 1:
                claimed.append(_stored(row))
    return claimed


async def claim_failed(store: Store, row_id: int, now: datetime, by: str) -> StoredEvent:
    """A person retries a failed event: it is claimed (no longer failed, a new round of
    retries begins) and returned to be processed; EventError when it is not failed."""
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "UPDATE webhook_events SET failed_at = NULL, retrying_since = NULL, next_at = ? "
            "WHERE id = ? AND processed_at IS NULL AND failed_at IS NOT NULL",
            (iso_utc(now + CLAIM_FOR), row_id))
        if cursor.rowcount == 1:
            async with tx.execute("SELECT * FROM webhook_events WHERE id = ?",
                                  (row_id,)) as rows:
                found = await rows.fetchone()
            event = _stored(found)
            await audit.append(tx, actor=by, action="webhook.retried", detail={
                "event_id": event.event_id, "kind": event.kind, "row": row_id})
            return event
    row = await get(store, row_id)
    if row is None:
        raise EventError(f"There is no event {row_id}.")
    if row.state == PROCESSED:
        raise EventError(f"Event #{row_id} was already processed ({row.outcome}).")
    if row.state == RETRYING:
        raise EventError(f"Event #{row_id} is being retried automatically (attempt "
                         f"{row.attempts} failed: {row.last_error}); next try {row.next_at}.")
    raise EventError(f"Event #{row_id} is waiting in the queue; it has not failed.")


async def failed(store: Store, limit: int = 100) -> list[EventRow]:
    """Failed events (dead letters and outages past the bound), the oldest first."""
    rows = await store.read_all(
        "SELECT * FROM webhook_events WHERE processed_at IS NULL AND failed_at IS NOT NULL "
        "ORDER BY id LIMIT ?", (limit,))
    return [_row(r) for r in rows]


async def retrying(store: Store, limit: int = 100) -> list[EventRow]:
    """Events waiting for a retry, the soonest first."""
    rows = await store.read_all(
        f"SELECT * FROM webhook_events WHERE {_WAITING} AND next_at IS NOT NULL "
        "ORDER BY next_at, id LIMIT ?", (limit,))
    return [_row(r) for r in rows]


async def count_unprocessed(store: Store) -> int:
    """How many stored webhook events are queued for the worker (the health check shows it)."""
    return await _count(store, f"{_WAITING} AND next_at IS NULL")


async def count_retrying(store: Store) -> int:
    """How many events wait for a retry after an outage (the health check shows it)."""
    return await _count(store, f"{_WAITING} AND next_at IS NOT NULL")


async def count_failed(store: Store) -> int:
    """How many events failed and wait for a person (the health check shows it)."""
    return await _count(store, "processed_at IS NULL AND failed_at IS NOT NULL")


def subject(source: str, payload: dict[str, Any]) -> str | None:
    """What the event is about, safe to show: the booking (code or id) of a Checkfront notice,
    the object id of a Stripe event; None when the payload names none that looks like one."""
    if source == "checkfront":
        for key in ("booking", "transaction"):
            part = payload.get(key)
            if isinstance(part, dict):
                attributes = part.get("@attributes")
                return _safe_id(part.get("code") or part.get("booking_id") or (
                    attributes.get("booking_id") if isinstance(attributes, dict) else None))
        return None
    data = payload.get("data")
    found = data.get("object") if isinstance(data, dict) else None
    return _safe_id(found.get("id")) if isinstance(found, dict) else None


def booking_of(event: StoredEvent) -> str | None:
    """The booking code an event names, safe to log: a Checkfront notice's booking, the
    `booking_code` this bot puts in every refund's metadata; None when it names none."""
    if event.source == "checkfront":
        return subject(event.source, event.payload)
    data = event.payload.get("data")
    found = data.get("object") if isinstance(data, dict) else None
    metadata = found.get("metadata") if isinstance(found, dict) else None
    return _safe_id(metadata.get("booking_code")) if isinstance(metadata, dict) else None


def _safe_id(value: object) -> str | None:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    return text if _SUBJECT.match(text) else None


def _state(processed: str | None, failed_at: str | None, next_at: str | None) -> str:
    if processed is not None:
        return PROCESSED
    if failed_at is not None:
        return FAILED
    return RETRYING if next_at is not None else QUEUED


async def _count(store: Store, where: str) -> int:
    row = await store.read_one(f"SELECT COUNT(*) FROM webhook_events WHERE {where}")
    return int(row[0]) if row else 0


def _stored(r: Row) -> StoredEvent:
    return StoredEvent(r["id"], r["source"], r["event_id"], r["kind"], r["received_at"],
                       json.loads(r["payload"]))


def _row(r: Row) -> EventRow:
    return EventRow(r["id"], r["source"], r["event_id"], r["kind"], r["received_at"],
                    subject(r["source"], json.loads(r["payload"])), r["attempts"],
                    r["last_error"], r["next_at"], r["retrying_since"], r["failed_at"],
                    r["processed_at"], r["outcome"])
