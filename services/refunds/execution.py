"""Executing an approved case: Stripe refunds exactly once, then Checkfront is told.

The order is what makes it safe:
1. claim the case (compare-and-set to `executing`): one executor per case;
2. re-quote when the booking changed or the quote is older than the allowed age (the booking
   is read from Checkfront once per execution, and that read also gives the write-back its
   status check; an execution the intake starts at once reuses the intake's own read);
3. plan: one `executions` row per Stripe allocation, each with an idempotency key derived
   from the case, the payment and the plan number, committed *before* any Stripe call, in
   the same transaction as the over-refund guard (`guard`): the planned amounts plus what the
   ledger holds for the booking across all its cases must fit what was paid and what Stripe
   shows unrefunded, or the rows are given up and a person decides;
4. stop before Stripe when a dispute holds a payment;
5. call Stripe with the row's key (a resumed or retried row reuses its key, so Stripe replays
   the refund it already made instead of making a second one; a key older than Stripe keeps
   keys is not trusted: the refund is looked up by its metadata first, `refund_calls`);
6. write the outcome, then the Checkfront status and note.
A crash anywhere leaves the case `executing`; `resume_all` picks it up with the same keys. An
instance that dies after an approval and before step 1 leaves the case approved under a lease
(taken with the approval): another instance's worker runs it once the lease has passed
(`claim_stale_approved`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiosqlite

from services import correlation, faults
from services.deps import Deps
from services.disputes.holds import holds_on
from services.money import display
from services.quoting.booking import BookingSnapshot
from services.quoting.booking_read import parse_snapshot
from services.quoting.quote import Quote
from services.refunds import cases, guard, ledger
from services.refunds.guard import Refusal
from services.refunds.ledger import Execution, ExecutionStatus
from services.refunds.models import (
    APPROVED,
    TRANSITIONS,
    AlreadyDecided,
    Case,
    CaseError,
    IllegalTransition,
    Status,
    StoredQuote,
    booking_key,
)
from services.refunds.refund_calls import PlannedRefund, call_stripe
from services.refunds.snapshots import BookingRead, quote_snapshot, read_booking
from services.refunds.writeback import record_written, tell_checkfront, write_back
from services.store import audit, leases
from services.store.db import Store, utcnow, write


async def execute(svc: Deps, case_id: int, *, actor: str, read: BookingRead | None = None,
                  case: Case | None = None, quote: Quote | None = None) -> Case:
    """Run an approved (or failed, for a retry) case to its outcome.

    `read`: the booking as the caller read it in this same step, moments before (the intake
    that has just opened and auto-approved the case): nothing can have changed in between, so
    it is not read again. Without it (a person's approval, a retry, a restart) the booking is
    read from Checkfront now. Either way that one read also gives the status the write-back
    checks.

    `case` and `quote`: the case and its quote as the caller's own transaction stored them
    moments before (the intake that has just opened it, with `read`); they are not read again.
    The claim is a compare-and-set on the case's revision either way, so a case changed in
    between is refused, never run twice."""
    if svc.stripe is None:
        raise CaseError("Stripe is not configured; refunds cannot be executed")
    # a case the caller's own transaction opened moments ago has no execution rows: after the
    # claim below (a compare-and-set on the revision that transaction left) none can have come
    opened = case is not None and case.id == case_id and quote is not None
    if case is None or case.id != case_id:
        case = await cases.get(svc.store, case_id)
    correlation.bind(case_id=case.id, booking_code=case.booking_code)
    if case.status in (Status.APPROVED, Status.AUTO_APPROVED, Status.FAILED):
        async with svc.store.transaction() as tx:
            case = await cases.transition(tx, case, Status.EXECUTING, actor=actor,
                                          reason="executing")
            await lease(tx, case.id)
    elif case.status != Status.EXECUTING:
        raise IllegalTransition(f"case {case_id} is {case.status}; nothing to execute")
    await svc.notifier.case_updated(case)
    try:
        case = await _run(svc, case, actor, read, quote, opened=opened)
    except Exception as exc:  # the case must never be left silently in `executing`
        case = await _finish(svc, await cases.get(svc.store, case_id), Status.FAILED,
                             f"unexpected error: {exc.__class__.__name__}: {exc}", actor)
    await svc.notifier.case_updated(case)
    return case


_EXECUTING = "status = 'executing'"
# an approval is leased by the transition that made it (`cases.transition`); one without a
# holder (made before approvals were leased) is left to the sweep and to start-up
_APPROVED_HELD = "status IN ('approved', 'auto_approved') AND claimed_by IS NOT NULL"
_LEASED = "status IN ('executing', 'approved', 'auto_approved')"


async def lease(tx: aiosqlite.Connection, case_id: int) -> None:
    """Inside the transaction that moves the case to `executing`: the case is leased to this
    instance (`services.store.leases`; no trip of its own), renewed while it runs
    (`renew_executing`), so another instance resumes it only once this one is gone."""
    me = leases.this()
    await write(tx, "UPDATE cases SET claimed_by = ?, lease_until = ? WHERE id = ?",
                (me.id, me.until(utcnow()), case_id))


async def claim_stale(store: Store, *, mine_too: bool = False,
                      now: datetime | None = None) -> list[Case]:
    """The cases `executing` whose instance is gone (the lease passed, or a process of this
    host that no longer exists; with `mine_too`, this instance's id's, as at start-up), each
    leased to this instance now, to be resumed with their keys."""
    found = await leases.claim(store, "cases", where=_EXECUTING, now=now or utcnow(),
                               mine_too=mine_too)
    return [await cases.get(store, row["id"]) for row in found]


async def claim_stale_approved(store: Store, *, now: datetime | None = None) -> list[Case]:
    """The approved cases not yet executing whose instance is gone (the lease the approval
    took passed, or its process of this host no longer exists), each leased to this instance
    now, to be run (`decisions.resume`); nothing was sent to Stripe for them yet."""
    found = await leases.claim(store, "cases", where=_APPROVED_HELD, now=now or utcnow())
    return [await cases.get(store, row["id"]) for row in found]


async def renew_executing(store: Store, now: datetime | None = None) -> int:
    """Extend this instance's leases on the cases it is executing or approved and is about to
    execute."""
    return await leases.renew_rows(store, "cases", where=_LEASED, now=now or utcnow())


async def resume_all(svc: Deps) -> list[Case]:
    """At start-up: finish every case a crash left in `executing`, with the same keys, then
    run every approval a crash left before its execution began (`approved`, `auto_approved`):
    an approval is an intent that survives. Of the cases `executing`, only those no live
    instance holds (`claim_stale`): one another instance is executing now is left to it."""
    resumed = []
    for status in (Status.EXECUTING, *APPROVED):
        found = await claim_stale(svc.store, mine_too=True) if status == Status.EXECUTING \
            else await cases.list_cases(svc.store, status, limit=10_000)
        for case in found:
            await audit.record(svc.store, actor="worker", action="execution.resumed",
                               case_id=case.id, detail={"status": str(status)})
            try:
                resumed.append(await execute(svc, case.id, actor="worker"))
            except (AlreadyDecided, IllegalTransition):  # another executor claimed it first
                continue
    return resumed


async def _run(svc: Deps, case: Case, actor: str, read: BookingRead | None,
               quote: Quote | None, *, opened: bool = False) -> Case:
    assert svc.stripe is not None
    fresh = await _fresh_snapshot(svc, case, read, quote)
    if fresh is None:  # re-quoted with another result: back to a person
        return await cases.get(svc.store, case.id)
    snapshot, status_now, quote = fresh
    plan, manual, refusal = await _plan(svc, case, snapshot, opened=opened)
    faults.reached("after_execution_row")
    if refusal is not None:   # the over-refund guard gave the planned rows up
        return await _to_person(svc, case, actor, refusal.reason)

    # a disputed payment is not refunded: Stripe refuses, or the cardholder already has it back
    holds = [hold for hold in await holds_on(svc.store, [p.payment_ref for p in plan
                                                         if not p.called]) if hold.blocks_refund]
    if holds:
        why = "; ".join(hold.reason for hold in holds)
        await _reject_rows(svc, case.id, [p for p in plan if not p.called], why,
                           action="execution.dispute_blocked")
        return await _to_person(svc, case, actor, why)

    problems: list[str] = []
    for item in plan:
        problems += await call_stripe(svc, case, item)
    if problems:
        return await _finish(svc, case, Status.FAILED, "; ".join(problems), actor)

    faults.reached("before_writeback")
    # Checkfront told, then what it took and the case's outcome in one transaction (a write-back
    # Checkfront did not take is kept for a retry in a transaction of its own, `writeback`)
    written = await tell_checkfront(svc, case, actor, manual, status_now=status_now,
                                    quote=quote)
    return await _finish(svc, case, Status.PARTIALLY_REFUNDED if manual > 0
                         else Status.REFUNDED, _outcome(case, manual), actor, written=written)


async def _fresh_snapshot(svc: Deps, case: Case, read: BookingRead | None,
                          opened: Quote | None = None
                          ) -> tuple[BookingSnapshot, str | None, Quote] | None:
    """The booking as it is now (`read`, else read from Checkfront once), with the status
    Checkfront gave, and the case's current quote (read once: the write-back's note quotes its
    clauses); re-quote if it changed or the quote went stale (None: back to a person).

    `opened`: the quote the caller's transaction stored with the case moments ago, made from
    `read` (its row's time is the case's creation time: one insert wrote both)."""
    if opened is not None and read is not None and opened.version == case.quote_version:
        stored = StoredQuote(opened.version, case.created_at, read.raw, opened)
    else:
        stored = await cases.current_quote(svc.store, case)
    raw, status_now = stored.snapshot, None
    if read is None and svc.checkfront is not None:
        read = await read_booking(svc, case.booking_id, exclude_case=case.id)
    if read is not None:
        raw, status_now = read.raw, read.status_now
    snapshot = parse_snapshot(raw, default_currency=svc.book.currency)
    age = utcnow() - datetime.fromisoformat(stored.created_at)
    changed = snapshot.fingerprint != stored.quote.booking_fingerprint
    stale = age > svc.config.quote_max_age
    if not changed and not stale:
        return snapshot, status_now, stored.quote
    if await ledger.executed(svc.store, case.id):
        # money already moved for this plan: finish it, do not re-decide
        return snapshot, status_now, stored.quote
    cancelled_at = datetime.fromisoformat(case.cancelled_at)
    _, quote = await quote_snapshot(svc, raw, cancelled_at, case.waiver)
    why = "the booking changed since it was quoted" if changed else \
        f"the quote was older than {svc.config.quote_max_age}"
    if quote.version == case.quote_version:
        return snapshot, status_now, stored.quote
    async with svc.store.transaction() as tx:
        await cases.add_quote(tx, case.id, quote, raw)
        await audit.append(tx, actor="policy", action="quote.remade", case_id=case.id,
                           detail={"why": why, "quote": quote.to_dict()})
        unchanged = quote.total_refund == (case.approved_amount or case.refund_amount) and \
            case.approved_amount == case.refund_amount
        if unchanged and not changed:
            await cases.set_quote_version(tx, case.id, quote.version)
            return snapshot, status_now, quote
        await cases.transition(
            tx, case, Status.PENDING_APPROVAL, actor="policy",
            reason=f"re-quoted because {why}: refund now "
                   f"{display(quote.total_refund, case.currency)}",
            changes={"quote_version": quote.version, "refund_amount": quote.total_refund,
                     "approved_amount": None},
        )
    return None


async def _plan(svc: Deps, case: Case, snapshot: BookingSnapshot, *, opened: bool = False
                ) -> tuple[list[PlannedRefund], int, Refusal | None]:
    """In-flight rows (same keys), plus new rows for whatever the approval still lacks; what no
    Stripe payment can cover (to be refunded by hand); and the guard's refusal, if any (then
    the rows not yet sent are given up). `opened`: the case was opened in this same step, so
    it has no rows yet (they are read again inside the planning transaction either way)."""
    assert svc.stripe is not None
    # what Stripe shows unrefunded on every payment the plan will send to, asked before the
    # exclusive section (no network call is made while it is held)
    rows = [] if opened else await ledger.for_case(svc.store.db, case.id)
    refs = {r.payment_ref for r in rows if r.status == ExecutionStatus.PLANNED
            and r.called_at is None} | {ref for ref, _ in _new_rows(case, snapshot, rows)[0]}
    left = {ref: (await svc.stripe.unrefunded_amount(ref))[0] for ref in sorted(refs)}
    refusal: Refusal | None = None
    async with svc.store.transaction() as tx:
        rows = await ledger.for_case(tx, case.id)
        new, manual = _new_rows(case, snapshot, rows)
        attempt = max((r.attempt for r in rows), default=0) + 1
        # the case's planned rows, oldest first: those it had, then those added now (read
        # inside this transaction, which holds the write lock, nothing else can change them)
        planned = [r for r in rows if r.status == ExecutionStatus.PLANNED]
        for ref, take in new:
            key = f"refund-bot:case-{case.id}:{ref}:plan-{attempt}"
            planned.append(await ledger.add_planned(
                tx, case_id=case.id, payment_ref=ref, amount=take, currency=case.currency,
                attempt=attempt, key=key))
            await audit.append(tx, actor="worker", action="execution.planned", case_id=case.id,
                               detail={"payment": ref, "amount": case.money(take),
                                       "idempotency_key": key})
        to_send = [r for r in planned if r.called_at is None]
        if to_send:
            refusal = await _guard(tx, case, snapshot, to_send, left)
    return [PlannedRefund(r.id, r.payment_ref, r.amount, r.idempotency_key, r.called_at,
                          r.attempt) for r in planned], manual, refusal


def _new_rows(case: Case, snapshot: BookingSnapshot,
              rows: list[Execution]) -> tuple[list[tuple[str, int]], int]:
    """(payment, amount) of the rows the approval still lacks, newest payment first, and what
    no Stripe payment can cover."""
    live = [r for r in rows if r.settled or r.status == ExecutionStatus.PLANNED]
    used: dict[str, int] = {}
    for r in live:
        used[r.payment_ref] = used.get(r.payment_ref, 0) + r.amount
    remaining = (case.approved_amount or 0) - sum(r.amount for r in live)
    new = []
    for payment in snapshot.payments():
        if remaining <= 0:
            break
        ref = payment.transaction.id
        room = payment.unrefunded - used.get(ref, 0)
        if not payment.refundable_via_stripe or room <= 0:
            continue
        take = min(room, remaining)
        new.append((ref, take))
        remaining -= take
    return new, max(0, remaining)


async def _guard(tx: aiosqlite.Connection, case: Case, snapshot: BookingSnapshot,
                 to_send: list[Execution], left: dict[str, int]) -> Refusal | None:
    """The over-refund guard, inside the planning transaction; a refusal gives the rows up."""
    if any(r.payment_ref not in left for r in to_send):
        refusal: Refusal | None = Refusal("the plan changed while Stripe was asked",
                                          "the refund plan changed while it was checked")
    else:
        refs = sorted({p.transaction.id for p in snapshot.payments()}
                      | {r.payment_ref for r in to_send})
        names = sorted({booking_key(case.booking_code), case.booking_code, case.booking_id})
        refusal = guard.check(case, snapshot, await ledger.for_booking(tx, names, refs),
                              to_send, left)
    if refusal is not None:
        for row in to_send:
            await ledger.reject(tx, row.id, refusal.row_reason, only_planned=True)
        await audit.append(tx, actor="worker", action="execution.over_refund_blocked",
                           case_id=case.id, detail={"why": refusal.row_reason})
    return refusal


async def _reject_rows(svc: Deps, case_id: int, plan: list[PlannedRefund], why: str, *,
                       action: str) -> None:
    async with svc.store.transaction() as tx:
        for item in plan:
            await ledger.reject(tx, item.row_id, why, only_planned=True)
        await audit.append(tx, actor="worker", action=action, case_id=case_id,
                           detail={"why": why})


async def _to_person(svc: Deps, case: Case, actor: str, reason: str) -> Case:
    async with svc.store.transaction() as tx:
        return await cases.transition(tx, await cases.get(svc.store, case.id),
                                      Status.PENDING_APPROVAL, actor=actor, reason=reason,
                                      changes={"approved_amount": None})


async def _finish(svc: Deps, case: Case, status: Status, reason: str, actor: str, *,
                  written: dict[str, Any] | None = None) -> Case:
    """The case's outcome; `written`: what Checkfront took (`tell_checkfront`), recorded in the
    same transaction. `case` is the case as this execution last saw it (its claim): the
    transition is a compare-and-set on it, and only when the case changed since is it read
    again (inside the transaction) and moved from where it now is."""
    async with svc.store.transaction() as tx:
        if written is not None:
            await record_written(tx, case.id, written)
        try:
            return await cases.transition(tx, case, status, actor=actor, reason=reason)
        except (AlreadyDecided, IllegalTransition):
            current = await cases.get(svc.store, case.id)
            return await cases.transition(tx, current, status, actor=actor, reason=reason)


async def apply_refund_event(svc: Deps, refund: dict[str, Any], event_type: str) -> Case | None:
    """A Stripe refund event: update our execution row; a refund that failed fails its case,
    and a failed case whose planned refunds all succeeded after all (the answer to our call was
    lost) is closed, and Checkfront told."""
    refund_id = str(refund.get("id") or "")
    row = await _execution_for(svc, refund)
    if row is None:
        await audit.record(svc.store, actor="stripe", action="stripe.external_refund",
                           detail={"event": event_type, "refund_id": refund_id,
                                   "amount": refund.get("amount"),
                                   "currency": refund.get("currency"),
                                   "metadata": refund.get("metadata")})
        return None
    status = str(refund.get("status") or row.status)
    mapped = ledger.from_stripe(status)
    reason = refund.get("failure_reason")
    closed: tuple[Status, int] | None = None
    async with svc.store.transaction() as tx:
        case = await cases.get(svc.store, row.case_id)
        await ledger.record_outcome(tx, row.id, mapped, reason)
        await audit.append(tx, actor="stripe", action="stripe.refund_event", case_id=case.id,
                           detail={"event": event_type, "refund_id": refund_id,
                                   "status": status, "failure_reason": reason})
        changed = (mapped == ExecutionStatus.FAILED
                   and Status.FAILED in TRANSITIONS[case.status])
        if changed:
            case = await cases.transition(
                tx, case, Status.FAILED, actor="stripe",
                reason=f"Stripe refund {refund_id} {status}: {reason or 'no reason given'}")
        elif case.status == Status.FAILED:
            closed = _settled_by_events(case, await ledger.for_case(tx, case.id))
            if closed is not None:
                case = await cases.transition(tx, case, closed[0], actor="stripe",
                                              reason=_outcome(case, closed[1]))
    if closed is not None:
        await write_back(svc, case, "stripe", closed[1])
    if changed or closed is not None or mapped != row.status:
        await svc.notifier.case_updated(case)
    return case


def _settled_by_events(case: Case, rows: list[Execution]) -> tuple[Status, int] | None:
    """(the case's outcome, what is left to refund by hand) when every refund it planned
    succeeded: its latest plan went out whole and no row still waits or failed; else None."""
    live = [r for r in rows if r.status in ledger.LIVE]
    latest = max((r.attempt for r in rows), default=0)
    if not live or any(r.status != ExecutionStatus.SUCCEEDED for r in live) or any(
            r.attempt == latest and r.status not in ledger.LIVE for r in rows):
        return None
    manual = max(0, (case.approved_amount or 0) - sum(r.amount for r in live))
    return (Status.PARTIALLY_REFUNDED if manual else Status.REFUNDED), manual


def _outcome(case: Case, manual: int) -> str:
    if manual > 0:
        return (f"{display(manual, case.currency)} must be refunded by hand "
                "(not paid through Stripe)")
    return "refunded through Stripe"


async def _execution_for(svc: Deps, refund: dict[str, Any]) -> Execution | None:
    """Our execution row for a Stripe refund: by refund id, or (when the event overtook the
    answer to our own call) by the case id in its metadata, its payment and its amount."""
    row = await ledger.by_refund_id(svc.store, str(refund.get("id") or ""))
    case_id = str((refund.get("metadata") or {}).get("case_id") or "")
    if row is not None or not case_id.isdigit():
        return row
    refs = [r for r in (refund.get("payment_intent"), refund.get("charge")) if r]
    for ref in refs:
        row = await ledger.claim_unanswered(svc.store, int(case_id), ref, refund.get("amount"),
                                            refund.get("id"))
        if row is not None:
            return row
    return None
