"""Daily three-way reconciliation: Stripe's refunds, our ledger, Checkfront's bookings.

One run covers one business day, midnight to midnight in the business's timezone (23 or 25
hours on a DST change). Stripe's refunds created in that window are streamed page by page and
matched, a batch at a time, against our `executions` rows: by Stripe refund id first, then by
payment + amount against rows still `planned` (the bot called Stripe but never heard back).
Only counters, totals, the discrepancies and the ids of matched ledger rows are kept, so memory
stays flat however many refunds the day had.

Kinds: matched; external (in Stripe, not in our ledger: a dashboard refund, informational
unless above the policy's `escalate_over` or in another currency); missing_in_stripe;
amount_mismatch; currency_mismatch; failed (failed or canceled at Stripe); stale_pending
(pending for more than 48 hours, or planned and never sent); checkfront_not_updated (a
refunded booking that Checkfront still shows as active or paid).

Each run is stored: one `recon_runs` row per day (a re-run replaces it) and one
`recon_discrepancies` row per problem, keyed so that a re-run updates rather than duplicates.
Open problems from earlier days are checked again by every run; those that are gone are marked
resolved, as are problems of the re-run day that the re-run no longer finds.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.clients.checkfront import BookingNotFound, CheckfrontError
from services.clients.stripe_gateway import StripeGatewayError, StripeRefund
from services.deps import Deps
from services.errors import DomainError
from services.money import MoneyError, display, to_minor
from services.store import audit
from services.store.db import Row, Store, dumps, now_iso, utcnow

MATCHED = "matched"
EXTERNAL = "external"
MISSING_IN_STRIPE = "missing_in_stripe"
AMOUNT_MISMATCH = "amount_mismatch"
CURRENCY_MISMATCH = "currency_mismatch"
FAILED = "failed"
STALE_PENDING = "stale_pending"
CHECKFRONT_NOT_UPDATED = "checkfront_not_updated"
KINDS = (MATCHED, EXTERNAL, MISSING_IN_STRIPE, AMOUNT_MISMATCH, CURRENCY_MISMATCH, FAILED,
         STALE_PENDING, CHECKFRONT_NOT_UPDATED)

STALE_AFTER = timedelta(hours=48)
CARRY_LOOKBACK = timedelta(days=30)   # how far back ledger rows still pending are followed
IN_FLIGHT = timedelta(hours=1)        # a planned row called this recently may still be answered
RECHECK_LIMIT = 500                   # open problems of earlier days checked again per run
CHECKFRONT_CONCURRENCY = 8
PENDING_STATUSES = ("pending", "requires_action")
FAILED_STATUSES = ("failed", "canceled")
AUTO_RESOLVER = "reconcile"


class ReconcileError(DomainError):
    """A reconciliation that cannot run; the message is safe to show."""


@dataclass
class Discrepancy:
    kind: str
    key: str
    detail: str
    error: bool = True
    booking_code: str | None = None
    amount: int | None = None
    currency: str | None = None
    refund_id: str | None = None
    execution_id: int | None = None
    case_id: int | None = None
    payment_ref: str | None = None
    day: str = ""
    first_seen: str = ""
    last_seen: str = ""
    resolved_at: str | None = None
    resolved_by: str | None = None
    id: int | None = None

    @property
    def money(self) -> str:
        if self.amount is None or not self.currency:
            return "-"
        return display(self.amount, self.currency)

    @classmethod
    def from_row(cls, row: Row) -> Discrepancy:
        return cls(kind=row["kind"], key=row["key"], detail=row["detail"],
                   error=bool(row["error"]), booking_code=row["booking_code"],
                   amount=row["amount"], currency=row["currency"], refund_id=row["refund_id"],
                   execution_id=row["execution_id"], case_id=row["case_id"],
                   payment_ref=row["payment_ref"], day=row["day"],
                   first_seen=row["first_seen"], last_seen=row["last_seen"],
                   resolved_at=row["resolved_at"], resolved_by=row["resolved_by"], id=row["id"])


@dataclass
class ReconRun:
    day: date
    tz: str
    window_start: datetime
    window_end: datetime
    ran_at: str
    stripe_count: int
    counts: dict[str, int]
    totals: dict[str, dict[str, int]]   # currency -> figure -> minor units
    discrepancies: list[Discrepancy]    # found by this run, informational ones included
    resolved: list[Discrepancy] = field(default_factory=list)  # closed by this run
    notes: list[str] = field(default_factory=list)

    @property
    def open_errors(self) -> list[Discrepancy]:
        return [d for d in self.discrepancies if d.error and d.resolved_at is None]

    @property
    def informational(self) -> list[Discrepancy]:
        return [d for d in self.discrepancies if not d.error]

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(), "tz": self.tz,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(), "ran_at": self.ran_at,
            "stripe_count": self.stripe_count, "counts": self.counts, "totals": self.totals,
            "discrepancies": [asdict(d) for d in self.discrepancies],
            "resolved": [asdict(d) for d in self.resolved], "notes": self.notes,
        }


def day_window(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a business day in UTC: local midnight to the next local midnight."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


@dataclass(slots=True)
class _Ledger:
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


_LEDGER_SELECT = (
    "SELECT e.id, e.case_id, e.payment_ref, e.amount, e.currency, e.status, "
    "e.stripe_refund_id, e.created_at, e.called_at, c.booking_code, c.booking_id "
    "FROM executions e JOIN cases c ON c.id = e.case_id "
)


def _ledger(row: Row) -> _Ledger:
    return _Ledger(row["id"], row["case_id"], row["payment_ref"], row["amount"],
                   row["currency"], row["status"], row["stripe_refund_id"], row["created_at"],
                   row["called_at"], row["booking_code"], row["booking_id"])


@dataclass(slots=True)
class _Booked:
    """A refunded booking waiting for its Checkfront check."""

    ref: str
    code: str
    amount: int
    currency: str
    refund_id: str
    case_id: int | None


async def reconcile_day(
    svc: Deps,
    day: date,
    tz: ZoneInfo,
    *,
    now: datetime | None = None,
    batch_size: int = 100,
    check_checkfront: bool = True,
) -> ReconRun:
    """Reconcile one business day and store the result (a re-run of a day replaces it)."""
    if svc.stripe is None:
        raise ReconcileError("Stripe is not configured; cannot reconcile")
    work = _DayRun(svc, day, tz, now or utcnow(), batch_size,
                 check_checkfront and svc.checkfront is not None)
    await work.stream_stripe()
    await work.unseen_ledger()
    await work.unsent_planned()
    await work.carried_pending()
    await work.recheck_open()
    return await work.save()


class _DayRun:
    """The working state of one run."""

    def __init__(self, svc: Deps, day: date, tz: ZoneInfo, now: datetime, batch_size: int,
                 check_checkfront: bool) -> None:
        assert svc.stripe is not None
        self.svc = svc
        self.stripe = svc.stripe
        self.store = svc.store
        self.day = day
        self.tz = tz
        self.now = now
        self.start, self.end = day_window(day, tz)
        self.lo, self.hi = int(self.start.timestamp()), int(self.end.timestamp())
        self.batch_size = max(1, batch_size)
        self.check_checkfront = check_checkfront
        self.policy_currency = svc.book.currency
        self.limit = to_minor(svc.book.escalate_over, svc.book.currency)
        self.counts: Counter[str] = Counter()
        self.totals: dict[str, dict[str, int]] = {}
        self.found: dict[str, Discrepancy] = {}
        self.resolved_ids: list[int] = []
        self.seen: set[int] = set()          # ledger rows matched to a Stripe refund
        self.planned: dict[str, list[_Ledger]] = {}  # payment -> rows planned, no refund id
        self.booked: dict[str, _Booked] = {}  # bookings waiting for their Checkfront check
        self.checked: set[str] = set()
        self.notes: list[str] = []
        self.stripe_count = 0
        self.other_day = 0
        self.cf_unreadable = 0
        self.unknown_booking = 0
        self.carried = 0
        self.cf_missing: list[str] = []

    # ---- Stripe side, streamed -------------------------------------------------------------

    async def stream_stripe(self) -> None:
        rows = await self.store.fetch_all(
            _LEDGER_SELECT + "WHERE e.status = 'planned' AND e.stripe_refund_id IS NULL "
            "ORDER BY e.id LIMIT 10000")
        for row in map(_ledger, rows):
            self.planned.setdefault(row.payment_ref, []).append(row)
        batch: list[StripeRefund] = []
        async for refund in self.stripe.iter_refunds(created_gte=self.lo, created_lt=self.hi):
            batch.append(refund)
            if len(batch) >= self.batch_size:
                await self._batch(batch)
                batch = []
        if batch:
            await self._batch(batch)
        if not self.check_checkfront:
            self.notes.append("Checkfront was not checked in this run")

    async def _batch(self, refunds: list[StripeRefund]) -> None:
        marks = ",".join("?" for _ in refunds)
        rows = await self.store.fetch_all(
            _LEDGER_SELECT + f"WHERE e.stripe_refund_id IN ({marks})", [r.id for r in refunds])
        by_id = {r["stripe_refund_id"]: _ledger(r) for r in rows}
        for refund in refunds:
            self.stripe_count += 1
            row = by_id.get(refund.id) or self._take_planned(refund)
            await self._classify(refund, row)
        await self._check_bookings()

    def _take_planned(self, refund: StripeRefund) -> _Ledger | None:
        """A planned row on the same payment: same amount, or same case (then amounts differ)."""
        case_id = refund.metadata.get("case_id", "")
        for exact in (True, False):
            for ref in (refund.payment_intent, refund.charge):
                rows = self.planned.get(ref or "", [])
                for n, row in enumerate(rows):
                    if (exact and row.amount == refund.amount) or (
                            not exact and case_id == str(row.case_id)):
                        return rows.pop(n)
        return None

    async def _classify(self, refund: StripeRefund, row: _Ledger | None) -> None:
        cur = refund.currency
        moved = refund.status not in FAILED_STATUSES
        self._add(cur, "refunded" if moved else "failed", refund.amount)
        age = self.now - datetime.fromtimestamp(refund.created, UTC)
        stale = refund.status in PENDING_STATUSES and age > STALE_AFTER
        common: dict[str, Any] = {"amount": refund.amount, "currency": cur,
                                  "refund_id": refund.id,
                                  "payment_ref": refund.payment_intent or refund.charge}
        if row is None:
            code, ref = await self._booking_of(refund)
            common["booking_code"] = code
            if refund.status in FAILED_STATUSES:
                self._found(FAILED, refund.id, f"{_what(refund)} {refund.status} at Stripe"
                            f"{_reason(refund)}; it was made outside the bot", **common)
            elif stale:
                self._found(STALE_PENDING, refund.id, f"{_what(refund)} made outside the "
                            f"bot is still {refund.status} after {_hours(age)} hours", **common)
            else:
                self._add(cur, "external", refund.amount)
                over = cur == self.policy_currency and refund.amount > self.limit
                other = cur != self.policy_currency
                detail = (f"{_what(refund)} is in Stripe but not in our ledger (made outside "
                          "the bot)")
                if over:
                    detail += (f"; above the escalation limit of "
                               f"{display(self.limit, self.policy_currency)}")
                elif other:
                    detail += (f"; in {cur}, not the policy's {self.policy_currency}, so the "
                               "escalation limit cannot be applied")
                self._found(EXTERNAL, refund.id, detail, error=over or other, **common)
            if moved and ref:
                self._book(ref, code or ref, refund, None)
            return
        self.seen.add(row.id)
        self._add(row.currency, "ledger", row.amount)
        common.update(booking_code=row.booking_code, execution_id=row.id, case_id=row.case_id)
        if cur != row.currency or refund.amount != row.amount:
            self._found(CURRENCY_MISMATCH if cur != row.currency else AMOUNT_MISMATCH,
                        refund.id, f"Stripe refunded {display(refund.amount, cur)}, our ledger "
                        f"says {display(row.amount, row.currency)}", **common)
        elif refund.status in FAILED_STATUSES:
            self._found(FAILED, refund.id,
                        f"{_what(refund)} {refund.status} at Stripe{_reason(refund)}", **common)
        elif stale:
            self._found(STALE_PENDING, refund.id, f"{_what(refund)} is still {refund.status} "
                        f"after {_hours(age)} hours", **common)
        else:
            self.counts[MATCHED] += 1
            self._add(cur, "matched", refund.amount)
        if moved:
            self._book(row.booking_id or row.booking_code, row.booking_code, refund, row.case_id)

    async def _booking_of(self, refund: StripeRefund) -> tuple[str | None, str | None]:
        """Booking code and Checkfront reference of a refund the ledger does not know."""
        md = refund.metadata
        code = md.get("booking_code") or md.get("booking")
        if code:
            return code, md.get("booking_id") or code
        refs = [r for r in (refund.payment_intent, refund.charge) if r]
        if not refs:
            return None, None
        marks = ",".join("?" for _ in refs)
        row = await self.store.fetch_one(
            "SELECT c.booking_code, c.booking_id FROM executions e JOIN cases c "
            f"ON c.id = e.case_id WHERE e.payment_ref IN ({marks}) LIMIT 1", refs)
        if row is not None:
            return row["booking_code"], row["booking_id"] or row["booking_code"]
        row = await self.store.fetch_one(
            f"SELECT booking_code FROM booking_payments WHERE transaction_id IN ({marks}) "
            "LIMIT 1", refs)
        if row is not None:
            return row["booking_code"], row["booking_code"]
        self.unknown_booking += 1
        return None, None

    # ---- Checkfront side ------------------------------------------------------------------

    def _book(self, ref: str, code: str, refund: StripeRefund, case_id: int | None) -> None:
        if not self.check_checkfront or ref in self.checked:
            return
        held = self.booked.get(ref)
        if held is not None and held.currency == refund.currency:
            held.amount += refund.amount
        elif held is None:
            self.booked[ref] = _Booked(ref, code, refund.amount, refund.currency, refund.id,
                                       case_id)

    async def _check_bookings(self) -> None:
        if not self.booked:
            return
        waiting, self.booked = list(self.booked.values()), {}
        self.checked.update(b.ref for b in waiting)
        gate = asyncio.Semaphore(CHECKFRONT_CONCURRENCY)

        async def one(booked: _Booked) -> None:
            async with gate:
                problem = await self._checkfront_problem(booked.ref, booked.amount,
                                                         booked.currency)
            if isinstance(problem, str):
                self._found(CHECKFRONT_NOT_UPDATED, booked.code, problem,
                            booking_code=booked.code, amount=booked.amount,
                            currency=booked.currency, refund_id=booked.refund_id,
                            case_id=booked.case_id)

        await asyncio.gather(*(one(b) for b in waiting))

    async def _checkfront_problem(
        self, ref: str, amount: int, currency: str
    ) -> str | bool | None:
        """What Checkfront still shows wrong about a refunded booking; None when it is up to
        date; True when Checkfront could not tell."""
        assert self.svc.checkfront is not None
        try:
            booking = (await self.svc.checkfront.get_booking_snapshot(ref))["booking"]
        except BookingNotFound:
            self.cf_missing.append(ref)
            return True
        except CheckfrontError:
            self.cf_unreadable += 1
            return True
        status = str(booking.get("status") or "").upper()
        if status in self.svc.config.cancelled_statuses:
            return None
        paid = str((booking.get("order") or {}).get("paid_total") or "0")
        return (f"Checkfront still shows booking {booking.get('code') or ref} as {status or '?'} "
                f"with {paid} paid after a refund of {display(amount, currency)}")

    # ---- ledger side ----------------------------------------------------------------------

    async def unseen_ledger(self) -> None:
        """Ledger rows of the day with a refund id that Stripe's listing did not return."""
        unseen: list[int] = []
        async with self.store.db.execute(
            "SELECT id FROM executions WHERE created_at >= ? AND created_at < ? "
            "AND stripe_refund_id IS NOT NULL AND status IN ('pending', 'succeeded', 'failed')",
            (_iso(self.start), _iso(self.end)),
        ) as cursor:
            async for row in cursor:
                if row["id"] not in self.seen:
                    unseen.append(row["id"])
        for chunk in _chunks(unseen, 500):
            marks = ",".join("?" for _ in chunk)
            rows = [_ledger(r) for r in await self.store.fetch_all(
                _LEDGER_SELECT + f"WHERE e.id IN ({marks})", chunk)]
            for row in rows:
                await self._look_up(row)
        await self._check_bookings()

    async def _look_up(self, row: _Ledger) -> None:
        assert row.refund_id is not None
        try:
            refund = await self.stripe.get_refund(row.refund_id)
        except StripeGatewayError as exc:
            if exc.kind != "not_found":
                self.notes.append(f"could not look up {row.refund_id} at Stripe ({exc.kind})")
                return
            self._add(row.currency, "ledger", row.amount)
            self._found(MISSING_IN_STRIPE, f"exec-{row.id}",
                        f"our ledger records refund {row.refund_id} of "
                        f"{display(row.amount, row.currency)} ({row.status}); Stripe has no "
                        "such refund", booking_code=row.booking_code, amount=row.amount,
                        currency=row.currency, refund_id=row.refund_id, execution_id=row.id,
                        case_id=row.case_id, payment_ref=row.payment_ref)
            return
        if self.lo <= refund.created < self.hi:
            await self._classify(refund, row)
        else:
            self.other_day += 1  # Stripe dated it the day before or after: reconciled there

    async def unsent_planned(self) -> None:
        """PlannedRefund rows that no Stripe refund answered: the day's, and older ones (within the
        lookback) now past 48 hours."""
        day_range = (_iso(self.start), _iso(self.end))
        old_range = (_iso(self.now - CARRY_LOOKBACK), _iso(self.now - STALE_AFTER))
        for row in (r for rows in self.planned.values() for r in rows):
            if not (day_range[0] <= row.created_at < day_range[1]
                    or old_range[0] <= row.created_at < old_range[1]):
                continue
            if row.called_at is not None and \
                    self.now - datetime.fromisoformat(row.called_at) < IN_FLIGHT:
                continue  # the executor may be waiting for Stripe's answer right now
            if row.called_at is None:
                age = self.now - datetime.fromisoformat(row.created_at)
                if age > STALE_AFTER:
                    self._found(STALE_PENDING, f"exec-{row.id}",
                                f"a refund of {display(row.amount, row.currency)} was planned "
                                f"{_hours(age)} hours ago and never sent to Stripe",
                                booking_code=row.booking_code, amount=row.amount,
                                currency=row.currency, execution_id=row.id,
                                case_id=row.case_id, payment_ref=row.payment_ref)
                continue
            if await self._answered_elsewhere(row):
                self.other_day += 1
                continue
            self._add(row.currency, "ledger", row.amount)
            self._found(MISSING_IN_STRIPE, f"exec-{row.id}",
                        f"the bot asked Stripe to refund {display(row.amount, row.currency)} "
                        f"on {row.payment_ref} but Stripe has no such refund",
                        booking_code=row.booking_code, amount=row.amount,
                        currency=row.currency, execution_id=row.id, case_id=row.case_id,
                        payment_ref=row.payment_ref)

    async def _answered_elsewhere(self, row: _Ledger) -> bool:
        try:
            refunds = await self.stripe.refunds_for(row.payment_ref)
        except StripeGatewayError as exc:
            self.notes.append(f"could not list refunds of {row.payment_ref} ({exc.kind})")
            return True  # unknown: do not claim it is missing
        return any(r.amount == row.amount and r.metadata.get("case_id") == str(row.case_id)
                   for r in refunds)

    async def carried_pending(self) -> None:
        """Rows of earlier days the ledger still holds as pending after 48 hours."""
        rows = await self.store.fetch_all(
            _LEDGER_SELECT + "WHERE e.status = 'pending' AND e.stripe_refund_id IS NOT NULL "
            "AND e.created_at >= ? AND e.created_at < ? ORDER BY e.id LIMIT 1000",
            (_iso(self.now - CARRY_LOOKBACK), _iso(min(self.now - STALE_AFTER, self.start))))
        for row in map(_ledger, rows):
            if row.id in self.seen or row.refund_id is None:
                continue
            try:
                refund = await self.stripe.get_refund(row.refund_id)
            except StripeGatewayError as exc:
                if exc.kind == "not_found":
                    self._found(MISSING_IN_STRIPE, f"exec-{row.id}",
                                f"our ledger records refund {row.refund_id} as pending; "
                                "Stripe has no such refund", booking_code=row.booking_code,
                                amount=row.amount, currency=row.currency,
                                refund_id=row.refund_id, execution_id=row.id,
                                case_id=row.case_id, payment_ref=row.payment_ref)
                continue
            args: dict[str, Any] = dict(
                booking_code=row.booking_code, amount=refund.amount, currency=refund.currency,
                refund_id=refund.id, execution_id=row.id, case_id=row.case_id,
                payment_ref=row.payment_ref)
            age = self.now - datetime.fromtimestamp(refund.created, UTC)
            if refund.status in PENDING_STATUSES and age > STALE_AFTER:
                self._found(STALE_PENDING, refund.id, f"{_what(refund)} is still "
                            f"{refund.status} after {_hours(age)} hours", **args)
            elif refund.status in FAILED_STATUSES:
                self._found(FAILED, refund.id, f"{_what(refund)} {refund.status} at Stripe"
                            f"{_reason(refund)}; our ledger still says pending", **args)

    # ---- problems of earlier days ---------------------------------------------------------

    async def recheck_open(self) -> None:
        rows = await self.store.fetch_all(
            "SELECT * FROM recon_discrepancies WHERE resolved_at IS NULL AND error = 1 "
            "AND day != ? ORDER BY id LIMIT ?", (self.day.isoformat(), RECHECK_LIMIT))
        for old in map(Discrepancy.from_row, rows):
            if old.key in self.found:
                continue
            still = await self._still_wrong(old)
            if still is None:
                self.resolved_ids.append(int(old.id or 0))
            else:
                if isinstance(still, str):
                    old.detail = still
                self.found[old.key] = old
                self.carried += 1

    async def _still_wrong(self, old: Discrepancy) -> str | bool | None:
        """None: resolved. A string: still wrong (new detail). True: still wrong, unchanged."""
        kind = old.kind
        if kind == CHECKFRONT_NOT_UPDATED:
            if not self.check_checkfront:
                return True
            ref = old.booking_code or ""
            if old.case_id is not None:
                row = await self.store.fetch_one("SELECT booking_id FROM cases WHERE id = ?",
                                                 (old.case_id,))
                ref = row["booking_id"] if row else ref
            return await self._checkfront_problem(ref, old.amount or 0, old.currency or "USD")
        if kind == EXTERNAL:
            row = await self.store.fetch_one(
                "SELECT 1 FROM executions WHERE stripe_refund_id = ?", (old.refund_id,))
            return None if row else True
        if kind == FAILED:
            return await self._failure_still_open(old)
        execution = None
        if old.execution_id is not None:
            row = await self.store.fetch_one(_LEDGER_SELECT + "WHERE e.id = ?",
                                             (old.execution_id,))
            execution = _ledger(row) if row else None
        if execution is not None and execution.status in ("rejected", "canceled"):
            return None  # the bot gave the row up: nothing was or will be refunded by it
        refund_id = old.refund_id or (execution.refund_id if execution else None)
        if refund_id is None:
            if execution is not None and execution.status == "planned":
                return None if await self._answered_elsewhere(execution) else True
            return True
        try:
            refund = await self.stripe.get_refund(refund_id)
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

    async def _failure_still_open(self, old: Discrepancy) -> str | bool | None:
        """A failed refund is settled once its case got its money some other way or was
        closed without it."""
        if old.case_id is None:
            return True  # made outside the bot: a person closes it
        row = await self.store.fetch_one("SELECT status FROM cases WHERE id = ?", (old.case_id,))
        if row is None:
            return True
        if row["status"] in ("refunded", "partially_refunded", "denied", "skipped"):
            later = await self.store.fetch_one(
                "SELECT 1 FROM executions WHERE case_id = ? AND status IN ('pending', "
                "'succeeded') AND id > ? LIMIT 1", (old.case_id, old.execution_id or 0))
            if later is not None or row["status"] in ("denied", "skipped"):
                return None
        return True

    # ---- bookkeeping ----------------------------------------------------------------------

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
        if self.cf_unreadable:
            self.notes.append(f"Checkfront could not be read for {self.cf_unreadable} "
                              "booking(s); they are checked again next run")
        if self.cf_missing:
            shown = ", ".join(sorted(self.cf_missing)[:10])
            more = f" and {len(self.cf_missing) - 10} more" if len(self.cf_missing) > 10 else ""
            self.notes.append(f"{len(self.cf_missing)} refunded booking(s) not found in "
                              f"Checkfront: {shown}{more}")
        if self.carried:
            self.notes.append(f"{self.carried} problem(s) from earlier days are still open")
        if self.unknown_booking:
            self.notes.append(f"{self.unknown_booking} refund(s) name no booking we know")
        ran_at = now_iso()
        day = self.day.isoformat()
        counts = {kind: self.counts.get(kind, 0) for kind in KINDS}
        totals = {c: dict(sorted(v.items())) for c, v in sorted(self.totals.items())}
        async with self.store.transaction() as tx:
            for d in self.found.values():
                await tx.execute(
                    "INSERT INTO recon_discrepancies (key, day, kind, error, booking_code, "
                    "amount, currency, refund_id, execution_id, case_id, payment_ref, detail, "
                    "first_seen, last_seen, last_run_day) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, "
                    "error = excluded.error, booking_code = excluded.booking_code, "
                    "amount = excluded.amount, currency = excluded.currency, "
                    "refund_id = excluded.refund_id, execution_id = excluded.execution_id, "
                    "case_id = excluded.case_id, payment_ref = excluded.payment_ref, "
                    "detail = excluded.detail, last_seen = excluded.last_seen, "
                    "last_run_day = excluded.last_run_day, "
                    "resolved_at = CASE WHEN resolved_by LIKE 'person:%' THEN resolved_at END, "
                    "resolved_by = CASE WHEN resolved_by LIKE 'person:%' THEN resolved_by END",
                    (d.key, d.day or day, d.kind, int(d.error), d.booking_code, d.amount,
                     d.currency, d.refund_id, d.execution_id, d.case_id, d.payment_ref,
                     d.detail, ran_at, ran_at, day))
            resolver = f"{AUTO_RESOLVER}:{day}"
            await tx.execute(
                "UPDATE recon_discrepancies SET resolved_at = ?, resolved_by = ? "
                "WHERE day = ? AND resolved_at IS NULL AND last_seen != ?",
                (ran_at, resolver, day, ran_at))
            for chunk in _chunks(self.resolved_ids, 500):
                marks = ",".join("?" for _ in chunk)
                await tx.execute(
                    "UPDATE recon_discrepancies SET resolved_at = ?, resolved_by = ? "
                    f"WHERE id IN ({marks}) AND resolved_at IS NULL",
                    (ran_at, resolver, *chunk))
            await tx.execute(
                "INSERT INTO recon_runs (day, tz, window_start, window_end, ran_at, "
                "first_ran_at, stripe_count, counts, totals, notes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET "
                "tz = excluded.tz, window_start = excluded.window_start, "
                "window_end = excluded.window_end, ran_at = excluded.ran_at, "
                "runs = recon_runs.runs + 1, stripe_count = excluded.stripe_count, "
                "counts = excluded.counts, totals = excluded.totals, notes = excluded.notes",
                (day, self.tz.key, _iso(self.start), _iso(self.end), ran_at, ran_at,
                 self.stripe_count, dumps(counts), dumps(totals), dumps(self.notes)))
            await audit.append(tx, actor="reconcile", action="reconcile.run", detail={
                "day": day, "tz": self.tz.key, "stripe_refunds": self.stripe_count,
                "counts": counts,
                "open_errors": sum(1 for d in self.found.values() if d.error)})
        found = await self.store.fetch_all(
            "SELECT * FROM recon_discrepancies WHERE last_seen = ? AND last_run_day = ? "
            "ORDER BY id", (ran_at, day))
        resolved = await self.store.fetch_all(
            "SELECT * FROM recon_discrepancies WHERE resolved_at = ? AND resolved_by = ? "
            "ORDER BY id", (ran_at, f"{AUTO_RESOLVER}:{day}"))
        return ReconRun(
            day=self.day, tz=self.tz.key, window_start=self.start, window_end=self.end,
            ran_at=ran_at, stripe_count=self.stripe_count, counts=counts, totals=totals,
            discrepancies=[Discrepancy.from_row(r) for r in found],
            resolved=[Discrepancy.from_row(r) for r in resolved], notes=list(self.notes))


