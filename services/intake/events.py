"""Received webhook events and their table: stored once (de-duplicated by source and id)
before anyone answers 200, read back by the worker, marked processed with their outcome.

What an event *does* is `services.intake.routing`. What is stored is scrubbed of the
customer's contact details (`services.privacy`); a processed event's body is kept for the
retention period, then emptied (the row stays, so a redelivery is still recognised).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.privacy import scrub
from services.store import audit
from services.store.db import Store, dumps, now_iso, utcnow


@dataclass(frozen=True)
class StoredEvent:
    row_id: int
    source: str
    event_id: str
    kind: str
    received_at: str
    payload: dict[str, Any]


def body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def checkfront_kind(payload: dict[str, Any]) -> str:
    if payload.get("type") == "transaction" or "transaction" in payload:
        return "transaction"
    if "booking" in payload:
        return "booking"
    return "unknown"


async def store_event(store: Store, *, source: str, event_id: str, kind: str,
                      payload: dict[str, Any], salt: str | None = None) -> StoredEvent | None:
    """Insert the event, scrubbed (with `salt`, the customer's email is kept as its salted
    hash); None when an event with this id was already received. The event returned holds
    the payload as received, for the worker to process now."""
    received = now_iso()
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT OR IGNORE INTO webhook_events (source, event_id, kind, received_at, payload) "
            "VALUES (?, ?, ?, ?, ?)",
            (source, event_id, kind, received, dumps(scrub(payload, salt))))
        if not cursor.rowcount:
            return None
        row_id = int(cursor.lastrowid or 0)
        await audit.append(tx, actor=source, action="webhook.received",
                           detail={"event_id": event_id, "kind": kind, "row": row_id})
    return StoredEvent(row_id, source, event_id, kind, received, payload)


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
    rows = await store.fetch_all(
        "SELECT * FROM webhook_events WHERE processed_at IS NULL ORDER BY id")
    return [StoredEvent(r["id"], r["source"], r["event_id"], r["kind"], r["received_at"],
                        json.loads(r["payload"])) for r in rows]


async def processed_at(store: Store, row_id: int) -> str | None:
    row = await store.fetch_one("SELECT processed_at FROM webhook_events WHERE id = ?", (row_id,))
    return None if row is None else row["processed_at"]


async def mark_processed(store: Store, row_id: int, outcome: str) -> None:
    async with store.transaction() as tx:
        await tx.execute("UPDATE webhook_events SET processed_at = ?, outcome = ? WHERE id = ?",
                         (now_iso(), outcome, row_id))


async def count_unprocessed(store: Store) -> int:
    """How many stored webhook events wait to be applied (the health check shows it)."""
    row = await store.fetch_one(
        "SELECT COUNT(*) FROM webhook_events WHERE processed_at IS NULL")
    return int(row[0]) if row else 0
