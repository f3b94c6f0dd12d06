"""Per-case risk flags: reasons a refund that the policy allows should still see a person."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta

from services.disputes.holds import holds_on
from services.money import format_minor
from services.quoting.booking import BookingSnapshot
from services.quoting.quote import RiskFlag
from services.refunds import cases
from services.store.db import Store

REPEAT_WINDOW = timedelta(days=30)
REPEAT_THRESHOLD = 2          # earlier refunded cases for the same customer within the window
LAST_MINUTE_BOOKING = timedelta(hours=2)  # booked this shortly before cancelling
VALUE_OUTLIER_FACTOR = 3      # booking value this many times the product's usual
VALUE_MIN_SAMPLES = 5         # earlier cases of the product needed to know its "usual"
VALUE_LOOKBACK = 200          # most recent quotes read for that


async def assess(
    store: Store, snapshot: BookingSnapshot, cancelled_at: datetime, customer: str | None
) -> tuple[RiskFlag, ...]:
    flags: list[RiskFlag] = []
    if customer:
        since = (cancelled_at - REPEAT_WINDOW).isoformat()
        count = await cases.refunded_for_customer(
            store, customer, other_than_booking=snapshot.booking_id, since=since)
        if count >= REPEAT_THRESHOLD:
            flags.append(RiskFlag(
                "repeat_refunder",
                f"this customer had {count} other refunds in the last {REPEAT_WINDOW.days} days",
            ))
    if snapshot.created_at is not None and timedelta(0) <= cancelled_at - snapshot.created_at \
            < LAST_MINUTE_BOOKING:
        minutes = int((cancelled_at - snapshot.created_at).total_seconds() // 60)
        flags.append(RiskFlag(
            "booked_just_before_cancel",
            f"booked only {minutes} minutes before it was cancelled",
        ))
    flag = await _value_outlier(store, snapshot)
    if flag is not None:
        flags.append(flag)
    refs = [payment.transaction.id for payment in snapshot.payments()]
    flags += [RiskFlag("payment_disputed", hold.reason) for hold in await holds_on(store, refs)]
    return tuple(flags)


async def _value_outlier(store: Store, snapshot: BookingSnapshot) -> RiskFlag | None:
    """The booking is worth far more than the usual booking of its main product."""
    main = max(snapshot.lines, key=lambda line: line.total)
    values = await cases.recent_order_totals(store, currency=snapshot.currency,
                                             other_than_booking=snapshot.booking_id,
                                             sku=main.sku, limit=VALUE_LOOKBACK)
    if len(values) < VALUE_MIN_SAMPLES:
        return None
    usual = statistics.median(values)
    if usual > 0 and snapshot.order_total > VALUE_OUTLIER_FACTOR * usual:
        return RiskFlag("value_outlier", (
            f"worth {format_minor(snapshot.order_total, snapshot.currency)}, over "
            f"{VALUE_OUTLIER_FACTOR}x the usual {format_minor(int(usual), snapshot.currency)} "
            f"for {main.sku or main.name}"))
    return None
