"""A whole departure cancelled and refunded at once (`/refund departure`).

A run is planned by `departure_plan.plan` (its bookings found and quoted, stored `planned`);
this module holds the run as stored and takes it from there.

`start` is the one click: a compare-and-set from `planned` to `running`, so a second click is
refused and changes nothing. `run` then takes each booking through the refund path every other
case takes, one after the other, each step stored with its audit row before the next:
1. `waiting`: the booking is cancelled in Checkfront (status `STATUS_AFTER_REFUND`, customer
   not notified), so its case is quoted from the cancelled booking and its execution sees no
   change to re-quote for;
2. `cancelled`: its case is opened with the waiver (`opening.open_case`, source
   `departure-<run>`: one open case per booking; a booking with a case of its own or another
   run's is skipped, never opened twice), then approved by whoever clicked, and executed
   (`decisions`): the case's own idempotency keys, the over-refund guard and the dispute
   stop apply as to any case;
3. its outcome: `done` (refunded, or nothing to refund), `person` (a dispute holds a payment,
   a part must be refunded by hand, the quote came out above the plan), `skipped`, or
   `failed` (listed with Retry; the others go on).

A crash leaves the run `running` with each booking's step stored; `resume` (at start-up, after
the worker resumed every case left executing or approved) continues it: a case a crash left
between its opening and the step's row is found by its source, so no booking is opened or
refunded twice and none is forgotten. `on_change` is told the run's id after every step (the
bot redraws the card through its paced outbox).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.deps import Deps
from services.disputes.holds import flags_now
from services.errors import DomainError
from services.money import display
from services.refunds import cases, decisions
from services.refunds.execution import execute
from services.refunds.models import OPEN, AlreadyDecided, Case, IllegalTransition, Status
from services.refunds.opening import open_case
from services.refunds.snapshots import read_booking
from services.store import audit
from services.store.db import Row, Store, now_iso, utcnow

log = logging.getLogger(__name__)

OnChange = Callable[[int], Awaitable[None]]
ACTIVE_STEPS = ("waiting", "cancelled")     # what a run still has to do
SOURCE_PREFIX = "departure-"
EXECUTING_WAIT = timedelta(seconds=30)       # a case another executor runs, waited for


class DepartureError(DomainError):
    """A departure request that cannot be honoured; the message is safe to show a user."""


@dataclass(frozen=True)
class RunBooking:
    booking_code: str
    booking_id: str
    position: int
    amount: int
    amount_without_waiver: int
    attention: str | None
    step: str
    case_id: int | None
    error: str | None

    @classmethod
    def from_row(cls, row: Row) -> RunBooking:
        return cls(row["booking_code"], row["booking_id"], row["position"], row["amount"],
                   row["amount_without_waiver"], row["attention"], row["step"],
                   row["case_id"], row["error"])


@dataclass(frozen=True)
class Run:
    id: int
    item: str
    starts_at: str
    waiver: str | None
    currency: str
    total: int
    total_without_waiver: int
    state: str
    requested_by: str
    started_by: str | None
    cancelled_at: str | None
    channel: str | None
    ts: str | None
    bookings: tuple[RunBooking, ...] = ()

    @property
    def source(self) -> str:
        return f"{SOURCE_PREFIX}{self.id}"

    def count(self, step: str) -> int:
        return sum(1 for b in self.bookings if b.step == step)

    @property
    def attention(self) -> list[RunBooking]:
        return [b for b in self.bookings if b.attention]


def run_taking_query(booking_code: str) -> tuple[str, tuple[Any, ...]]:
    """The running departure that is cancelling this booking and will open its case: its id
    in the one row, if any. Its cancellation comes back as Checkfront's webhook, which must not
    open a case of its own (without the run's waiver) between the run's cancel and its case;
    the webhook's handler reads this with the booking's latest case, in one trip."""
    return ("SELECT r.id FROM departure_bookings b JOIN departure_runs r ON r.id = b.run_id "
            "WHERE b.booking_code = ? AND r.state = 'running' "
            "AND b.step IN ('waiting', 'cancelled', 'failed') LIMIT 1",
            (booking_code.strip().upper(),))


async def get_run(svc: Deps, run_id: int) -> Run:
    return await load_run(svc.store, run_id)


async def load_run(store: Store, run_id: int) -> Run:
    """The run and its bookings as stored; DepartureError when there is none."""
    row = await store.fetch_one("SELECT * FROM departure_runs WHERE id = ?", (run_id,))
    if row is None:
        raise DepartureError(f"There is no departure run {run_id}.")
    rows = await store.fetch_all(
        "SELECT * FROM departure_bookings WHERE run_id = ? ORDER BY position", (run_id,))
    return Run(row["id"], row["item"], row["starts_at"], row["waiver"], row["currency"],
               row["total"], row["total_without_waiver"], row["state"], row["requested_by"],
               row["started_by"], row["cancelled_at"], row["channel"], row["ts"],
               tuple(RunBooking.from_row(r) for r in rows))


async def remember_card(store: Store, run_id: int, channel: str, ts: str) -> None:
    """The run's card is this message (updated in place from now on)."""
    async with store.transaction() as tx:
        await tx.execute("UPDATE departure_runs SET channel = ?, ts = ? WHERE id = ?",
                         (channel, ts, run_id))


# --- the click and the run -----------------------------------------------------------------

async def start(svc: Deps, run_id: int, *, by: str) -> Run:
    """Claim the run for `by` (planned → running); AlreadyDecided when it was started (or
    finished) before: a second click changes nothing."""
    async with svc.store.transaction(durable=True) as tx:   # a person's decision
        cursor = await tx.execute(
            "UPDATE departure_runs SET state = 'running', started_by = ?, cancelled_at = ?, "
            "updated_at = ? WHERE id = ? AND state = 'planned'",
            (by, now_iso(), now_iso(), run_id))
        if cursor.rowcount != 1:
            row = await svc.store.fetch_one(
                "SELECT started_by, state FROM departure_runs WHERE id = ?", (run_id,))
            if row is None:
                raise DepartureError(f"There is no departure run {run_id}.")
            raise AlreadyDecided(f"already started by {row['started_by']}",
                                 decided_by=row["started_by"], outcome=row["state"])
        await audit.append(tx, actor=by, action="departure.started", detail={"run": run_id})
    return await get_run(svc, run_id)


_LOCKS: dict[tuple[int, int], asyncio.Lock] = {}


def _lock(svc: Deps, run_id: int) -> asyncio.Lock:
    """One pass over a run at a time in this process (a resume and a retry never overlap)."""
    return _LOCKS.setdefault((id(svc.store), run_id), asyncio.Lock())


async def run(svc: Deps, run_id: int, on_change: OnChange) -> Run:
    """Take every booking the run still has to do through its steps; the run as it ended."""
    async with _lock(svc, run_id):
        current = await get_run(svc, run_id)
        if current.state != "running":
            return current
        for booking in current.bookings:
            if booking.step in ACTIVE_STEPS:
                await _advance(svc, current, booking, retrying=False)
                await on_change(run_id)
        return await _finish_if_done(svc, run_id, on_change)


async def resume(svc: Deps, on_change: OnChange) -> list[int]:
    """At start-up: continue every run a stop or a crash left `running`; their ids."""
    rows = await svc.store.fetch_all(
        "SELECT id FROM departure_runs WHERE state = 'running' ORDER BY id")
    for row in rows:
        await audit.record(svc.store, actor="worker", action="departure.resumed",
                           detail={"run": row["id"]})
        await run(svc, int(row["id"]), on_change)
    return [int(r["id"]) for r in rows]


async def retry(svc: Deps, run_id: int, booking_code: str, *, by: str,
                on_change: OnChange) -> RunBooking:
    """A person retries one failed booking of a finished run: from the step it failed at."""
    async with _lock(svc, run_id):
        current = await get_run(svc, run_id)
        booking = next((b for b in current.bookings
                        if b.booking_code == booking_code.strip().upper()), None)
        if booking is None:
            raise DepartureError(f"Booking {booking_code[:40]} is not on that departure.")
        if current.state != "done":
            raise DepartureError("That departure is still being refunded; retry when it ends.")
        if booking.step != "failed":
            raise DepartureError(f"Booking {booking.booking_code} did not fail; nothing to "
                                 "retry.")
        opened_or_cancelled = booking.case_id is not None or (
            booking.error or "").startswith("opening")
        step = "cancelled" if opened_or_cancelled else "waiting"
        booking = await _set_step(svc, current, booking, step, actor=by, error=None)
        await on_change(run_id)
        await _advance(svc, current, booking, retrying=True, actor=by)
        await on_change(run_id)
        ended = await get_run(svc, run_id)
        return next(b for b in ended.bookings if b.booking_code == booking.booking_code)


async def _finish_if_done(svc: Deps, run_id: int, on_change: OnChange) -> Run:
    current = await get_run(svc, run_id)
    if current.state == "running" and not any(b.step in ACTIVE_STEPS
                                              for b in current.bookings):
        counts = {step: current.count(step) for step in
                  ("done", "person", "skipped", "failed") if current.count(step)}
        async with svc.store.transaction() as tx:
            await tx.execute("UPDATE departure_runs SET state = 'done', updated_at = ? "
                             "WHERE id = ? AND state = 'running'", (now_iso(), run_id))
            await audit.append(tx, actor="worker", action="departure.finished",
                               detail={"run": run_id, **counts})
        await on_change(run_id)
        current = await get_run(svc, run_id)
    return current


async def _set_step(svc: Deps, current: Run, booking: RunBooking, step: str, *,
                    actor: str = "worker", case_id: int | None = None,
                    error: str | None = None, attention: str | None = None) -> RunBooking:
    """One booking's step and its audit row, in one transaction."""
    case_id = case_id if case_id is not None else booking.case_id
    attention = attention if attention is not None else booking.attention
    async with svc.store.transaction() as tx:
        await tx.execute(
            "UPDATE departure_bookings SET step = ?, case_id = ?, error = ?, attention = ?, "
            "updated_at = ? WHERE run_id = ? AND booking_code = ?",
            (step, case_id, error, attention, now_iso(), current.id, booking.booking_code))
        await audit.append(tx, actor=actor, action="departure.step", case_id=case_id,
                           detail={"run": current.id, "booking": booking.booking_code,
                                   "step": step, "error": error})
    return RunBooking(booking.booking_code, booking.booking_id, booking.position,
                      booking.amount, booking.amount_without_waiver, attention, step,
                      case_id, error)


async def _advance(svc: Deps, current: Run, booking: RunBooking, *, retrying: bool,
                   actor: str | None = None) -> None:
    """One booking from where it stands to its outcome; a failure is kept on its row, never
    raised: the next booking goes on."""
    actor = actor or current.started_by or "worker"
    stage = "cancelling"
    try:
        if booking.step == "waiting":
            mine = await _case_of_run(svc, current, booking)
            if mine is None and await _other_case(svc, current, booking):
                return
            if mine is None:
                await _cancel_in_checkfront(svc, booking)
            booking = await _set_step(svc, current, booking, "cancelled",
                                      case_id=mine.id if mine else None)
        stage = "opening"
        if booking.case_id is None:
            mine = await _case_of_run(svc, current, booking)
            if mine is None:
                if await _other_case(svc, current, booking):
                    return
                mine = await _open(svc, current, booking, actor)
                if mine is None:
                    return
            booking = await _set_step(svc, current, booking, "cancelled", case_id=mine.id)
        stage = "refunding"
        assert booking.case_id is not None
        await _settle(svc, current, booking, await cases.get(svc.store, booking.case_id),
                      actor=actor, retrying=retrying)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:   # this booking failed; the others go on
        log.warning("departure %s: booking %s failed while %s: %s", current.id,
                    booking.booking_code, stage, exc.__class__.__name__)
        text = str(exc).replace("\n", " ")[:200]
        await _set_step(svc, current, booking, "failed",
                        error=f"{stage}: {exc.__class__.__name__}: {text}")


async def _case_of_run(svc: Deps, current: Run, booking: RunBooking) -> Case | None:
    """The case this run opened for the booking (a crash may have come before its step row)."""
    if booking.case_id is not None:
        return await cases.get(svc.store, booking.case_id)
    latest = await cases.latest_for_booking(svc.store, booking.booking_code)
    return latest if latest is not None and latest.source == current.source else None


async def _other_case(svc: Deps, current: Run, booking: RunBooking) -> bool:
    """Skip (True) a booking with an open case of its own, or one another run opened."""
    latest = await cases.latest_for_booking(svc.store, booking.booking_code)
    if latest is None or latest.source == current.source or not (
            latest.status in OPEN or latest.source.startswith(SOURCE_PREFIX)):
        return False
    await _set_step(svc, current, booking, "skipped", case_id=latest.id,
                    attention=f"has case #{latest.id} of its own ({latest.status.value}): "
                              "not opened twice")
    return True


async def _cancel_in_checkfront(svc: Deps, booking: RunBooking) -> None:
    """Set the cancelled status, customer not notified (setting it again is harmless)."""
    assert svc.checkfront is not None
    status = cancel_status(svc)
    await svc.checkfront.update_status(booking.booking_id, status, notify=False)
    await audit.record(svc.store, actor="worker", action="checkfront.cancelled",
                       detail={"booking": booking.booking_code, "status": status})


def cancel_status(svc: Deps) -> str:
    """The status a departure's bookings are cancelled with: `STATUS_AFTER_REFUND` when it is
    one of the cancelled statuses (the default, STOP), else the first of those."""
    after = svc.config.status_after_refund.upper()
    statuses = svc.config.cancelled_statuses
    return after if after in statuses or not statuses else sorted(statuses)[0]


async def _open(svc: Deps, current: Run, booking: RunBooking, actor: str) -> Case | None:
    read = await read_booking(svc, booking.booking_id)
    assert current.cancelled_at is not None
    opened = await open_case(svc, read.raw, cancelled_at=datetime.fromisoformat(
        current.cancelled_at), source=current.source, requested_by=actor,
        waiver=current.waiver)
    if not opened.created:   # opened meanwhile by someone else: theirs
        await _set_step(svc, current, booking, "skipped", case_id=opened.case.id,
                        attention=f"has case #{opened.case.id} of its own: not opened twice")
        return None
    if opened.case.status == Status.AUTO_APPROVED:
        await decisions.run_if_auto_approved(svc, opened.case, read=read, quote=opened.quote)
    return await cases.get(svc.store, opened.case.id)


async def _settle(svc: Deps, current: Run, booking: RunBooking, case: Case, *, actor: str,
                  retrying: bool) -> None:
    """Approve and execute the case as it stands; record the booking's outcome."""
    deadline = utcnow() + EXECUTING_WAIT
    while case.status == Status.EXECUTING and utcnow() < deadline:   # another executor's
        await asyncio.sleep(0.2)
        case = await cases.get(svc.store, case.id)
    if case.status == Status.EXECUTING:
        return   # still running elsewhere: the step stays, a resume looks again
    if case.status == Status.PENDING_APPROVAL:
        held = await _held(svc, case)
        if held:
            await _set_step(svc, current, booking, "person", attention=held)
            return
        if case.refund_amount > booking.amount:
            await _set_step(svc, current, booking, "person", attention=(
                f"the quote came out at {display(case.refund_amount, case.currency)}, "
                f"above the {display(booking.amount, case.currency)} planned"))
            return
        case = await _approve(svc, case, actor)
    elif case.status in (Status.APPROVED, Status.AUTO_APPROVED) or (
            retrying and case.status == Status.FAILED):
        case = await _execute(svc, case, actor)
    await _record_outcome(svc, current, booking, case)


async def _held(svc: Deps, case: Case) -> str | None:
    """Why the click does not approve this case of the run: a dispute holding one of its
    payments (a person decides). A part paid outside Stripe does not stop it: the Stripe part
    is refunded and the rest is left to a person (`partially_refunded`)."""
    quote = await flags_now(svc.store, (await cases.current_quote(svc.store, case)).quote)
    held = [flag.reason for flag in quote.risk_flags if flag.code == "payment_disputed"]
    return "; ".join(held) or None


async def _approve(svc: Deps, case: Case, actor: str) -> Case:
    try:
        return await decisions.approve(svc, case.id, by=actor)
    except (AlreadyDecided, IllegalTransition):   # decided or claimed meanwhile
        return await cases.get(svc.store, case.id)


async def _execute(svc: Deps, case: Case, actor: str) -> Case:
    try:
        return await execute(svc, case.id, actor=actor)
    except (AlreadyDecided, IllegalTransition):   # its own executor claimed it first
        return await cases.get(svc.store, case.id)


async def _record_outcome(svc: Deps, current: Run, booking: RunBooking, case: Case) -> None:
    status = case.status
    if status in (Status.REFUNDED, Status.REFUNDED_BY_HAND, Status.DENIED, Status.SKIPPED):
        await _set_step(svc, current, booking, "done")
    elif status == Status.FAILED:
        await _set_step(svc, current, booking, "failed",
                        error=f"refunding: {(case.status_reason or 'failed')[:200]}")
    elif status == Status.PARTIALLY_REFUNDED:
        await _set_step(svc, current, booking, "person", attention=booking.attention or (
            case.status_reason or "part of it must be refunded by hand"))
    elif status == Status.PENDING_APPROVAL:
        await _set_step(svc, current, booking, "person", attention=booking.attention or (
            case.status_reason or "waits for a person"))
    # approved or executing: left as it is, a resume looks again
