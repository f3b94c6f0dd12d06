"""The digest's figures: one business day's refunds, decisions and waiting cases, and refunds
per day over the days before. The refunds are read from the executions ledger."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.finance.days import day_window
from services.refunds import case_counts, ledger
from services.store.db import Store, iso_utc, utcnow

WAITING_AFTER = timedelta(hours=24)


@dataclass
class DayStats:
    """Refunds of one business day and the cases still waiting for a person."""

    day: date
    refunds: dict[str, tuple[int, int]]      # currency -> (count, total minor units)
    decisions: dict[str, int]  # refunds by auto_approve | approve; deny: denials that day
    median_minutes_to_refund: int | None     # cancellation to refund, cases refunded that day
    waiting: list[tuple[int, str, str]]      # (case id, booking code, waiting since), oldest first

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(),
                "refunds": {c: {"count": n, "total": t} for c, (n, t) in self.refunds.items()},
                "decisions": self.decisions,
                "median_minutes_to_refund": self.median_minutes_to_refund,
                "waiting": [{"case_id": i, "booking_code": b, "since": s}
                            for i, b, s in self.waiting]}


async def day_stats(store: Store, day: date, tz: ZoneInfo, *,
                    now: datetime | None = None) -> DayStats:
    """The digest's figures for one business day; a case is waiting when it has been pending
    approval for more than `WAITING_AFTER` at `now`."""
    start, end = (iso_utc(m) for m in day_window(day, tz))
    refunds = await ledger.settled_by_currency(store, start, end)
    decisions = await ledger.approvals_refunded_between(store, start, end)
    decisions["deny"] = await case_counts.denials_between(store, start, end)
    first_refunds = await ledger.first_refunds_between(store, start, end)
    minutes = sorted(
        max(0.0, (datetime.fromisoformat(refunded_at)
                  - datetime.fromisoformat(str(cancelled_at).replace("Z", "+00:00"))
                  ).total_seconds() / 60) for cancelled_at, refunded_at in first_refunds)
    median = round(statistics.median(minutes)) if minutes else None
    cutoff = iso_utc((now or utcnow()) - WAITING_AFTER)
    waiting = await case_counts.waiting_since_before(store, cutoff)
    return DayStats(day, refunds, decisions, median, waiting)


async def refunds_per_day(store: Store, last_day: date, tz: ZoneInfo,
                          days: int) -> list[tuple[date, int]]:
    """Refunds made (pending or succeeded) on each of the `days` business days up to
    `last_day`, oldest first."""
    counts = []
    for offset in range(days - 1, -1, -1):
        day = last_day - timedelta(days=offset)
        start, end = day_window(day, tz)
        counts.append((day, await ledger.settled_count_between(
            store, start.isoformat(), end.isoformat())))
    return counts
