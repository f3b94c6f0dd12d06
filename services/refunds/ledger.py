"""The executions ledger: one row per Stripe refund the bot plans, calls and learns the outcome
of, with the idempotency key that makes the call safe to repeat. All of its SQL lives here.

A row is `planned` (its key committed before Stripe is called), then `pending` or `succeeded`
(money has left or is leaving the merchant), `failed` (Stripe said so later) or `rejected`
(refused before or by Stripe; nothing moved).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiosqlite

from services.store.db import Row, Store, now_iso


class ExecutionStatus(StrEnum):
    PLANNED = "planned"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


SETTLED = (ExecutionStatus.PENDING, ExecutionStatus.SUCCEEDED)  # money that has left
_SETTLED_SQL = "('pending', 'succeeded')"


def from_stripe(stripe_status: str) -> ExecutionStatus:
    """Our execution status for a Stripe refund status."""
    if stripe_status in ("failed", "canceled"):
        return ExecutionStatus.FAILED
    return ExecutionStatus.SUCCEEDED if stripe_status == "succeeded" else ExecutionStatus.PENDING


@dataclass(frozen=True)
class Execution:
    id: int
    case_id: int
    payment_ref: str
    amount: int
    currency: str
    attempt: int
    idempotency_key: str
    status: ExecutionStatus
    stripe_refund_id: str | None
    failure_reason: str | None
    called_at: str | None
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: Row) -> Execution:
        data = dict(row)
        data["status"] = ExecutionStatus(data["status"])
        return cls(**data)

    @property
    def settled(self) -> bool:
        return self.status in SETTLED


# --- planning and calling (inside the executor's transactions) ----------------------------

async def for_case(tx: aiosqlite.Connection, case_id: int) -> list[Execution]:
    async with tx.execute("SELECT * FROM executions WHERE case_id = ? ORDER BY id",
                          (case_id,)) as cur:
        return [Execution.from_row(r) for r in await cur.fetchall()]


async def add_planned(tx: aiosqlite.Connection, *, case_id: int, payment_ref: str, amount: int,
                      currency: str, attempt: int, key: str) -> None:
    now = now_iso()
    await tx.execute(
        "INSERT INTO executions (case_id, payment_ref, amount, currency, attempt, "
        "idempotency_key, status, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 'planned', ?, ?)",
        (case_id, payment_ref, amount, currency, attempt, key, now, now),
    )


async def planned(tx: aiosqlite.Connection, case_id: int) -> list[Execution]:
    async with tx.execute(
        "SELECT * FROM executions WHERE case_id = ? AND status = 'planned' ORDER BY id",
        (case_id,),
    ) as cur:
        return [Execution.from_row(r) for r in await cur.fetchall()]


async def mark_called(tx: aiosqlite.Connection, row_id: int) -> None:
    """Set just before the Stripe call: from then on a lost answer may hide a refund."""
    await tx.execute("UPDATE executions SET called_at = COALESCE(called_at, ?) WHERE id = ?",
                     (now_iso(), row_id))


async def reject(tx: aiosqlite.Connection, row_id: int, why: str, *,
                 only_planned: bool = False) -> None:
    await tx.execute(
        "UPDATE executions SET status = 'rejected', failure_reason = ?, updated_at = ? "
        "WHERE id = ?" + (" AND status = 'planned'" if only_planned else ""),
        (why, now_iso(), row_id))


async def record_outcome(tx: aiosqlite.Connection, row_id: int, status: ExecutionStatus,
                         failure_reason: str | None, *, refund_id: str | None = None) -> None:
    """Stripe's answer (or a later event) for a row; `refund_id` when it names the refund."""
    if refund_id is None:
        await tx.execute("UPDATE executions SET status = ?, failure_reason = ?, updated_at = ? "
                         "WHERE id = ?", (str(status), failure_reason, now_iso(), row_id))
    else:
        await tx.execute(
            "UPDATE executions SET status = ?, stripe_refund_id = ?, failure_reason = ?, "
            "updated_at = ? WHERE id = ?",
            (str(status), refund_id, failure_reason, now_iso(), row_id))


# --- reading -------------------------------------------------------------------------------

async def executed(store: Store, case_id: int) -> list[Execution]:
    """Rows whose money moved or whose call went out (so its outcome may still come)."""
    rows = await store.fetch_all(
        f"SELECT * FROM executions WHERE case_id = ? AND (status IN {_SETTLED_SQL} "
        "OR called_at IS NOT NULL)", (case_id,))
    return [Execution.from_row(r) for r in rows]


async def settled(store: Store, case_id: int) -> list[Execution]:
    """The case's refunds that moved money, oldest first."""
    rows = await store.fetch_all(
        f"SELECT * FROM executions WHERE case_id = ? AND status IN {_SETTLED_SQL} ORDER BY id",
        (case_id,))
    return [Execution.from_row(r) for r in rows]


async def stripe_refunds(store: Store, case_id: int) -> list[Row]:
    """The Stripe refunds made for a case, in the order they were planned (what its card and
    the demo list): refund id, amount, status and payment."""
    return await store.fetch_all(
        "SELECT stripe_refund_id, amount, status, payment_ref FROM executions "
        "WHERE case_id = ? AND stripe_refund_id IS NOT NULL ORDER BY id", (case_id,))


async def settled_for_booking(store: Store, booking_code: str,
                              exclude_case: int | None = None) -> list[Row]:
    """Refunds this bot made for a booking (all its cases but `exclude_case`)."""
    return await store.fetch_all(
        "SELECT e.stripe_refund_id, e.payment_ref, e.amount, e.currency, e.created_at "
        "FROM executions e JOIN cases c ON c.id = e.case_id WHERE c.booking_code = ? "
        f"AND e.status IN {_SETTLED_SQL} AND e.stripe_refund_id IS NOT NULL "
        "AND c.id != ?", (booking_code, exclude_case or 0))


async def known_refund_ids(store: Store) -> set[str]:
    rows = await store.fetch_all(
        "SELECT stripe_refund_id FROM executions WHERE stripe_refund_id IS NOT NULL")
    return {r["stripe_refund_id"] for r in rows}


async def by_refund_id(store: Store, refund_id: str) -> Execution | None:
    row = await store.fetch_one("SELECT * FROM executions WHERE stripe_refund_id = ?",
                                (refund_id,))
    return Execution.from_row(row) if row is not None else None


async def claim_unanswered(store: Store, case_id: int, payment_ref: str, amount: Any,
                           refund_id: Any) -> Execution | None:
    """The row whose call went out but whose answer never came, for a refund Stripe reports
    (by case, payment and amount); it takes the refund's id."""
    row = await store.fetch_one(
        "SELECT * FROM executions WHERE case_id = ? AND payment_ref = ? AND amount = ? "
        "AND stripe_refund_id IS NULL AND called_at IS NOT NULL ORDER BY id DESC LIMIT 1",
        (case_id, payment_ref, amount))
    if row is None:
        return None
    async with store.transaction() as tx:
        await tx.execute("UPDATE executions SET stripe_refund_id = ? WHERE id = ?",
                         (refund_id, row["id"]))
    return Execution.from_row(row)
