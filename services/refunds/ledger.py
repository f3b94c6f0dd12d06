"""The executions ledger: one row per Stripe refund the bot plans, calls and learns the outcome
of, with the idempotency key that makes the call safe to repeat. All of its SQL lives here,
including the queries that read executions together with their case (its booking, quote and
decisions) for the reconciliation, the digest, the anomaly detector, range reports and
dispute evidence.

A row is `planned` (its key committed before Stripe is called), then `pending` or `succeeded`
(money has left or is leaving the merchant), `failed` (Stripe said so later) or `rejected`
(refused before or by Stripe; nothing moved).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import aiosqlite

from services.store.db import Row, Store, iso_utc, now_iso, write
from services.store.db import one as one_row
from services.store.db import rows as all_rows


class ExecutionStatus(StrEnum):
    PLANNED = "planned"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


SETTLED = (ExecutionStatus.PENDING, ExecutionStatus.SUCCEEDED)  # money that has left
LIVE = (ExecutionStatus.PLANNED, *SETTLED)   # money that has left, or may be leaving


def _sql_list(statuses: Iterable[ExecutionStatus]) -> str:
    """Statuses as an SQL list of literals, for `status IN ...`."""
    return "(" + ", ".join(f"'{s}'" for s in statuses) + ")"


_SETTLED_SQL = _sql_list(SETTLED)   # ('pending', 'succeeded')


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
    """Every row of the case, oldest first."""
    found = await all_rows(tx, "SELECT * FROM executions WHERE case_id = ? ORDER BY id", (case_id,))
    return [Execution.from_row(r) for r in found]


async def add_planned(tx: aiosqlite.Connection, *, case_id: int, payment_ref: str, amount: int,
                      currency: str, attempt: int, key: str) -> Execution:
    """A new `planned` row: its idempotency key is committed before Stripe is called. The row
    as written (one trip: `RETURNING`)."""
    now = now_iso()
    row = await one_row(
        tx, "INSERT INTO executions (case_id, payment_ref, amount, currency, attempt, "
        "idempotency_key, status, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 'planned', ?, ?) RETURNING *",
        (case_id, payment_ref, amount, currency, attempt, key, now, now),
    )
    assert row is not None
    return Execution.from_row(row)


async def for_booking(tx: aiosqlite.Connection, keys: Sequence[str],
                      payment_refs: Sequence[str]) -> list[Execution]:
    """Every row of every case of a booking (named by any of `keys`: its key, code or id) and
    every row on any of its payments, whatever case it belongs to; oldest first."""
    names, refs = ",".join("?" for _ in keys), ",".join("?" for _ in payment_refs) or "NULL"
    found = await all_rows(  # each side of the OR by its index (executions' case, payment)
        tx, "SELECT * FROM executions WHERE case_id IN (SELECT id FROM cases "
        f"WHERE booking_key IN ({names}) OR booking_code IN ({names}) "
        f"OR booking_id IN ({names})) OR payment_ref IN ({refs}) ORDER BY id",
        (*keys, *keys, *keys, *payment_refs),
    )
    return [Execution.from_row(r) for r in found]


async def mark_called(tx: aiosqlite.Connection, row_id: int) -> None:
    """Set just before the Stripe call: from then on a lost answer may hide a refund."""
    await write(tx, "UPDATE executions SET called_at = COALESCE(called_at, ?) WHERE id = ?",
                (now_iso(), row_id))


async def reject(tx: aiosqlite.Connection, row_id: int, why: str, *,
                 only_planned: bool = False) -> None:
    """Give a row up as `rejected` (nothing moved); `only_planned`: unless it left `planned`."""
    await write(
        tx, "UPDATE executions SET status = 'rejected', failure_reason = ?, updated_at = ? "
        "WHERE id = ?" + (" AND status = 'planned'" if only_planned else ""),
        (why, now_iso(), row_id))


async def record_outcome(tx: aiosqlite.Connection, row_id: int, status: ExecutionStatus,
                         failure_reason: str | None, *, refund_id: str | None = None) -> None:
    """Stripe's answer (or a later event) for a row; `refund_id` when it names the refund."""
    if refund_id is None:
        await write(tx, "UPDATE executions SET status = ?, failure_reason = ?, updated_at = ? "
                    "WHERE id = ?", (str(status), failure_reason, now_iso(), row_id))
    else:
        await write(
            tx, "UPDATE executions SET status = ?, stripe_refund_id = ?, failure_reason = ?, "
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
    return await store.fetch_all(*settled_for_booking_query(booking_code, exclude_case))


def settled_for_booking_query(booking_code: str, exclude_case: int | None = None
                              ) -> tuple[str, tuple[Any, ...]]:
    """`settled_for_booking`'s query and parameters (to read it with others in one trip)."""
    return ("SELECT e.stripe_refund_id, e.payment_ref, e.amount, e.currency, e.created_at "
            "FROM executions e JOIN cases c ON c.id = e.case_id WHERE c.booking_code = ? "
            f"AND e.status IN {_SETTLED_SQL} AND e.stripe_refund_id IS NOT NULL "
            "AND c.id != ?", (booking_code, exclude_case or 0))


async def known_refund_ids(store: Store) -> set[str]:
    """Every Stripe refund id a row recorded."""
    rows = await store.fetch_all(
        "SELECT stripe_refund_id FROM executions WHERE stripe_refund_id IS NOT NULL")
    return {r["stripe_refund_id"] for r in rows}


async def by_refund_id(store: Store, refund_id: str) -> Execution | None:
    """The row that recorded this Stripe refund, if any."""
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


async def latest_case_on_payment(store: Store, payment_ref: str) -> int | None:
    """The case of the latest row that refunds this payment, if any."""
    row = await store.fetch_one("SELECT case_id FROM executions WHERE payment_ref = ? "
                                "ORDER BY id DESC LIMIT 1", (payment_ref,))
    return row["case_id"] if row is not None else None


async def refund_history(store: Store, case_id: int) -> list[Row]:
    """The case's rows that have a Stripe refund, in the order they were planned (a dispute's
    refund history): refund id, amount, currency, status, payment and when last updated."""
    return await store.fetch_all(
        "SELECT stripe_refund_id, amount, currency, status, payment_ref, updated_at "
        "FROM executions WHERE case_id = ? AND stripe_refund_id IS NOT NULL ORDER BY id",
        (case_id,))


# --- the reconciliation's reading: rows with their case's booking ---------------------------

READ_AT_ONCE = 500   # rows read by id per query


@dataclass(slots=True)
class ExecutionWithBooking:
    """One refund the bot planned or made, as the reconciliation reads it: an `executions` row
    (its status as stored) and its case's booking."""

    id: int
    case_id: int
    payment_ref: str
    amount: int
    currency: str
    status: str
    refund_id: str | None
    created_at: str
    called_at: str | None
    booking_code: str
    booking_id: str


_WITH_BOOKING = (
    "SELECT e.id, e.case_id, e.payment_ref, e.amount, e.currency, e.status, "
    "e.stripe_refund_id, e.created_at, e.called_at, c.booking_code, c.booking_id "
    "FROM executions e JOIN cases c ON c.id = e.case_id "
)


def _with_booking(row: Row) -> ExecutionWithBooking:
    return ExecutionWithBooking(
        row["id"], row["case_id"], row["payment_ref"], row["amount"], row["currency"],
        row["status"], row["stripe_refund_id"], row["created_at"], row["called_at"],
        row["booking_code"], row["booking_id"])


async def planned_unsent(store: Store) -> list[ExecutionWithBooking]:
    """Rows planned with no Stripe refund id (the call went out, or is about to, and no answer
    came back), oldest first, at most 10,000."""
    rows = await store.fetch_all(
        _WITH_BOOKING + "WHERE e.status = 'planned' AND e.stripe_refund_id IS NULL "
        "ORDER BY e.id LIMIT 10000")
    return [_with_booking(r) for r in rows]


async def rows_with_refund_ids(store: Store,
                               refund_ids: Sequence[str]) -> dict[str, ExecutionWithBooking]:
    """The rows that recorded these Stripe refunds, by refund id."""
    marks = ",".join("?" for _ in refund_ids)
    rows = await store.fetch_all(
        _WITH_BOOKING + f"WHERE e.stripe_refund_id IN ({marks})", list(refund_ids))
    return {r["stripe_refund_id"]: _with_booking(r) for r in rows}


async def row_with_id(store: Store, execution_id: int) -> ExecutionWithBooking | None:
    """One row by id, with its case's booking."""
    row = await store.fetch_one(_WITH_BOOKING + "WHERE e.id = ?", (execution_id,))
    return _with_booking(row) if row else None


async def rows_with_ids(store: Store,
                        execution_ids: list[int]) -> AsyncIterator[ExecutionWithBooking]:
    """Rows by id, read `READ_AT_ONCE` at a time, in the order of `execution_ids` (an `IN`
    gives its rows in no promised order: SQLite's happens to be the index's, PostgreSQL's
    need not be)."""
    for n in range(0, len(execution_ids), READ_AT_ONCE):
        chunk = execution_ids[n:n + READ_AT_ONCE]
        marks = ",".join("?" for _ in chunk)
        found = {row["id"]: row for row in
                 await store.fetch_all(_WITH_BOOKING + f"WHERE e.id IN ({marks})", chunk)}
        for execution_id in chunk:
            if execution_id in found:
                yield _with_booking(found[execution_id])


async def ids_with_refund_between(store: Store, start: datetime,
                                  end: datetime) -> AsyncIterator[int]:
    """Ids of the rows created in [start, end) that have a Stripe refund id and moved (or
    failed to move) money, streamed."""
    moved_or_failed = _sql_list((*SETTLED, ExecutionStatus.FAILED))
    async with store.db.execute(
        "SELECT id FROM executions WHERE created_at >= ? AND created_at < ? "
        f"AND stripe_refund_id IS NOT NULL AND status IN {moved_or_failed}",
        (iso_utc(start), iso_utc(end)),
    ) as cursor:
        async for row in cursor:
            yield row["id"]


async def pending_between(store: Store, start: datetime,
                          end: datetime) -> list[ExecutionWithBooking]:
    """Rows created in [start, end) that the ledger still holds as pending at Stripe, at most
    1,000."""
    rows = await store.fetch_all(
        _WITH_BOOKING + "WHERE e.status = 'pending' AND e.stripe_refund_id IS NOT NULL "
        "AND e.created_at >= ? AND e.created_at < ? ORDER BY e.id LIMIT 1000",
        (iso_utc(start), iso_utc(end)))
    return [_with_booking(r) for r in rows]


async def has_refund(store: Store, refund_id: str | None) -> bool:
    """Whether any row recorded this Stripe refund."""
    row = await store.fetch_one(
        "SELECT 1 FROM executions WHERE stripe_refund_id = ?", (refund_id,))
    return row is not None


async def refunded_after(store: Store, case_id: int, execution_id: int) -> bool:
    """Whether the case has a later row (id above `execution_id`) that moved money."""
    row = await store.fetch_one(
        f"SELECT 1 FROM executions WHERE case_id = ? AND status IN {_SETTLED_SQL} "
        "AND id > ? LIMIT 1", (case_id, execution_id))
    return row is not None


async def booking_refunded_on(store: Store,
                              payment_refs: Sequence[str]) -> tuple[str, str] | None:
    """(booking code, Checkfront reference) of the case a row refunded one of these payments
    for; None when no row names any of them."""
    marks = ",".join("?" for _ in payment_refs)
    row = await store.fetch_one(
        "SELECT c.booking_code, c.booking_id FROM executions e JOIN cases c "
        f"ON c.id = e.case_id WHERE e.payment_ref IN ({marks}) LIMIT 1", list(payment_refs))
    if row is None:
        return None
    return row["booking_code"], row["booking_id"] or row["booking_code"]


# --- figures: the digest and the anomaly detector --------------------------------------------
# `start` and `end` given as text are compared as they are with `created_at`.

async def settled_by_currency(store: Store, start: str,
                              end: str) -> dict[str, tuple[int, int]]:
    """Refunds that moved money, created in [start, end): currency -> (count, total minor
    units), currencies in order."""
    rows = await store.read_all(
        "SELECT currency, COUNT(*) AS n, SUM(amount) AS total FROM executions "
        f"WHERE status IN {_SETTLED_SQL} AND created_at >= ? AND created_at < ? "
        "GROUP BY currency ORDER BY currency", (start, end))
    return {r["currency"]: (int(r["n"]), int(r["total"])) for r in rows}


async def approvals_refunded_between(store: Store, start: str, end: str) -> dict[str, int]:
    """Cases with a refund that moved money created in [start, end), counted by their latest
    approval: auto_approve | approve -> cases."""
    rows = await store.read_all(
        "SELECT d.decision, COUNT(DISTINCT d.case_id) AS n FROM decisions d "
        "WHERE d.decision IN ('auto_approve', 'approve') AND d.id = (SELECT MAX(x.id) FROM "
        "decisions x WHERE x.case_id = d.case_id AND x.decision IN ('auto_approve', 'approve')) "
        f"AND d.case_id IN (SELECT case_id FROM executions WHERE status IN {_SETTLED_SQL} "
        "AND created_at >= ? AND created_at < ?) GROUP BY d.decision", (start, end))
    return {r["decision"]: int(r["n"]) for r in rows}


async def first_refunds_between(store: Store, start: str, end: str) -> list[tuple[str, str]]:
    """For each case with refunds that moved money created in [start, end): (when the case
    was cancelled, when the first of those refunds was created)."""
    rows = await store.read_all(
        "SELECT c.cancelled_at, MIN(e.created_at) AS refunded_at FROM executions e "
        f"JOIN cases c ON c.id = e.case_id WHERE e.status IN {_SETTLED_SQL} "
        "AND e.created_at >= ? AND e.created_at < ? GROUP BY c.id", (start, end))
    return [(r["cancelled_at"], r["refunded_at"]) for r in rows]


async def settled_count_between(store: Store, start: str, end: str) -> int:
    """How many refunds that moved money were created in [start, end)."""
    row = await store.read_one(
        f"SELECT COUNT(*) AS n FROM executions WHERE status IN {_SETTLED_SQL} "
        "AND created_at >= ? AND created_at < ?", (start, end))
    return int(row["n"]) if row else 0


async def not_rejected_by_currency(store: Store, start: datetime,
                                   end: datetime) -> dict[str, tuple[int, int]]:
    """Rows created in [start, end) but rejected ones (refunds made, under way or attempted):
    currency -> (count, total minor units)."""
    rows = await store.read_all(
        "SELECT currency, COUNT(*) AS n, COALESCE(SUM(amount), 0) AS total FROM executions "
        "WHERE status != 'rejected' AND created_at >= ? AND created_at < ? "
        "GROUP BY currency", (iso_utc(start), iso_utc(end)))
    return {r["currency"]: (int(r["n"]), int(r["total"])) for r in rows}


async def last_called(store: Store, updated_after: str, limit: int) -> list[Row]:
    """The last `limit` rows sent to Stripe whose outcome is known (succeeded, pending, failed
    or rejected), updated after `updated_after`, newest first: id, status, failure reason."""
    known = _sql_list((ExecutionStatus.SUCCEEDED, ExecutionStatus.PENDING,
                       ExecutionStatus.FAILED, ExecutionStatus.REJECTED))
    return await store.read_all(
        "SELECT id, status, failure_reason FROM executions WHERE called_at IS NOT NULL "
        f"AND status IN {known} AND updated_at > ? "
        "ORDER BY updated_at DESC, id DESC LIMIT ?", (updated_after, limit))


# --- range reports ----------------------------------------------------------------------------

async def report_rows(store: Store, start: str, end: str) -> list[Row]:
    """Rows with a Stripe refund created in [start, end), oldest first, each with its case
    (id, booking code, quoted refund, waiver, whether involuntary), the policy ids of the
    case's current quote (JSON text) and its latest decision and who made it: what a range
    report lists. Read on the read-only connection: a long report holds up no writer. Each row
    finds its case, quote and latest decision by index, so the cost follows the rows listed,
    not the store's size."""
    return await store.read_all(
        "SELECT e.created_at, e.amount, e.currency, e.status, e.stripe_refund_id, "
        "e.payment_ref, c.id AS case_id, c.booking_code, c.refund_amount, "
        "c.waiver, c.involuntary, "
        "q.quote -> '$.policy_ids' AS policy_ids, "
        "d.decision, d.decided_by "
        "FROM executions e JOIN cases c ON c.id = e.case_id "
        "LEFT JOIN quotes q ON q.case_id = c.id AND q.version = c.quote_version "
        "LEFT JOIN decisions d ON d.id = (SELECT MAX(x.id) FROM decisions x "
        "WHERE x.case_id = c.id) "
        "WHERE e.stripe_refund_id IS NOT NULL AND e.created_at >= ? AND e.created_at < ? "
        "ORDER BY e.created_at", (start, end))
