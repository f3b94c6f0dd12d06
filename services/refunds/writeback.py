"""Telling Checkfront about a refund: the booking's status and a note, retried until it takes.

The money has already moved when this runs, so a Checkfront outage must not lose the update:
staff who see a booking still active in Checkfront could refund it again by hand. A failed
write-back is kept in `checkfront_writebacks` with its error and retried with growing waits
(`retry_due`, run by the scheduler and at start-up) until Checkfront takes it. Meanwhile the
case's card says so and the daily reconciliation lists the booking as not updated.

The status is only changed while the booking is not already cancelled, so a retry does not
change it twice. A note whose answer was lost (Checkfront took it, the reply never came) may
be written again by the retry; Checkfront has no way to look a note up by our reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from services.clients.checkfront_errors import CheckfrontError
from services.deps import Deps
from services.money import display
from services.quoting.quote import Quote
from services.refunds import cases, ledger
from services.refunds.models import Case
from services.refunds.snapshots import booking_status
from services.store import audit, leases
from services.store.db import Store, iso_utc, now_iso, utcnow, write

RETRY_FIRST = timedelta(minutes=2)
RETRY_MAX = timedelta(hours=6)
CLAIM_FOR = timedelta(minutes=5)   # a retry in progress keeps others off the row this long


@dataclass(frozen=True)
class PendingWriteback:
    case_id: int
    attempts: int
    last_error: str
    next_at: str


async def write_back(svc: Deps, case: Case, actor: str, manual: int, *,
                     status_now: str | None = None) -> bool:
    """Status (if the booking is not already cancelled) and a note with the refund. True when
    Checkfront took both; False when the write-back is kept for a retry.

    `status_now`: the booking's status as Checkfront's API gave it earlier in the same step
    (the execution read the booking just before refunding); without it, the booking is read
    now (a retry, a refund event that closed a case)."""
    if svc.checkfront is None:
        return True
    written = await tell_checkfront(svc, case, actor, manual, status_now=status_now)
    if written is None:
        return False
    async with svc.store.transaction() as tx:
        await record_written(tx, case.id, written)
    return True


async def tell_checkfront(svc: Deps, case: Case, actor: str, manual: int, *,
                          status_now: str | None = None, quote: Quote | None = None
                          ) -> dict[str, Any] | None:
    """`write_back`'s calls to Checkfront, without recording that they were taken: what
    Checkfront took (for `record_written`, in the caller's next transaction), or None when
    the write-back is kept for a retry (recorded here) or Checkfront is not configured.

    `quote`: the case's current quote as the caller read it in this step (the note quotes its
    clauses); without it, it is read."""
    if svc.checkfront is None:
        return None
    detail: dict[str, Any] = {"note": await _note(svc, case, actor, manual, quote)}
    try:
        if status_now is None:
            status_now = booking_status(await svc.checkfront.get_booking(case.booking_id))
        if status_now not in svc.config.cancelled_statuses:
            await svc.checkfront.update_status(case.booking_id, svc.config.status_after_refund,
                                               notify=svc.config.notify_customer)
            detail["status"] = {"from": status_now, "to": svc.config.status_after_refund}
        await svc.checkfront.add_note(case.booking_id, detail["note"])
    except CheckfrontError as exc:
        await _keep(svc, case, actor, manual, str(exc), detail)
        return None
    return detail


async def record_written(tx: aiosqlite.Connection, case_id: int, written: dict[str, Any]
                         ) -> None:
    """Inside the caller's transaction: Checkfront took the write-back `tell_checkfront`
    made (a kept one is done), audited."""
    await write(tx, "UPDATE checkfront_writebacks SET done_at = ?, updated_at = ? "
                "WHERE case_id = ? AND done_at IS NULL", (now_iso(), now_iso(), case_id))
    await audit.append(tx, actor="checkfront", action="checkfront.written", case_id=case_id,
                       detail=written)


async def retry_due(svc: Deps, now: datetime | None = None) -> list[int]:
    """Retry every kept write-back that is due; the ids of the cases Checkfront took."""
    now = now or utcnow()
    rows = await svc.store.fetch_all(
        "SELECT case_id, actor, manual FROM checkfront_writebacks WHERE done_at IS NULL "
        "AND next_at <= ? ORDER BY next_at", (iso_utc(now),))
    taken = []
    for row in rows:
        if not await _claim(svc, row["case_id"], now):
            continue  # another retry has it
        case = await cases.get(svc.store, row["case_id"])
        if await write_back(svc, case, row["actor"], row["manual"]):
            taken.append(case.id)
            await svc.notifier.case_updated(case)
    return taken


async def pending(store: Store, case_id: int) -> PendingWriteback | None:
    """The write-back Checkfront has not taken yet for this case, if any."""
    row = await store.fetch_one(
        "SELECT case_id, attempts, last_error, next_at FROM checkfront_writebacks "
        "WHERE case_id = ? AND done_at IS NULL", (case_id,))
    return PendingWriteback(row["case_id"], row["attempts"], row["last_error"],
                            row["next_at"]) if row else None


async def all_pending(store: Store) -> list[PendingWriteback]:
    """Every write-back Checkfront has not taken yet, the oldest case first."""
    rows = await store.fetch_all(
        "SELECT case_id, attempts, last_error, next_at FROM checkfront_writebacks "
        "WHERE done_at IS NULL ORDER BY case_id")
    return [PendingWriteback(r["case_id"], r["attempts"], r["last_error"], r["next_at"])
            for r in rows]


async def count_pending(store: Store) -> int:
    """How many write-backs Checkfront has not taken yet (the health check shows it)."""
    row = await store.fetch_one(
        "SELECT COUNT(*) FROM checkfront_writebacks WHERE done_at IS NULL")
    return int(row[0]) if row else 0


async def _note(svc: Deps, case: Case, actor: str, manual: int,
                quote: Quote | None = None) -> str:
    refunds = await ledger.settled(svc.store, case.id)
    if quote is None:
        quote = (await cases.current_quote(svc.store, case)).quote
    decided = await cases.last_decision(svc.store, case.id)
    total = sum(r.amount for r in refunds)
    clauses = "; ".join(f"[{k}] {v}" for k, v in quote.clauses.items())
    parts = []
    if total:
        ids = ", ".join(str(r.stripe_refund_id) for r in refunds)
        parts.append(f"Refund {display(total, case.currency)} via Stripe ({ids}).")
    if manual:
        parts.append(f"{display(manual, case.currency)} to be refunded by hand "
                     "(not paid through Stripe).")
    return " ".join([*parts, f"Case {case.id}. Decided by "
                     f"{decided['decided_by'] if decided else actor}. Policy: {clauses}"])


async def _keep(svc: Deps, case: Case, actor: str, manual: int, error: str,
                detail: dict[str, Any]) -> None:
    async with svc.store.transaction() as tx:
        async with tx.execute("SELECT attempts FROM checkfront_writebacks WHERE case_id = ?",
                              (case.id,)) as cursor:
            row = await cursor.fetchone()
        attempts = (int(row[0]) if row else 0) + 1
        retry_at = iso_utc(utcnow() + min(RETRY_FIRST * 2 ** min(attempts - 1, 12), RETRY_MAX))
        await tx.execute(
            "INSERT INTO checkfront_writebacks (case_id, actor, manual, attempts, last_error, "
            "next_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (case_id) DO UPDATE SET attempts = excluded.attempts, "
            "last_error = excluded.last_error, next_at = excluded.next_at, done_at = NULL, "
            "updated_at = excluded.updated_at",
            (case.id, actor, manual, attempts, error, retry_at, now_iso(), now_iso()))
        await audit.append(tx, actor="checkfront", action="checkfront.writeback_failed",
                           case_id=case.id, detail={"error": error, "attempt": attempts,
                                                    "retry_at": retry_at, **detail})


async def _claim(svc: Deps, case_id: int, now: datetime) -> bool:
    """Move the row's next_at on before trying, so that two retries never write twice, on
    any instance: the moved next_at is the claim's lease (`CLAIM_FOR`; a retrier killed
    mid-way is retried after it), `claimed_by` and `lease_until` say whose it is."""
    until = iso_utc(now + CLAIM_FOR)
    async with svc.store.transaction() as tx:
        cursor = await tx.execute(
            "UPDATE checkfront_writebacks SET next_at = ?, updated_at = ?, claimed_by = ?, "
            "lease_until = ? WHERE case_id = ? AND done_at IS NULL AND next_at <= ?",
            (until, now_iso(), leases.this().id, until, case_id, iso_utc(now)))
        return cursor.rowcount == 1