# ---- reading stored runs ------------------------------------------------------------------

async def load_run(store: Store, day: date) -> ReconRun | None:
    """The stored run of a day: its figures, the problems it found (with their state now) and
    those it resolved."""
    row = await store.fetch_one("SELECT * FROM recon_runs WHERE day = ?", (day.isoformat(),))
    if row is None:
        return None
    found = await store.fetch_all(
        "SELECT * FROM recon_discrepancies WHERE day = ? OR last_run_day = ? ORDER BY id",
        (day.isoformat(), day.isoformat()))
    resolved = await store.fetch_all(
        "SELECT * FROM recon_discrepancies WHERE resolved_by = ? ORDER BY id",
        (f"{AUTO_RESOLVER}:{day.isoformat()}",))
    return ReconRun(
        day=day, tz=row["tz"], window_start=datetime.fromisoformat(row["window_start"]),
        window_end=datetime.fromisoformat(row["window_end"]), ran_at=row["ran_at"],
        stripe_count=row["stripe_count"], counts=json.loads(row["counts"]),
        totals=json.loads(row["totals"]),
        discrepancies=[Discrepancy.from_row(r) for r in found],
        resolved=[Discrepancy.from_row(r) for r in resolved], notes=json.loads(row["notes"]))


async def open_discrepancies(store: Store, limit: int = 500) -> list[Discrepancy]:
    """Every unresolved problem (informational ones left out), oldest first."""
    rows = await store.fetch_all(
        "SELECT * FROM recon_discrepancies WHERE resolved_at IS NULL AND error = 1 "
        "ORDER BY day, id LIMIT ?", (limit,))
    return [Discrepancy.from_row(r) for r in rows]


