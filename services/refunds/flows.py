"""Orchestration across services: a cancellation becomes a quoted, decided refund case.

`Services` bundles what the flows need; the app, the CLI and the tests build one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiosqlite

from services.config import Mode, RefundConfig
from services.money import format_minor, to_minor
from services.notify import Notifier, NullNotifier
from services.quoting.booking import BookingSnapshot, parse_snapshot
from services.quoting.policy import PolicyBook
from services.quoting.quote import Decision, Quote, build_quote
from services.quoting.risk import assess, customer_hash
from services.refunds import cases
from services.refunds.cases import Case, Status
from services.store import audit
from services.store.db import Store, dumps, now_iso, set_state

if TYPE_CHECKING:
    from services.clients.checkfront import CheckfrontClient
    from services.clients.stripe_gateway import StripeGateway

AUTOMATION_KEY = "automation"


@dataclass
class Services:
    store: Store
    book: PolicyBook
    config: RefundConfig = field(default_factory=RefundConfig)
    checkfront: CheckfrontClient | None = None
    stripe: StripeGateway | None = None
    notifier: Notifier = field(default_factory=NullNotifier)


@dataclass(frozen=True)
class Opened:
    case: Case
    quote: Quote
    created: bool  # False: an open case for this booking already existed


@dataclass(frozen=True)
class Automation:
    paused: bool
    reason: str = ""
    by: str = ""
    at: str = ""


# --- booking snapshots -------------------------------------------------------------------

async def stored_payments(store: Store, booking_code: str) -> list[dict[str, Any]]:
    rows = await store.fetch_all(
        "SELECT payload FROM booking_payments WHERE booking_code = ? ORDER BY received_at",
        (booking_code,),
    )
    return [json.loads(r["payload"]) for r in rows]


async def record_payment(store: Store, transaction: dict[str, Any], actor: str) -> bool:
    """Keep a Checkfront payment/refund transaction for its booking. False if already known."""
    code = str(transaction.get("booking_id") or "").strip()
    tid = str(transaction.get("transaction_id") or "").strip()
    status = str(transaction.get("status") or "").strip().upper()
    if not code or not tid:
        raise ValueError("transaction needs booking_id and transaction_id")
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT OR IGNORE INTO booking_payments (booking_code, transaction_id, status, "
            "payload, received_at) VALUES (?, ?, ?, ?, ?)",
            (code, tid, status, dumps(transaction), now_iso()),
        )
        if cursor.rowcount:
            await audit.append(tx, actor=actor, action="payment.recorded", detail={
                "booking": code, "transaction_id": tid, "status": status,
                "amount": str(transaction.get("amount")), "gateway": transaction.get("gateway_id"),
            })
        return bool(cursor.rowcount)


async def assemble_snapshot(
    svc: Services, booking_ref: str, booking: dict[str, Any] | None = None,
    *, exclude_case: int | None = None,
) -> dict[str, Any]:
    """The booking (from the webhook, else Checkfront's API) plus every payment we know of,
    and the refunds this bot made for it (but those of `exclude_case`: its executor counts
    its own)."""
    fetched: dict[str, Any] = {}
    if booking is None or svc.checkfront is not None:
        if svc.checkfront is None:
            raise cases.CaseError("Checkfront is not configured; cannot fetch the booking")
        fetched = await svc.checkfront.get_booking_snapshot(booking_ref)
    snapshot: dict[str, Any] = {"booking": booking if booking is not None else fetched["booking"]}
    code = str(snapshot["booking"].get("code") or booking_ref)
    known: dict[tuple[str, str], dict[str, Any]] = {}
    for source in (fetched.get("transactions") or [], await stored_payments(svc.store, code),
                   await our_refunds(svc.store, code, exclude_case)):
        for t in source:
            key = (str(t.get("transaction_id")), str(t.get("status", "")).upper())
            known.setdefault(key, t)
    if known or "transactions" in fetched:
        snapshot["transactions"] = list(known.values())
    return snapshot


async def our_refunds(store: Store, booking_code: str,
                      exclude_case: int | None = None) -> list[dict[str, Any]]:
    """Refunds this bot made for the booking, as Checkfront REFUND transactions: Checkfront has
    no API to record them, so without this a later quote would offer the money again."""
    rows = await store.fetch_all(
        "SELECT e.stripe_refund_id, e.payment_ref, e.amount, e.currency, e.created_at "
        "FROM executions e JOIN cases c ON c.id = e.case_id WHERE c.booking_code = ? "
        "AND e.status IN ('pending', 'succeeded') AND e.stripe_refund_id IS NOT NULL "
        "AND c.id != ?", (booking_code, exclude_case or 0))
    return [{"transaction_id": r["stripe_refund_id"], "status": "REFUND",
             "amount": format_minor(r["amount"], r["currency"]), "gateway_id": "Stripe",
             "original_transaction_id": r["payment_ref"], "booking_id": booking_code,
             "date": int(datetime.fromisoformat(r["created_at"]).timestamp())} for r in rows]


# --- quoting and opening cases -----------------------------------------------------------

async def quote_snapshot(
    svc: Services, raw: dict[str, Any], cancelled_at: datetime, waiver: str | None = None
) -> tuple[BookingSnapshot, Quote]:
    snapshot = parse_snapshot(raw, default_currency=svc.book.currency)
    customer = customer_hash(snapshot.customer_email, svc.config.customer_hash_salt)
    flags = await assess(svc.store, snapshot, cancelled_at, customer)
    return snapshot, build_quote(snapshot, svc.book, cancelled_at, waiver=waiver, risk_flags=flags)


async def open_case(
    svc: Services,
    raw: dict[str, Any],
    *,
    cancelled_at: datetime,
    source: str,
    requested_by: str | None = None,
    waiver: str | None = None,
) -> Opened:
    """Quote the booking, open its case (one open case per booking) and decide."""
    snapshot, quote = await quote_snapshot(svc, raw, cancelled_at, waiver)
    existing = await cases.find_open(svc.store, snapshot.booking_id)
    if existing is not None:
        return Opened(existing, quote, created=False)
    automation = await automation_state(svc.store)
    try:
        async with svc.store.transaction() as tx:
            case = await _insert_case(tx, svc, snapshot, quote, source, requested_by, raw)
            status, reason, decided_by = _initial_status(svc, quote, automation)
            decision = {Status.AUTO_APPROVED: "auto_approve", Status.DENIED: "deny",
                        Status.SKIPPED: "skip"}.get(status)
            if decision is not None:
                await cases.record_decision(tx, case, decision, by=decided_by,
                                            amount=quote.total_refund, reason=reason)
            changes = {"approved_amount": quote.total_refund} \
                if status == Status.AUTO_APPROVED else None
            case = await cases.transition(tx, case, status, actor=decided_by, reason=reason,
                                          changes=changes)
    except aiosqlite.IntegrityError:
        # another delivery opened the case between our check and our insert
        existing = await cases.find_open(svc.store, snapshot.booking_id)
        if existing is None:
            raise
        return Opened(existing, quote, created=False)
    await svc.notifier.case_opened(case, quote)
    return Opened(case, quote, created=True)


async def _insert_case(
    tx: aiosqlite.Connection, svc: Services, snapshot: BookingSnapshot, quote: Quote,
    source: str, requested_by: str | None, raw: dict[str, Any],
) -> Case:
    now = now_iso()
    customer = customer_hash(snapshot.customer_email, svc.config.customer_hash_salt)
    cursor = await tx.execute(
        "INSERT INTO cases (booking_id, booking_code, status, currency, cancelled_at, waiver, "
        "source, requested_by, quote_version, refund_amount, customer_hash, created_at, "
        "updated_at) VALUES (?, ?, 'quoted', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (snapshot.booking_id, snapshot.code, snapshot.currency, quote.cancelled_at, quote.waiver,
         source, requested_by, quote.version, quote.total_refund, customer, now, now),
    )
    case_id = int(cursor.lastrowid or 0)
    await tx.execute(
        "INSERT INTO quotes (case_id, version, created_at, snapshot, quote) VALUES (?, ?, ?, ?, ?)",
        (case_id, quote.version, now, dumps(raw), dumps(quote.to_dict())),
    )
    await audit.append(tx, actor=requested_by or source, action="case.opened", case_id=case_id,
                       detail={"source": source, "booking": snapshot.code,
                               "cancelled_at": quote.cancelled_at, "waiver": quote.waiver,
                               "snapshot": redact(raw)})
    await audit.append(tx, actor="policy", action="quote.made", case_id=case_id,
                       detail={"quote": quote.to_dict(), "policy_file": svc.book.source,
                               "policy_digest": svc.book.digest})
    async with tx.execute("SELECT * FROM cases WHERE id = ?", (case_id,)) as cur:
        row = await cur.fetchone()
    assert row is not None
    return Case.from_row(row)


def _initial_status(
    svc: Services, quote: Quote, automation: Automation
) -> tuple[Status, str, str]:
    """Status, reason and deciding actor for a fresh quote under the mode and the breaker."""
    reason = "; ".join(quote.reasons)
    if quote.decision == Decision.SKIP:
        return Status.SKIPPED, reason, "policy"
    if quote.decision == Decision.DENY:
        return Status.DENIED, reason, "policy"
    automatic = quote.decision == Decision.AUTO_APPROVE or (
        svc.config.mode == Mode.AUTONOMOUS and policy_clear(quote, svc.book)
    )
    if not automatic:
        return Status.PENDING_APPROVAL, reason, "policy"
    if svc.config.mode == Mode.SHADOW:
        return Status.PENDING_APPROVAL, "shadow mode: would auto-approve; " + reason, "policy"
    if automation.paused:
        return Status.PENDING_APPROVAL, f"automation paused ({automation.reason}); " + reason, \
            "policy"
    return Status.AUTO_APPROVED, reason, "policy"


def policy_clear(quote: Quote, book: PolicyBook) -> bool:
    """No risk, no manual money, the policy's own currency, not above the escalation limit."""
    return (
        quote.decision in (Decision.AUTO_APPROVE, Decision.NEEDS_APPROVAL)
        and not quote.risk_flags
        and all(a.method == "stripe" for a in quote.allocations)
        and quote.currency == book.currency
        and quote.total_refund <= to_minor(book.escalate_over, book.currency)
    )


def redact(raw: dict[str, Any]) -> dict[str, Any]:
    """The snapshot for the audit trail: the customer's contact details are left out."""
    copy = json.loads(dumps(raw))
    customer = copy.get("booking", {}).get("customer")
    if isinstance(customer, dict):
        name = str(customer.get("name") or "").split()
        copy["booking"]["customer"] = {"first_name": name[0] if name else ""}
    return copy


# --- the automation breaker ---------------------------------------------------------------

async def automation_state(store: Store) -> Automation:
    value = await store.get_state(AUTOMATION_KEY)
    return Automation(**value) if value else Automation(paused=False)


async def set_automation(svc: Services, *, paused: bool, reason: str, by: str) -> Automation:
    state = Automation(paused=paused, reason=reason, by=by, at=now_iso())
    async with svc.store.transaction() as tx:
        await set_state(tx, AUTOMATION_KEY, state.__dict__)
        await audit.append(tx, actor=by, action="automation.paused" if paused
                           else "automation.resumed", detail={"reason": reason})
    await svc.notifier.automation_changed(paused, reason, by)
    return state
