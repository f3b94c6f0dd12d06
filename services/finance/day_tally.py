"""What one day's reconciliation keeps while it runs, and stores at the end: the counters per
kind, the totals per currency and figure (`refunded`, `ledger`, `matched`, `external`,
`failed`, `manual`), the problems found (one per kind and subject), the notes, and the ids of
earlier problems now resolved. `reconcile` runs the checks that fill it; `runs.save_run`
stores it with the run's notes.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.deps import Deps
from services.finance.booking_check import BookingCheck
from services.finance.days import day_window
from services.finance.runs import KINDS, Discrepancy, ReconRun, save_run
from services.finance.settlement import Settlement
from services.money import to_minor
from services.refunds.ledger import ExecutionWithBooking


class DayTally:
    """The working state of one day's run: counters, totals and the problems found so far."""

    def __init__(self, svc: Deps, day: date, tz: ZoneInfo, now: datetime, batch_size: int,
                 check_checkfront: bool) -> None:
        assert svc.stripe is not None
        self.stripe = svc.stripe
        self.store = svc.store
        self.day = day
        self.tz = tz
        self.now = now
        self.start, self.end = day_window(day, tz)
        self.lo, self.hi = int(self.start.timestamp()), int(self.end.timestamp())
        self.batch_size = max(1, batch_size)
        self.bookings = BookingCheck(svc.checkfront if check_checkfront else None,
                                     svc.config.cancelled_statuses)
        self.policy_currency = svc.book.currency
        self.limit = to_minor(svc.book.escalate_over, svc.book.currency)
        self.counts: Counter[str] = Counter()
        self.totals: dict[str, dict[str, int]] = {}
        self.found: dict[str, Discrepancy] = {}
        self.resolved_ids: list[int] = []
        self.seen: set[int] = set()          # ledger rows matched to a Stripe refund
        self.planned: dict[str, list[ExecutionWithBooking]] = {}  # payment -> planned, no id
        self.notes: list[str] = []
        self.stripe_count = 0
        self.other_day = 0
        self.unknown_booking = 0
        self.carried = 0
        self.settlement: Settlement | None = None

    def _add(self, currency: str, figure: str, amount: int) -> None:
        per = self.totals.setdefault(currency, {})
        per[figure] = per.get(figure, 0) + amount

    def _found(self, kind: str, subject: str, detail: str, *, error: bool = True,
               **fields: Any) -> None:
        key = f"{kind}:{subject}"
        if key in self.found:
            return
        self.counts[kind] += 1
        self.found[key] = Discrepancy(kind=kind, key=key, detail=detail, error=error,
                                      day=self.day.isoformat(), **fields)

    async def save(self) -> ReconRun:
        if self.other_day:
            self.notes.append(f"{self.other_day} ledger row(s) of this day were dated by Stripe "
                              "on a neighbouring day and are reconciled there")
        self.notes += self.bookings.notes()
        if self.carried:
            self.notes.append(f"{self.carried} problem(s) from earlier days are still open")
        if self.unknown_booking:
            self.notes.append(f"{self.unknown_booking} refund(s) name no booking we know")
        return await save_run(
            self.store, day=self.day, tz=self.tz.key, window=(self.start, self.end),
            stripe_count=self.stripe_count,
            counts={kind: self.counts.get(kind, 0) for kind in KINDS},
            totals={c: dict(sorted(v.items())) for c, v in sorted(self.totals.items())},
            notes=self.notes, found=self.found.values(), resolved_ids=self.resolved_ids,
            settlement=self.settlement.figures if self.settlement is not None else None,
            also=self.settlement.write if self.settlement is not None else None)