async def resolve_discrepancy(store: Store, discrepancy_id: int, *, by: str, note: str) -> bool:
    """A person closes a problem (e.g. an external refund they made on purpose). False if it
    was not open. Later runs that find it again keep it closed."""
    if not note.strip():
        raise ReconcileError("closing a discrepancy needs a note")
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "UPDATE recon_discrepancies SET resolved_at = ?, resolved_by = ? "
            "WHERE id = ? AND resolved_at IS NULL", (now_iso(), f"person:{by}", discrepancy_id))
        if cursor.rowcount != 1:
            return False
        await audit.append(tx, actor=by, action="reconcile.resolved",
                           detail={"discrepancy": discrepancy_id, "note": note})
        return True


# ---- the day's figures for the digest --------------------------------------------------------

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
    start, end = (_iso(m) for m in day_window(day, tz))
    rows = await store.fetch_all(
        "SELECT currency, COUNT(*) AS n, SUM(amount) AS total FROM executions "
        "WHERE status IN ('pending', 'succeeded') AND created_at >= ? AND created_at < ? "
        "GROUP BY currency ORDER BY currency", (start, end))
    refunds = {r["currency"]: (int(r["n"]), int(r["total"])) for r in rows}
    rows = await store.fetch_all(
        "SELECT d.decision, COUNT(DISTINCT d.case_id) AS n FROM decisions d "
        "WHERE d.decision IN ('auto_approve', 'approve') AND d.id = (SELECT MAX(x.id) FROM "
        "decisions x WHERE x.case_id = d.case_id AND x.decision IN ('auto_approve', 'approve')) "
        "AND d.case_id IN (SELECT case_id FROM executions WHERE status IN ('pending', "
        "'succeeded') AND created_at >= ? AND created_at < ?) GROUP BY d.decision", (start, end))
    decisions = {r["decision"]: int(r["n"]) for r in rows}
    row = await store.fetch_one(
        "SELECT COUNT(*) AS n FROM decisions WHERE decision = 'deny' AND decided_at >= ? "
        "AND decided_at < ?", (start, end))
    decisions["deny"] = int(row["n"]) if row else 0
    rows = await store.fetch_all(
        "SELECT c.cancelled_at, MIN(e.created_at) AS refunded_at FROM executions e "
        "JOIN cases c ON c.id = e.case_id WHERE e.status IN ('pending', 'succeeded') "
        "AND e.created_at >= ? AND e.created_at < ? GROUP BY c.id", (start, end))
    minutes = sorted(
        max(0.0, (datetime.fromisoformat(r["refunded_at"])
                  - datetime.fromisoformat(str(r["cancelled_at"]).replace("Z", "+00:00"))
                  ).total_seconds() / 60) for r in rows)
    median = round(statistics.median(minutes)) if minutes else None
    cutoff = _iso((now or utcnow()) - WAITING_AFTER)
    rows = await store.fetch_all(
        "SELECT id, booking_code, updated_at FROM cases WHERE status = 'pending_approval' "
        "AND updated_at < ? ORDER BY updated_at LIMIT 100", (cutoff,))
    waiting = [(int(r["id"]), r["booking_code"], r["updated_at"]) for r in rows]
    return DayStats(day, refunds, decisions, median, waiting)


