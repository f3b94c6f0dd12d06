"""What each stored webhook event does: a table from source and event type to the service
call that handles it, and `process`, which runs one event and marks it processed.

Processing is idempotent per event row: an event already marked processed is not run again,
and every handler below is safe to run twice for the same event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from services.clients.checkfront_bodies import checkfront_status
from services.clients.checkfront_errors import CheckfrontError
from services.deps import Deps
from services.disputes import stripe_events
from services.intake.events import StoredEvent, mark_processed, processed_at
from services.quoting.booking import SnapshotError
from services.quoting.quote import QuoteError
from services.refunds import cases, decisions
from services.refunds.execution import apply_refund_event
from services.refunds.models import OPEN, CaseError
from services.refunds.opening import open_case
from services.refunds.snapshots import assemble_snapshot, record_payment
from services.store import audit

Handler = Callable[[Deps, StoredEvent], Awaitable[str]]

async def process(svc: Deps, event: StoredEvent) -> str:
    """Act on one stored event and mark it processed; returns the outcome text."""
    if await processed_at(svc.store, event.row_id) is not None:
        return "already processed"
    try:
        outcome = await _route(event)(svc, event)
    except (SnapshotError, QuoteError, CaseError, CheckfrontError, ValueError) as exc:
        outcome = f"error: {exc}"
        await audit.record(svc.store, actor="worker", action="webhook.failed",
                           detail={"event_id": event.event_id, "error": str(exc)})
    await mark_processed(svc.store, event.row_id, outcome)
    return outcome


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
    the policy approves it); any other status is ignored."""
    booking = event.payload.get("booking")
    if not isinstance(booking, dict):
        return "ignored: no booking"
    status = checkfront_status(booking, "status", "status_id", strip=False)
    if status not in svc.config.cancelled_statuses:
        return f"ignored: status {status or '-'}"
    hint = str(booking.get("code") or (booking.get("@attributes") or {}).get("booking_id"))
    raw = await assemble_snapshot(svc, hint, booking=booking)  # named as the API names it
    earlier = await cases.latest_for_booking(svc.store, str(raw["booking"].get("code") or hint))
    if earlier is not None and earlier.status not in OPEN:
        # one cancellation, one case: later notices (our own note or status write-back
        # included) do not reopen it; a person can still open one with /refund quote
        return f"ignored: booking already has case {earlier.id} ({earlier.status})"
    cancelled_at = datetime.fromisoformat(event.received_at)
    opened = await open_case(svc, raw, cancelled_at=cancelled_at, source="checkfront_webhook")
    if not opened.created:  # an approval a crash left unexecuted is run now
        case = await decisions.nudge(svc, opened.case, by="worker")
        resumed = f": resumed, {case.status}" if case.status != opened.case.status else ""
        return f"case {case.id} already open{resumed}"
    case = await decisions.run_if_auto_approved(svc, opened.case)
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
