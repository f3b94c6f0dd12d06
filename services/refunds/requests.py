"""Owns who asked for a refund from chat, and where, so they can be told when it is decided.

**Request refund** under a `/refund quote` opens a case on someone's behalf; `record` keeps
the person, the channel they asked in and the thread (if the quote was in one). The notifier
reads it back (`of`) once the case is final, to tell that person privately, once. A case
opened by a webhook has no row. `moment` is the time a request is quoted at: the booking's
own cancellation when Checkfront already cancelled it, else now. The cancellation's time is
the one the bot recorded when Checkfront told it (the latest case its webhook opened for the
booking); a booking cancelled with no such case is quoted at now, the earliest moment known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.deps import Deps
from services.refunds.models import booking_key
from services.refunds.snapshots import booking_status
from services.store import audit
from services.store.db import Store


@dataclass(frozen=True)
class Request:
    case_id: int
    user: str
    channel: str
    thread_ts: str | None


async def record(store: Store, case_id: int, *, user: str, channel: str,
                 thread_ts: str | None = None) -> bool:
    """Keep who asked for `case_id` and where (the first request only); audited."""
    async with store.transaction() as tx:
        cursor = await tx.execute(
            'INSERT INTO case_requests (case_id, "user", channel, thread_ts) '
            "VALUES (?, ?, ?, ?) ON CONFLICT (case_id) DO NOTHING",
            (case_id, user, channel, thread_ts))
        if not cursor.rowcount:
            return False
        await audit.append(tx, actor=user, action="case.requested", case_id=case_id,
                           detail={"channel": channel})
        return True


async def of(store: Store, case_id: int) -> Request | None:
    row = await store.fetch_one("SELECT * FROM case_requests WHERE case_id = ?", (case_id,))
    return Request(row["case_id"], row["user"], row["channel"], row["thread_ts"]) \
        if row else None


async def moment(svc: Deps, raw: dict[str, Any], now: datetime) -> datetime:
    """When a request for this booking (an assembled snapshot) is quoted at: when Checkfront
    cancelled it, if it did and the bot saw it; else `now`."""
    booking = raw.get("booking") or {}
    if booking_status(booking) not in svc.config.cancelled_statuses:
        return now
    code = str(booking.get("code") or "")
    row = await svc.store.fetch_one(
        "SELECT cancelled_at FROM cases WHERE booking_key = ? AND source = 'checkfront_webhook' "
        "ORDER BY id DESC LIMIT 1", (booking_key(code),))
    if row is None:
        return now
    seen = datetime.fromisoformat(row["cancelled_at"])
    return min(seen, now)