# ---- text -----------------------------------------------------------------------------------

LABELS = {
    MATCHED: "matched", EXTERNAL: "external", MISSING_IN_STRIPE: "missing in Stripe",
    AMOUNT_MISMATCH: "amount mismatch", CURRENCY_MISMATCH: "currency mismatch",
    FAILED: "failed", STALE_PENDING: "stale pending",
    CHECKFRONT_NOT_UPDATED: "Checkfront not updated",
}


def render_text(run: ReconRun) -> str:
    """The run as plain text for the command line."""
    local = ZoneInfo(run.tz)
    start = run.window_start.astimezone(local)
    end = run.window_end.astimezone(local)
    lines = [
        f"Reconciliation for {run.day.isoformat()} ({run.tz}, {start:%Y-%m-%d %H:%M} to "
        f"{end:%Y-%m-%d %H:%M} local)",
        f"Stripe refunds in the window: {run.stripe_count}",
        "Counts: " + ", ".join(f"{LABELS[k]} {run.counts.get(k, 0)}" for k in KINDS),
    ]
    if run.totals:
        lines.append("Totals:")
        for currency, figures in run.totals.items():
            parts = ", ".join(f"{name} {_amount(v, currency)}" for name, v in figures.items())
            lines.append(f"  {currency}: {parts}")
    problems = [d for d in run.discrepancies if d.error]
    lines.append(f"Discrepancies ({len(problems)}):" if problems else "No discrepancies.")
    lines += [_line(d) for d in problems]
    info = run.informational
    if info:
        lines.append(f"Informational ({len(info)}):")
        lines += [_line(d) for d in info]
    if run.resolved:
        lines.append(f"Resolved by this run ({len(run.resolved)}):")
        lines += [_line(d) for d in run.resolved]
    if run.notes:
        lines.append("Notes:")
        lines += [f"  - {n}" for n in run.notes]
    return "\n".join(lines)


def _line(d: Discrepancy) -> str:
    state = f" [resolved {d.resolved_at[:16]}]" if d.resolved_at else ""
    since = f" (since {d.day})" if d.day else ""
    return (f"  - {LABELS.get(d.kind, d.kind)}: {d.booking_code or '?'} {d.money}{since}: "
            f"{d.detail}{state}")


def _amount(minor: int, currency: str) -> str:
    try:
        return display(minor, currency)
    except MoneyError:
        return f"{minor} {currency}"


def _what(refund: StripeRefund) -> str:
    return f"refund {refund.id} of {display(refund.amount, refund.currency)}"


def _reason(refund: StripeRefund) -> str:
    return f" ({refund.failure_reason})" if refund.failure_reason else ""


def _hours(age: timedelta) -> int:
    return int(age.total_seconds() // 3600)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for n in range(0, len(items), size):
        yield items[n:n + size]
