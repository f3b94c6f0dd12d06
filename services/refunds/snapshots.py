"""Booking snapshots, the quotes made from them, and all SQL of `booking_payments`.

A snapshot is the booking from Checkfront plus every payment we know of: Checkfront's, those
received by webhook (kept in `booking_payments`) and the refunds this bot made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.deps import Deps
from services.money import format_minor
from services.privacy import scrub
from services.quoting.booking import BookingSnapshot
from services.quoting.booking_read import parse_snapshot
from services.quoting.engine import build_quote
from services.quoting.quote import Quote
from services.quoting.risk import assess
from services.refunds import ledger
from services.refunds.models import CaseError
from services.store import audit
from services.store.db import Store, dumps, now_iso, reads

_STORED_PAYMENTS = ("SELECT payload FROM booking_payments WHERE booking_code = ? "
                    "ORDER BY received_at")


async def stored_payments(store: Store, booking_code: str) -> list[dict[str, Any]]:
    rows = await store.fetch_all(_STORED_PAYMENTS, (booking_code,))
    return [json.loads(r["payload"]) for r in rows]


async def booking_paid_by(store: Store, transaction_ids: Sequence[str]) -> str | None:
    """The booking code of a recorded payment with one of these transaction ids, if any."""
    marks = ",".join("?" for _ in transaction_ids)
    row = await store.fetch_one(
        f"SELECT booking_code FROM booking_payments WHERE transaction_id IN ({marks}) "
        "LIMIT 1", list(transaction_ids))
    return row["booking_code"] if row is not None else None


async def record_payment(store: Store, transaction: dict[str, Any], actor: str) -> bool:
    """Keep a Checkfront payment/refund transaction for its booking. False if already known."""
    code = str(transaction.get("booking_id") or "").strip()
    tid = str(transaction.get("transaction_id") or "").strip()
    status = str(transaction.get("status") or "").strip().upper()
    if not code or not tid:
        raise ValueError("transaction needs booking_id and transaction_id")
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT INTO booking_payments (booking_code, transaction_id, status, "
            "payload, received_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (booking_code, transaction_id, status) DO NOTHING",
            (code, tid, status, dumps(scrub(transaction)), now_iso()),
        )
        if cursor.rowcount:
            await audit.append(tx, actor=actor, action="payment.recorded", detail={
                "booking": code, "transaction_id": tid, "status": status,
                "amount": str(transaction.get("amount")), "gateway": transaction.get("gateway_id"),
            })
        return bool(cursor.rowcount)


@dataclass(frozen=True)
class BookingRead:
    """A booking as one step read it: the snapshot (`assemble_snapshot`), and the status
    Checkfront's API gave at that moment (None when Checkfront was not asked). A step that
    goes on to refund reuses both instead of asking again (`execution`, `writeback`)."""

    raw: dict[str, Any]
    status_now: str | None


def booking_status(booking: dict[str, Any]) -> str:
    """A booking's status code as Checkfront's API shows it, upper case ("" when none)."""
    return str(booking.get("status") or booking.get("status_id") or "").upper()


async def assemble_snapshot(
    svc: Deps, booking_ref: str, booking: dict[str, Any] | None = None,
    *, exclude_case: int | None = None,
) -> dict[str, Any]:
    """The booking (from the webhook, else Checkfront's API) plus every payment we know of,
    and the refunds this bot made for it (but those of `exclude_case`: its executor counts
    its own). The booking is always fetched when Checkfront is configured, and its id and code
    are the API's: a webhook body is a hint, never the booking's identity."""
    return (await read_booking(svc, booking_ref, booking, exclude_case=exclude_case)).raw


async def read_booking(
    svc: Deps, booking_ref: str, booking: dict[str, Any] | None = None,
    *, exclude_case: int | None = None,
) -> BookingRead:
    """`assemble_snapshot`, with the status Checkfront's API gave for the booking."""
    fetched: dict[str, Any] = {}
    if booking is None or svc.checkfront is not None:
        if svc.checkfront is None:
            raise CaseError("Checkfront is not configured; cannot fetch the booking")
        fetched = await svc.checkfront.get_booking_snapshot(booking_ref)
    snapshot: dict[str, Any] = {"booking": fetched["booking"] if booking is None
                                else _named_by_the_api(booking, fetched.get("booking"))}
    code = str(snapshot["booking"].get("code") or booking_ref)
    known: dict[tuple[str, str], dict[str, Any]] = {}
    # the payments received by webhook and the bot's own refunds, in one trip to the store
    stored, refunds = await reads(svc.store.db, [
        (_STORED_PAYMENTS, (code,)), ledger.settled_for_booking_query(code, exclude_case)])
    for source in (fetched.get("transactions") or [],
                   [json.loads(r["payload"]) for r in stored], _as_transactions(refunds, code)):
        for t in source:
            key = (str(t.get("transaction_id")), str(t.get("status", "")).upper())
            known.setdefault(key, t)
    if known or "transactions" in fetched:
        snapshot["transactions"] = list(known.values())
    api = fetched.get("booking")
    return BookingRead(snapshot, booking_status(api) if isinstance(api, dict) else None)


def _named_by_the_api(booking: dict[str, Any], api: Any) -> dict[str, Any]:
    """The webhook's booking under the id and code Checkfront's API gave the same booking."""
    if not isinstance(api, dict):
        return booking
    api_attributes = api.get("@attributes")
    api_id = str((api_attributes if isinstance(api_attributes, dict) else {})
                 .get("booking_id") or "").strip()
    api_code = str(api.get("code") or "").strip()
    named = dict(booking)
    if api_id:
        attributes = booking.get("@attributes")
        named["@attributes"] = {**(attributes if isinstance(attributes, dict) else {}),
                                "booking_id": api_id}
    if api_code:
        named["code"] = api_code
    return named


async def our_refunds(store: Store, booking_code: str,
                      exclude_case: int | None = None) -> list[dict[str, Any]]:
    """Refunds this bot made for the booking, as Checkfront REFUND transactions: Checkfront has
    no API to record them, so without this a later quote would offer the money again."""
    rows = await ledger.settled_for_booking(store, booking_code, exclude_case)
    return _as_transactions(rows, booking_code)


def _as_transactions(rows: list[Any], booking_code: str) -> list[dict[str, Any]]:
    return [{"transaction_id": r["stripe_refund_id"], "status": "REFUND",
             "amount": format_minor(r["amount"], r["currency"]), "gateway_id": "Stripe",
             "original_transaction_id": r["payment_ref"], "booking_id": booking_code,
             "date": int(datetime.fromisoformat(r["created_at"]).timestamp())} for r in rows]


async def quote_snapshot(
    svc: Deps, raw: dict[str, Any], cancelled_at: datetime, waiver: str | None = None
) -> tuple[BookingSnapshot, Quote]:
    snapshot = parse_snapshot(raw, default_currency=svc.book.currency)
    customer = snapshot.customer_key(svc.config.customer_hash_salt)
    flags = await assess(svc.store, snapshot, cancelled_at, customer)
    return snapshot, build_quote(snapshot, svc.book, cancelled_at, waiver=waiver, risk_flags=flags)
