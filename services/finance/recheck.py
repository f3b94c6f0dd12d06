"""Whether a discrepancy found on an earlier day still stands: each daily run looks at the
open problems of other days again (`reconcile`'s `recheck_open`) and closes those resolved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_gateway import StripeGateway
from services.finance.booking_check import BookingCheck
from services.finance.runs import (
    AMOUNT_MISMATCH,
    CHECKFRONT_NOT_UPDATED,
    CURRENCY_MISMATCH,
    EXTERNAL,
    FAILED,
    MISSING_IN_STRIPE,
    PENDING_STATUSES,
    STALE_PENDING,
    Discrepancy,
)
from services.refunds import cases, ledger
from services.refunds.ledger import ExecutionStatus, ExecutionWithBooking
from services.store.db import Store

# whether Stripe holds a refund of this planned row although no answer recorded it
Answered = Callable[[ExecutionWithBooking], Awaitable[bool]]


async def still_wrong(store: Store, stripe: StripeGateway, bookings: BookingCheck,
                      old: Discrepancy, answered_elsewhere: Answered) -> str | bool | None:
    """None: resolved. A string: still wrong (new detail). True: still wrong, unchanged."""
    kind = old.kind
    if kind == CHECKFRONT_NOT_UPDATED:
        if not bookings.enabled:
            return True
        ref = old.booking_code or ""
        if old.case_id is not None:
            booking_id = await cases.booking_id_of(store, old.case_id)
            ref = booking_id if booking_id is not None else ref
        return await bookings.problem(ref, old.amount or 0, old.currency or "USD")
    if kind == EXTERNAL:
        return None if await ledger.has_refund(store, old.refund_id) else True
    if kind == FAILED:
        return await _failure_still_open(store, old)
    execution = None
    if old.execution_id is not None:
        execution = await ledger.row_with_id(store, old.execution_id)
    if execution is not None and execution.status in (ExecutionStatus.REJECTED, "canceled"):
        return None  # the bot gave the row up: nothing was or will be refunded by it
    refund_id = old.refund_id or (execution.refund_id if execution else None)
    if refund_id is None:
        if execution is not None and execution.status == ExecutionStatus.PLANNED:
            return None if await answered_elsewhere(execution) else True
        return True
    try:
        refund = await stripe.get_refund(refund_id)
    except StripeGatewayError:
        return True  # still missing, or Stripe unreadable now: keep it open
    if kind == MISSING_IN_STRIPE:
        return None
    if kind == STALE_PENDING:
        return True if refund.status in PENDING_STATUSES else None
    if execution is None:
        return True
    if kind == AMOUNT_MISMATCH:
        return None if refund.amount == execution.amount else True
    if kind == CURRENCY_MISMATCH:
        return None if refund.currency == execution.currency else True
    return True

async def _failure_still_open(store: Store, old: Discrepancy) -> str | bool | None:
    """A failed refund is settled once its case got its money some other way or was
    closed without it."""
    if old.case_id is None:
        return True  # made outside the bot: a person closes it
    status = await cases.status_of(store, old.case_id)
    if status is None:
        return True
    if status == "refunded_by_hand":
        return None  # an approver recorded the rest as refunded by hand (services.refunds.manual)
    if status in ("refunded", "partially_refunded", "denied", "skipped"):
        later = await ledger.refunded_after(store, old.case_id, old.execution_id or 0)
        if later or status in ("denied", "skipped"):
            return None
    return True
