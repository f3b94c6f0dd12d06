"""Per-case risk flags: reasons a refund that the policy allows should still see a person."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from services.booking import BookingSnapshot
from services.quote import RiskFlag
from services.store import Store

REPEAT_WINDOW = timedelta(days=30)
REPEAT_THRESHOLD = 2          # earlier refunded cases for the same customer within the window
LAST_MINUTE_BOOKING = timedelta(hours=2)  # booked this shortly before cancelling


def customer_hash(email: str, salt: str) -> str | None:
    """A stable, non-reversible customer key; the email itself is never stored or logged."""
    normalized = email.strip().casefold()
    if not normalized:
        return None
    return hashlib.sha256(f"{salt}:{normalized}".encode()).hexdigest()[:24]


async def assess(
    store: Store, snapshot: BookingSnapshot, cancelled_at: datetime, customer: str | None
) -> tuple[RiskFlag, ...]:
    flags: list[RiskFlag] = []
    if customer:
        since = (cancelled_at - REPEAT_WINDOW).isoformat()
        row = await store.fetch_one(
            "SELECT COUNT(*) AS n FROM cases WHERE customer_hash = ? AND booking_id != ? "
            "AND status IN ('refunded', 'partially_refunded', 'executing', 'approved', "
            "'auto_approved') AND created_at >= ?",
            (customer, snapshot.booking_id, since),
        )
        count = int(row["n"]) if row else 0
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
    return tuple(flags)
