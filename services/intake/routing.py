"""What each stored webhook event does: a table from source and event type to the service
call that handles it, `process`, which runs one event and records how it ended, and
`ordering_keys`, what an event may touch (the worker runs events that share one in order).

Processing is idempotent per event row: an event already marked processed is not run again,
and every handler below is safe to run twice for the same event.

How it ends: processed with the handler's outcome; processed with "error: ..." when the event
itself is wrong (a booking that cannot be quoted, a payment without its ids: audited as
`webhook.failed`); kept for a retry when Checkfront or Stripe was unavailable (past the bound
the event is failed and a person is shown it, with Retry); failed as a dead letter on any other
error. Nothing raised by a handler escapes `process`, so no event holds up the ones behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from services.clients.checkfront_bodies import checkfront_status
from services.clients.checkfront_errors import (
    CheckfrontAuthError,
    CheckfrontError,
    CheckfrontUnavailable,
)
from services.clients.stripe_errors import StripeGatewayError
from services.deps import Deps
from services.disputes import stripe_events
from services.errors import DomainError
from services.intake import events
from services.intake.events import FAILED, PROCESSED, RETRYING, StoredEvent, mark_processed
from services.notify import StuckEvent
from services.quoting import waiver_rules
from services.quoting.booking import SnapshotError
from services.quoting.quote import QuoteError
from services.refunds import cases, decisions, departure
from services.refunds.execution import apply_refund_event
from services.refunds.models import OPEN, Case, CaseError
from services.refunds.opening import open_case
from services.refunds.snapshots import read_booking, record_payment
from services.store import audit
from services.store.db import reads, utcnow

log = logging.getLogger(__name__)

Handler = Callable[[Deps, StoredEvent], Awaitable[str]]
# wrong input: the event is processed with the error as its outcome (as before)
INPUT_ERRORS = (SnapshotError, QuoteError, CaseError, CheckfrontError, ValueError)
OUTAGE_KINDS = frozenset({"unavailable", "rate_limited"})  # Stripe's, retried like Checkfront's
ERROR_TEXT = 300  # characters of an error kept on the event


async def process(svc: Deps, event: StoredEvent, *, now: datetime | None = None) -> str:
    """Act on one stored event and record how it ended; returns the outcome text ("retrying:
    ..." or "failed: ..." when it was kept for a retry or failed)."""
    state = await events.state_of(svc.store, event.row_id)
    if state == PROCESSED:
        return "already processed"
    if state == FAILED:   # queued twice: a failed event runs again only when a person asks
        return "failed earlier: not run again"
    try:
        outcome = await _route(event)(svc, event)
    except Exception as exc:
        if _is_outage(exc):
            return await _outage(svc, event, exc, now or utcnow())
        if not isinstance(exc, INPUT_ERRORS) or isinstance(exc, CheckfrontAuthError):
            return await _dead_letter(svc, event, exc, now or utcnow())
        outcome = f"error: {exc}"
        await audit.record(svc.store, actor="worker", action="webhook.failed",
                           detail={"event_id": event.event_id, "error": str(exc)})
    await mark_processed(svc.store, event.row_id, outcome)
    return outcome


def ordering_keys(event: StoredEvent) -> frozenset[str]:
    """The names of what an event may touch that another event may touch too: the worker runs
    two events that share a name one after the other, in arrival order, and others at once.

    - Checkfront (booking notices and payments): the booking, by code and by id as the body
      gives them (upper case, as a booking's identity is kept: `models.booking_key`). A
      payment notice changes the snapshot a booking notice quotes, so the two share the name.
    - Stripe: every object the event names (the refund, charge, PaymentIntent, dispute: the
      refund events of one payment, the dispute events of one dispute and a failed payment's
      retries each keep their order) and the booking in the metadata this bot puts on every
      refund (`booking_code`, `booking_id`): a refund event of ours therefore waits for the
      booking's own events, the execution that made the refund included.
    A dispute or a failed payment carries no booking of ours, only the payment: it is ordered
    with that payment's refund events, not with the booking's notices. That is enough: what it
    records (a hold, an issue) is read inside the refund's planning, and Stripe refuses a
    refund on a disputed charge whatever the order.
    An event that names nothing (an unknown source, a body without ids) waits for no one.
    """
    names: set[str] = set()
    if event.source == "checkfront":
        for part in ("booking", "transaction"):
            body = event.payload.get(part)
            if isinstance(body, dict):
                attributes = body.get("@attributes")
                names |= _booking_names(body.get("code"), body.get("booking_id"), (
                    attributes.get("booking_id") if isinstance(attributes, dict) else None))
    elif event.source == "stripe":
        data = event.payload.get("data")
        found = data.get("object") if isinstance(data, dict) else None
        found = found if isinstance(found, dict) else {}
        listed = found.get("refunds")
        objects = [found, *((listed.get("data") or []) if isinstance(listed, dict) else [])]
        for obj in objects:
            if not isinstance(obj, dict):
                continue
            for field in ("id", "charge", "payment_intent", "latest_charge"):
                ref = _stripe_id(obj.get(field))
                if ref:
                    names.add(f"stripe:{ref}")
            meta = obj.get("metadata")
            if isinstance(meta, dict):
                names |= _booking_names(meta.get("booking_code"), meta.get("booking_id"))
    return frozenset(names)


def _booking_names(*refs: object) -> set[str]:
    return {f"booking:{str(ref).strip().upper()}" for ref in refs
            if isinstance(ref, str | int) and not isinstance(ref, bool) and str(ref).strip()}


def _stripe_id(value: object) -> str | None:
    """An object's id, sent as an id or expanded to the object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


async def retry_failed(svc: Deps, row_id: int, *, by: str) -> str:
    """A person retries a failed event now (the card's Retry, `events retry`); the outcome
    as `process` gives it. EventError when the event is not failed."""
    event = await events.claim_failed(svc.store, row_id, utcnow(), by)
    return await process(svc, event)


def error_text(exc: BaseException) -> str:
    """The error's class and a message safe to keep and show: a domain error's own message
    (written for people), else only where it was raised, never its text (which may quote the
    payload)."""
    message = str(exc) if isinstance(exc, DomainError) else f"raised in {_where(exc)}"
    return f"{type(exc).__name__}: {message}"[:ERROR_TEXT]


def _is_outage(exc: Exception) -> bool:
    if isinstance(exc, CheckfrontUnavailable):
        return True
    return isinstance(exc, StripeGatewayError) and exc.kind in OUTAGE_KINDS


async def _outage(svc: Deps, event: StoredEvent, exc: Exception, now: datetime) -> str:
    error = error_text(exc)
    row = await events.defer(svc.store, event, error, now, svc.config.event_retries)
    if row.state == RETRYING:
        log.warning("event %s/%s %s kept for a retry at %s: %s", event.source, event.kind,
                    event.row_id, row.next_at, error)
        return f"retrying: {error} (attempt {row.attempts}, next try {row.next_at})"
    log.error("event %s/%s %s not processed after %s attempts: %s", event.source, event.kind,
              event.row_id, row.attempts, error)
    await svc.notifier.event_stuck(StuckEvent(
        row_id=row.row_id, source=row.source, kind=row.kind, subject=row.subject, error=error,
        attempts=row.attempts, since=row.retrying_since or row.received_at))
    return f"failed: {error} (gave up after {row.attempts} attempts)"


async def _dead_letter(svc: Deps, event: StoredEvent, exc: Exception, now: datetime) -> str:
    error = error_text(exc)
    await events.fail(svc.store, event, error, now)
    log.error("event %s/%s %s failed: %s", event.source, event.kind, event.row_id, error)
    return f"failed: {error}"


def _where(exc: BaseException) -> str:
    """The innermost frame of the project's own code the error passed through."""
    place = "?"
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__") or "")
        if module.split(".", 1)[0] in ("services", "handlers", "bot"):
            place = f"{module}.{tb.tb_frame.f_code.co_name} line {tb.tb_lineno}"
        tb = tb.tb_next
    return place


def _route(event: StoredEvent) -> Handler:
    table = ROUTES.get(event.source)
    if table is None:
        return _unknown_source
    return table.get(event.kind, DEFAULTS[event.source])


async def _unknown_source(svc: Deps, event: StoredEvent) -> str:
    return f"ignored: unknown source {event.source}"


# --- Checkfront ----------------------------------------------------------------------------

async def _checkfront_payment(svc: Deps, event: StoredEvent) -> str:
    transaction = event.payload.get("transaction") or {}
    new = await record_payment(svc.store, transaction, actor="checkfront")
    return "payment recorded" if new else "payment already known"


async def _checkfront_booking(svc: Deps, event: StoredEvent) -> str:
    """A booking notice: a cancelled booking opens its one case (and is refunded at once when
    the policy approves it); any other status is ignored. A status a waiver rule names is a
    cancellation (`services.deps`); the waiver a rule matched when the notice arrived
    (`waiver_rules.mark`) is quoted and the case opened involuntary."""
    booking = event.payload.get("booking")
    if not isinstance(booking, dict):
        return "ignored: no booking"
    status = checkfront_status(booking, "status", "status_id", strip=False)
    if status not in svc.config.cancelled_statuses:
        return f"ignored: status {status or '-'}"
    hint = str(booking.get("code") or (booking.get("@attributes") or {}).get("booking_id"))
    read = await read_booking(svc, hint, booking=booking)  # named as the API names it
    raw = read.raw
    code = str(raw["booking"].get("code") or hint)
    latest, taking = await reads(svc.store.db, [cases.latest_for_booking_query(code),
                                                departure.run_taking_query(code)])
    if taking:
        return f"ignored: departure run {taking[0]['id']} is cancelling it and opens its case"
    earlier = Case.from_row(latest[0]) if latest else None
    if earlier is not None and earlier.status not in OPEN:
        # one cancellation, one case: later notices (our own note or status write-back
        # included) do not reopen it; a person can still open one with /refund quote. The
        # case is shown again: a bot stopped between its outcome and its notice (this event
        # then still unprocessed) would otherwise never have told anyone
        await svc.notifier.case_updated(earlier)
        return f"ignored: booking already has case {earlier.id} ({earlier.status})"
    cancelled_at = datetime.fromisoformat(event.received_at)
    opened = await open_case(svc, raw, cancelled_at=cancelled_at, source="checkfront_webhook",
                             waiver_match=waiver_rules.recorded(event.payload),
                             no_case_yet=earlier is None)
    if not opened.created:  # an approval a crash left unexecuted is run now
        case = await decisions.nudge(svc, opened.case, by="worker")
        resumed = f": resumed, {case.status}" if case.status != opened.case.status else ""
        return f"case {case.id} already open{resumed}"
    # the booking was read just now, by this same step, and the case and its quote stored: an
    # approval at once reads none of them again
    case = await decisions.run_if_auto_approved(svc, opened.case, read=read,
                                                quote=opened.quote)
    return f"case {case.id} {case.status}"


# --- Stripe --------------------------------------------------------------------------------

def _object(event: StoredEvent) -> dict[str, Any]:
    return (event.payload.get("data") or {}).get("object") or {}


async def _refund(svc: Deps, event: StoredEvent) -> str:
    case = await apply_refund_event(svc, _object(event), event.kind)
    return f"case {case.id} {case.status}" if case else "external refund recorded"


async def _charge_refunded(svc: Deps, event: StoredEvent) -> str:
    """Some card refunds only fire `charge.refunded`: apply each refund it lists."""
    refunds = ((_object(event).get("refunds") or {}).get("data")) or []
    touched = [await apply_refund_event(svc, r, event.kind) for r in refunds]
    return f"{len(touched)} refund(s) applied"


async def _dispute_created(svc: Deps, event: StoredEvent) -> str:
    return await stripe_events.dispute_created(svc, _object(event), event.event_id)


async def _dispute_changed(svc: Deps, event: StoredEvent) -> str:
    return await stripe_events.dispute_changed(svc, _object(event), event.kind)


async def _payment_failed(svc: Deps, event: StoredEvent) -> str:
    return await stripe_events.payment_failed(svc, _object(event), event.event_id)


async def _recorded(svc: Deps, event: StoredEvent) -> str:
    return f"recorded: {event.kind}"


# --- the table -----------------------------------------------------------------------------

ROUTES: dict[str, dict[str, Handler]] = {
    "checkfront": {
        "transaction": _checkfront_payment,
        "booking": _checkfront_booking,
    },
    "stripe": {
        "refund.created": _refund,
        "refund.updated": _refund,
        "refund.failed": _refund,
        "charge.refunded": _charge_refunded,
        "charge.dispute.created": _dispute_created,
        "charge.dispute.updated": _dispute_changed,
        "charge.dispute.closed": _dispute_changed,
        "payment_intent.payment_failed": _payment_failed,
    },
}
# an event type a source's table does not name: a Checkfront body that is neither a payment
# nor a booking still goes to the booking handler (which ignores it); Stripe's are recorded
DEFAULTS: dict[str, Handler] = {"checkfront": _checkfront_booking, "stripe": _recorded}
