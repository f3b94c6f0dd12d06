"""The daily three-way reconciliation: Stripe's refunds, our ledger, Checkfront's bookings.

One run covers one business day (see `days`). Stripe's refunds created in that window are
streamed page by page and matched, a batch at a time, against our `executions` rows: by Stripe
refund id first, then by payment + amount against rows still `planned` (the bot called Stripe
but never heard back). Only counters, totals, the discrepancies and the ids of matched ledger
rows are kept, so memory stays flat however many refunds the day had. The gateway reads the
listing's pages as plain JSON, one page ahead of this loop, so Stripe (or the network) works
on the next page while this one is matched. Ledger rows of the day the listing did not return
are looked up one refund each, a few at a time, and settled in the ledger's order. Refunds an
approver recorded as made by hand that day (`services.refunds.manual`) are counted in the day's
`manual` total and never looked for in Stripe.

With `settle=True` (by default when the deployment says so: `SETTLEMENT_RECONCILE`) the run
also settles the day (`settlement`): each refund's balance transaction and payout,
`refund_failure` reversals, the fees lost to refunds; its problems are recorded with the others
and its figures are the run's `settlement`.

What a run keeps while it goes (counters, totals, the problems) and stores at the end is
`day_tally`; the kinds of discrepancy and how a run is stored are described in `runs`; the
queries of our ledger are in `services.refunds.ledger`, the Checkfront look-ups in
`booking_check`, whether a problem of an earlier day still stands in `recheck` (a settlement
problem: `settlement`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_records import StripeRefund
from services.deps import Deps
from services.finance.booking_check import RefundedBooking
from services.finance.day_tally import DayTally
from services.finance.recheck import still_wrong
from services.finance.runs import (
    AMOUNT_MISMATCH,
    CHECKFRONT_NOT_UPDATED,
    CURRENCY_MISMATCH,
    EXTERNAL,
    FAILED,
    MATCHED,
    MISSING_IN_STRIPE,
    PENDING_STATUSES,
    SETTLEMENT_KINDS,
    STALE_PENDING,
    ReconcileError,
    ReconRun,
    open_from_other_days,
)
from services.finance.settlement import settle_day, still_open
from services.money import display
from services.refunds import ledger, manual, snapshots
from services.refunds.ledger import ExecutionWithBooking
from services.store.db import iso_utc, utcnow

MANUAL = "manual"                     # the day's figure of refunds recorded as made by hand
STALE_AFTER = timedelta(hours=48)
CARRY_LOOKBACK = timedelta(days=30)   # how far back ledger rows still pending are followed
IN_FLIGHT = timedelta(hours=1)        # a planned row called this recently may still be answered
LOOKUPS_AT_ONCE = 8                   # Stripe look-ups of one refund each in flight at once
LOOKUP_BATCH = 100                    # ledger rows whose look-ups are gathered together
RECHECK_LIMIT = 500                   # open problems of earlier days checked again per run
_NO_AGE = timedelta(0)
FAILED_STATUSES = ("failed", "canceled")


async def reconcile_day(
    svc: Deps,
    day: date,
    tz: ZoneInfo,
    *,
    now: datetime | None = None,
    batch_size: int = 500,
    check_checkfront: bool = True,
    settle: bool | None = None,
    payout_delay: timedelta | None = None,
) -> ReconRun:
    """Reconcile one business day and store the result (a re-run of a day replaces it);
    `settle`: match the day's refunds to Stripe's balance transactions and payouts too (by
    default as the deployment says, `RefundConfig.settlement`), flagging refunds in no payout
    after `payout_delay` (`RefundConfig.payout_delay`)."""
    if svc.stripe is None:
        raise ReconcileError("Stripe is not configured; cannot reconcile")
    work = _DayReconciliation(svc, day, tz, now or utcnow(), batch_size, check_checkfront)
    await work.stream_stripe()
    await work.unseen_ledger()
    await work.unsent_planned()
    await work.carried_pending()
    if svc.config.settlement if settle is None else settle:
        await work.settle(svc.config.payout_delay if payout_delay is None else payout_delay)
    await work.recheck_open()
    await work.by_hand()
    return await work.save()


class _DayReconciliation(DayTally):
    """One day's run: the checks, each adding to the tally (`DayTally`) what it found."""

    # ---- Stripe side, streamed -------------------------------------------------------------

    async def stream_stripe(self) -> None:
        for row in await ledger.planned_unsent(self.store):
            self.planned.setdefault(row.payment_ref, []).append(row)
        batch: list[StripeRefund] = []
        async for refund in self.stripe.iter_refunds(created_gte=self.lo, created_lt=self.hi):
            batch.append(refund)
            if len(batch) >= self.batch_size:
                await self._batch(batch)
                batch = []
        if batch:
            await self._batch(batch)
        if not self.bookings.enabled:
            self.notes.append("Checkfront was not checked in this run")

    async def _batch(self, refunds: list[StripeRefund]) -> None:
        by_id = await ledger.rows_with_refund_ids(self.store, [r.id for r in refunds])
        for refund in refunds:
            self.stripe_count += 1
            row = by_id.get(refund.id) or self._take_planned(refund)
            await self._classify(refund, row)
        await self._check_bookings()

    def _take_planned(self, refund: StripeRefund) -> ExecutionWithBooking | None:
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

    async def _classify(self, refund: StripeRefund, row: ExecutionWithBooking | None) -> None:
        cur = refund.currency
        status = refund.status
        moved = status not in FAILED_STATUSES
        self._add(cur, "refunded" if moved else "failed", refund.amount)
        pending = status in PENDING_STATUSES  # only a pending refund's age matters
        age = self.now - datetime.fromtimestamp(refund.created, UTC) if pending else _NO_AGE
        stale = pending and age > STALE_AFTER
        if row is not None and cur == row.currency and refund.amount == row.amount \
                and moved and not stale:
            self.seen.add(row.id)   # the common case, matched, without building a discrepancy
            per = self.totals[cur]   # `refunded` was just added to it
            amount = refund.amount
            per["ledger"] = per.get("ledger", 0) + amount
            per["matched"] = per.get("matched", 0) + amount
            self.counts[MATCHED] += 1
            self.bookings.add(row.booking_id or row.booking_code, row.booking_code, refund,
                              row.case_id)
            return
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
                self.bookings.add(ref, code or ref, refund, None)
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
            self.bookings.add(row.booking_id or row.booking_code, row.booking_code, refund,
                              row.case_id)

    async def _booking_of(self, refund: StripeRefund) -> tuple[str | None, str | None]:
        """Booking code and Checkfront reference of a refund the ledger does not know."""
        md = refund.metadata
        code = md.get("booking_code") or md.get("booking")
        if code:
            return code, md.get("booking_id") or code
        refs = [r for r in (refund.payment_intent, refund.charge) if r]
        if not refs:
            return None, None
        known = await ledger.booking_refunded_on(self.store, refs)
        if known is not None:
            return known
        code = await snapshots.booking_paid_by(self.store, refs)
        if code is not None:
            return code, code
        self.unknown_booking += 1
        return None, None

    async def _check_bookings(self) -> None:
        await self.bookings.check_waiting(self._not_updated)

    def _not_updated(self, booked: RefundedBooking, problem: str) -> None:
        self._found(CHECKFRONT_NOT_UPDATED, booked.code, problem, booking_code=booked.code,
                    amount=booked.amount, currency=booked.currency,
                    refund_id=booked.refund_id, case_id=booked.case_id)

    # ---- ledger side ----------------------------------------------------------------------

    async def unseen_ledger(self) -> None:
        """Ledger rows of the day with a refund id that Stripe's listing did not return, looked
        up at Stripe `LOOKUPS_AT_ONCE` at a time and settled in the ledger's order."""
        unseen = sorted([execution_id async for execution_id in
                         ledger.ids_with_refund_between(self.store, self.start, self.end)
                         if execution_id not in self.seen])   # the ledger's order: by id
        rows: list[ExecutionWithBooking] = []
        async for row in ledger.rows_with_ids(self.store, unseen):
            rows.append(row)
            if len(rows) >= LOOKUP_BATCH:
                await self._look_up(rows)
                rows = []
        await self._look_up(rows)
        await self._check_bookings()

    async def _look_up(self, rows: list[ExecutionWithBooking]) -> None:
        gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)

        async def one(refund_id: str) -> StripeRefund | StripeGatewayError:
            async with gate:
                try:
                    return await self.stripe.get_refund(refund_id)
                except StripeGatewayError as exc:
                    return exc

        answers = await asyncio.gather(*(one(str(row.refund_id)) for row in rows))
        for row, answer in zip(rows, answers, strict=True):
            await self._settle(row, answer)

    async def _settle(self, row: ExecutionWithBooking,
                      answer: StripeRefund | StripeGatewayError) -> None:
        if isinstance(answer, StripeGatewayError):
            exc = answer
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
        refund = answer
        if self.lo <= refund.created < self.hi:
            await self._classify(refund, row)
        else:
            self.other_day += 1  # Stripe dated it the day before or after: reconciled there

    async def unsent_planned(self) -> None:
        """PlannedRefund rows that no Stripe refund answered: the day's, and older ones (within the
        lookback) now past 48 hours."""
        day_range = (iso_utc(self.start), iso_utc(self.end))
        old_range = (iso_utc(self.now - CARRY_LOOKBACK), iso_utc(self.now - STALE_AFTER))
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

    async def _answered_elsewhere(self, row: ExecutionWithBooking) -> bool:
        try:
            refunds = await self.stripe.refunds_for(row.payment_ref)
        except StripeGatewayError as exc:
            self.notes.append(f"could not list refunds of {row.payment_ref} ({exc.kind})")
            return True  # unknown: do not claim it is missing
        return any(r.amount == row.amount and r.metadata.get("case_id") == str(row.case_id)
                   for r in refunds)

    async def carried_pending(self) -> None:
        """Rows of earlier days the ledger still holds as pending after 48 hours."""
        rows = await ledger.pending_between(self.store, self.now - CARRY_LOOKBACK,
                                            min(self.now - STALE_AFTER, self.start))
        for row in rows:
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

    # ---- settlement: balance transactions and payouts ----------------------------------------

    async def settle(self, payout_delay: timedelta) -> None:
        settled = await settle_day(self.stripe, self.store, self.day, (self.start, self.end),
                                   self.now, payout_delay=payout_delay)
        for found in settled.found:
            self._found(found.kind, found.subject, found.detail, error=found.error,
                        **found.fields)
        self.notes += settled.notes
        self.settlement = settled

    # ---- refunds made by hand --------------------------------------------------------------

    async def by_hand(self) -> None:
        """Refunds an approver recorded as made by hand this day: counted as `manual` in the
        day's totals, never looked for in Stripe (they are not there by design)."""
        done = await manual.between(self.store, self.start, self.end)
        for refund in done:
            self._add(refund.currency, MANUAL, refund.amount)
        if done:
            self.notes.append(f"{len(done)} refund(s) were made by hand (recorded with Mark "
                              "refunded), not through Stripe")

    # ---- problems of earlier days ---------------------------------------------------------

    async def recheck_open(self) -> None:
        for old in await open_from_other_days(self.store, self.day, RECHECK_LIMIT):
            if old.key in self.found:
                continue
            if old.kind in SETTLEMENT_KINDS:
                still: str | bool | None = await still_open(self.store, old, self.settlement)
            else:
                still = await still_wrong(self.store, self.stripe, self.bookings, old,
                                          self._answered_elsewhere)
            if still is None:
                self.resolved_ids.append(int(old.id or 0))
            else:
                if isinstance(still, str):
                    old.detail = still
                self.found[old.key] = old
                self.carried += 1


def _what(refund: StripeRefund) -> str:
    return f"refund {refund.id} of {display(refund.amount, refund.currency)}"


def _reason(refund: StripeRefund) -> str:
    return f" ({refund.failure_reason})" if refund.failure_reason else ""


def _hours(age: timedelta) -> int:
    return int(age.total_seconds() // 3600)
