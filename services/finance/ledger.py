"""Our ledger as the reconciliation reads it: `executions` rows with their case, and every
query the reconciliation makes of executions, cases and booking payments."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.store.db import Row, Store, iso_utc

READ_AT_ONCE = 500   # ledger rows read by id per query


@dataclass(slots=True)
class LedgerRow:
    """One refund the bot planned or made: an `executions` row and its case's booking."""

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


_SELECT = (
    "SELECT e.id, e.case_id, e.payment_ref, e.amount, e.currency, e.status, "
    "e.stripe_refund_id, e.created_at, e.called_at, c.booking_code, c.booking_id "
    "FROM executions e JOIN cases c ON c.id = e.case_id "
)


def _row(row: Row) -> LedgerRow:
    return LedgerRow(row["id"], row["case_id"], row["payment_ref"], row["amount"],
                     row["currency"], row["status"], row["stripe_refund_id"], row["created_at"],
                     row["called_at"], row["booking_code"], row["booking_id"])


async def planned_unsent(store: Store) -> list[LedgerRow]:
    """Rows planned with no Stripe refund id (the call went out, or is about to, and no answer
    came back), oldest first, at most 10,000."""
    rows = await store.fetch_all(
        _SELECT + "WHERE e.status = 'planned' AND e.stripe_refund_id IS NULL "
        "ORDER BY e.id LIMIT 10000")
    return [_row(r) for r in rows]


async def by_refund_ids(store: Store, refund_ids: Sequence[str]) -> dict[str, LedgerRow]:
    """The rows that recorded these Stripe refunds, by refund id."""
    marks = ",".join("?" for _ in refund_ids)
    rows = await store.fetch_all(
        _SELECT + f"WHERE e.stripe_refund_id IN ({marks})", list(refund_ids))
    return {r["stripe_refund_id"]: _row(r) for r in rows}


async def row_with_id(store: Store, execution_id: int) -> LedgerRow | None:
    row = await store.fetch_one(_SELECT + "WHERE e.id = ?", (execution_id,))
    return _row(row) if row else None


async def rows_with_ids(store: Store, execution_ids: list[int]) -> AsyncIterator[LedgerRow]:
    """Rows by id, read `READ_AT_ONCE` at a time."""
    for n in range(0, len(execution_ids), READ_AT_ONCE):
        chunk = execution_ids[n:n + READ_AT_ONCE]
        marks = ",".join("?" for _ in chunk)
        for row in await store.fetch_all(_SELECT + f"WHERE e.id IN ({marks})", chunk):
            yield _row(row)


async def ids_with_refund_between(store: Store, start: datetime,
                                  end: datetime) -> AsyncIterator[int]:
    """Ids of the rows created in [start, end) that have a Stripe refund id and moved (or
    failed to move) money, streamed."""
    async with store.db.execute(
        "SELECT id FROM executions WHERE created_at >= ? AND created_at < ? "
        "AND stripe_refund_id IS NOT NULL AND status IN ('pending', 'succeeded', 'failed')",
        (iso_utc(start), iso_utc(end)),
    ) as cursor:
        async for row in cursor:
            yield row["id"]


async def pending_between(store: Store, start: datetime, end: datetime) -> list[LedgerRow]:
    """Rows created in [start, end) that the ledger still holds as pending at Stripe, at most
    1,000."""
    rows = await store.fetch_all(
        _SELECT + "WHERE e.status = 'pending' AND e.stripe_refund_id IS NOT NULL "
        "AND e.created_at >= ? AND e.created_at < ? ORDER BY e.id LIMIT 1000",
        (iso_utc(start), iso_utc(end)))
    return [_row(r) for r in rows]


async def has_refund(store: Store, refund_id: str | None) -> bool:
    """Whether any row recorded this Stripe refund."""
    row = await store.fetch_one(
        "SELECT 1 FROM executions WHERE stripe_refund_id = ?", (refund_id,))
    return row is not None


async def booking_of_payment(store: Store, payment_refs: Sequence[str]) -> tuple[str, str] | None:
    """(booking code, Checkfront reference) of the booking paid by one of these payments: from
    a case refunded on it, else from the booking's recorded payments; None when neither
    knows it."""
    marks = ",".join("?" for _ in payment_refs)
    row = await store.fetch_one(
        "SELECT c.booking_code, c.booking_id FROM executions e JOIN cases c "
        f"ON c.id = e.case_id WHERE e.payment_ref IN ({marks}) LIMIT 1", list(payment_refs))
    if row is not None:
        return row["booking_code"], row["booking_id"] or row["booking_code"]
    row = await store.fetch_one(
        f"SELECT booking_code FROM booking_payments WHERE transaction_id IN ({marks}) "
        "LIMIT 1", list(payment_refs))
    if row is not None:
        return row["booking_code"], row["booking_code"]
    return None


async def booking_id_of_case(store: Store, case_id: int) -> str | None:
    row = await store.fetch_one("SELECT booking_id FROM cases WHERE id = ?", (case_id,))
    return row["booking_id"] if row else None


async def case_status(store: Store, case_id: int) -> str | None:
    row = await store.fetch_one("SELECT status FROM cases WHERE id = ?", (case_id,))
    return row["status"] if row else None


async def refunded_after(store: Store, case_id: int, execution_id: int) -> bool:
    """Whether the case has a later row (id above `execution_id`) that moved money."""
    row = await store.fetch_one(
        "SELECT 1 FROM executions WHERE case_id = ? AND status IN ('pending', "
        "'succeeded') AND id > ? LIMIT 1", (case_id, execution_id))
    return row is not None
