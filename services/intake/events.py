"""Received webhook events: stored once (de-duplicated by id) before anyone answers 200,
then processed by a worker. Processing is idempotent per event row.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.clients.checkfront import CheckfrontError
from services.deps import Deps
from services.disputes import stripe_events
from services.quoting.booking import SnapshotError
from services.quoting.quote import QuoteError
from services.refunds import cases
from services.refunds.cases import CaseError, Status
from services.refunds.execution import apply_refund_event, execute
from services.refunds.opening import open_case
from services.refunds.snapshots import assemble_snapshot, record_payment
from services.store import audit
from services.store.db import Store, dumps, now_iso

log = logging.getLogger(__name__)


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
                      payload: dict[str, Any]) -> StoredEvent | None:
    """Insert the event; None when an event with this id was already received."""
    received = now_iso()
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT OR IGNORE INTO webhook_events (source, event_id, kind, received_at, payload) "
            "VALUES (?, ?, ?, ?, ?)", (source, event_id, kind, received, dumps(payload)))
        if not cursor.rowcount:
            return None
        row_id = int(cursor.lastrowid or 0)
        await audit.append(tx, actor=source, action="webhook.received",
                           detail={"event_id": event_id, "kind": kind, "row": row_id})
    return StoredEvent(row_id, source, event_id, kind, received, payload)


async def unprocessed(store: Store) -> list[StoredEvent]:
    rows = await store.fetch_all(
        "SELECT * FROM webhook_events WHERE processed_at IS NULL ORDER BY id")
    return [StoredEvent(r["id"], r["source"], r["event_id"], r["kind"], r["received_at"],
                        json.loads(r["payload"])) for r in rows]


async def count_unprocessed(store: Store) -> int:
    """How many stored webhook events wait to be applied (the health check shows it)."""
    row = await store.fetch_one(
        "SELECT COUNT(*) FROM webhook_events WHERE processed_at IS NULL")
    return int(row[0]) if row else 0


async def process(svc: Deps, event: StoredEvent) -> str:
    """Act on one stored event and mark it processed; returns the outcome text."""
    claimed = await svc.store.fetch_one(
        "SELECT processed_at FROM webhook_events WHERE id = ?", (event.row_id,))
    if claimed is not None and claimed["processed_at"] is not None:
        return "already processed"
    try:
        if event.source == "checkfront":
            outcome = await _checkfront(svc, event)
        elif event.source == "stripe":
            outcome = await _stripe(svc, event)
        else:
            outcome = f"ignored: unknown source {event.source}"
    except (SnapshotError, QuoteError, CaseError, CheckfrontError, ValueError) as exc:
        outcome = f"error: {exc}"
        await audit.record(svc.store, actor="worker", action="webhook.failed",
                           detail={"event_id": event.event_id, "error": str(exc)})
    async with svc.store.transaction() as tx:
        await tx.execute("UPDATE webhook_events SET processed_at = ?, outcome = ? WHERE id = ?",
                         (now_iso(), outcome, event.row_id))
    return outcome


async def _checkfront(svc: Deps, event: StoredEvent) -> str:
    payload = event.payload
    if event.kind == "transaction":
        transaction = payload.get("transaction") or {}
        new = await record_payment(svc.store, transaction, actor="checkfront")
        return "payment recorded" if new else "payment already known"
    booking = payload.get("booking")
    if not isinstance(booking, dict):
        return "ignored: no booking"
    status = str(booking.get("status") or booking.get("status_id") or "").upper()
    if status not in svc.config.cancelled_statuses:
        return f"ignored: status {status or '-'}"
    code = str(booking.get("code") or (booking.get("@attributes") or {}).get("booking_id"))
    earlier = await cases.latest_for_booking(svc.store, code)
    if earlier is not None and earlier.status not in cases.OPEN:
        # one cancellation, one case: later notices (our own note or status write-back
        # included) do not reopen it; a person can still open one with /refund quote
        return f"ignored: booking already has case {earlier.id} ({earlier.status})"
    raw = await assemble_snapshot(svc, code, booking=booking)
    cancelled_at = datetime.fromisoformat(event.received_at)
    opened = await open_case(svc, raw, cancelled_at=cancelled_at, source="checkfront_webhook")
    if not opened.created:
        return f"case {opened.case.id} already open"
    if opened.case.status == Status.AUTO_APPROVED:
        case = await execute(svc, opened.case.id, actor="policy")
        return f"case {case.id} {case.status}"
    return f"case {opened.case.id} {opened.case.status}"


async def _stripe(svc: Deps, event: StoredEvent) -> str:
    obj = (event.payload.get("data") or {}).get("object") or {}
    if event.kind.startswith("refund."):
        case = await apply_refund_event(svc, obj, event.kind)
        return f"case {case.id} {case.status}" if case else "external refund recorded"
    if event.kind == "charge.refunded":
        refunds = ((obj.get("refunds") or {}).get("data")) or []
        touched = [await apply_refund_event(svc, r, event.kind) for r in refunds]
        return f"{len(touched)} refund(s) applied"
    if event.kind == "charge.dispute.created":
        return await stripe_events.dispute_created(svc, obj, event.event_id)
    if event.kind in ("charge.dispute.updated", "charge.dispute.closed"):
        return await stripe_events.dispute_changed(svc, obj, event.kind)
    if event.kind == "payment_intent.payment_failed":
        return await stripe_events.payment_failed(svc, obj, event.event_id)
    return f"recorded: {event.kind}"
