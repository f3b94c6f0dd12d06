"""Disputes and failed payments: the Stripe events beyond refunds, and what people do about them.

A `charge.dispute.created` or `payment_intent.payment_failed` event becomes one row in
`payment_issues`, one per dispute id or payment intent (the same event twice, or a second
failure of the same payment, never makes a second card). Each row is linked to the booking and
refund case our own records know for the payment (refund executions, Checkfront payments, then
the payment's metadata).

For a dispute the bot assembles an evidence pack from those records only
(services/evidence.py). People act on an issue through `claim`
(compare-and-set from `open` to `working`, so two clicks make one action); every outcome is
audited and the card is told through the issue notifier.
"""

from __future__ import annotations

import json
import logging
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from services.clients.checkfront_errors import CheckfrontError
from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_gateway import StripeGateway
from services.clients.stripe_money import from_stripe_amount
from services.deps import Deps
from services.disputes.evidence import BookingLink, EvidencePack, build_evidence, find_booking
from services.disputes.holds import LOST_STATUSES, NO_HOLD_STATUSES
from services.errors import DomainError
from services.money import display
from services.refunds import cases
from services.refunds.cases import Status
from services.store import audit
from services.store.db import Row, Store, dumps, now_iso

log = logging.getLogger(__name__)

DISPUTE = "dispute"
PAYMENT_FAILED = "payment_failed"


class IssueState(StrEnum):
    OPEN = "open"
    WORKING = "working"
    SUBMITTED = "submitted"  # dispute evidence went to Stripe
    ACCEPTED = "accepted"  # dispute closed (lost) on purpose
    PAID = "paid"  # a retried payment succeeded
    CANCELLED = "cancelled"  # booking voided in Checkfront


class IssueError(DomainError):
    """A request about an issue that cannot be honoured; the message is safe to show."""


class IssueTaken(IssueError):
    """Someone else acted first (or is acting now)."""

    def __init__(self, message: str, by: str | None, at: str | None) -> None:
        super().__init__(message)
        self.by = by
        self.at = at


@dataclass(frozen=True)
class PaymentIssue:
    id: int
    kind: str
    stripe_id: str
    event_id: str
    payment_intent: str | None
    charge: str | None
    booking_code: str | None
    booking_id: str | None
    case_id: int | None
    amount: int
    currency: str
    reason: str | None
    due_by: str | None
    detail: dict[str, Any]
    state: IssueState
    stripe_status: str | None
    outcome: str | None
    acted_by: str | None
    acted_at: str | None
    attempts: int
    link_url: str | None
    slack_channel: str | None
    slack_ts: str | None
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: Row) -> PaymentIssue:
        data = dict(row)
        data["detail"] = json.loads(data["detail"])
        data["state"] = IssueState(data["state"])
        return cls(**data)

    @property
    def evidence(self) -> dict[str, str]:
        return dict(self.detail.get("evidence") or {})

    @property
    def facts(self) -> list[str]:
        return list(self.detail.get("facts") or [])


class IssueNotifier(Protocol):
    async def issue_opened(self, issue: PaymentIssue) -> None:
        """A new dispute or failed payment: post its card."""

    async def issue_updated(self, issue: PaymentIssue) -> None:
        """An issue changed (someone acted, Stripe moved it): refresh its card."""


_notifiers: weakref.WeakKeyDictionary[Store, IssueNotifier] = weakref.WeakKeyDictionary()


def set_notifier(store: Store, notifier: IssueNotifier | None) -> None:
    """Who shows issues to people for this store (the Slack side registers itself)."""
    if notifier is None:
        _notifiers.pop(store, None)
    else:
        _notifiers[store] = notifier


async def _notify(store: Store, issue: PaymentIssue, *, opened: bool = False) -> None:
    notifier = _notifiers.get(store)
    if notifier is None:
        return
    try:
        if opened:
            await notifier.issue_opened(issue)
        else:
            await notifier.issue_updated(issue)
    except Exception as exc:  # showing it must not undo what was recorded
        log.warning("could not show payment issue %s: %s", issue.id, exc.__class__.__name__)


# --- queries -------------------------------------------------------------------------------

async def get_issue(store: Store, issue_id: int) -> PaymentIssue:
    row = await store.fetch_one("SELECT * FROM payment_issues WHERE id = ?", (issue_id,))
    if row is None:
        raise IssueError(f"no dispute or failed payment #{issue_id}")
    return PaymentIssue.from_row(row)


async def find_issue(store: Store, kind: str, stripe_id: str) -> PaymentIssue | None:
    row = await store.fetch_one("SELECT * FROM payment_issues WHERE kind = ? AND stripe_id = ?",
                                (kind, stripe_id))
    return PaymentIssue.from_row(row) if row else None


DECIDED_STATUSES = NO_HOLD_STATUSES + LOST_STATUSES  # Stripe has ruled, one way or the other


async def open_disputes(store: Store) -> list[PaymentIssue]:
    """Disputes Stripe has not decided yet (and we did not accept), soonest deadline first."""
    marks = ", ".join("?" for _ in DECIDED_STATUSES)
    rows = await store.fetch_all(
        f"SELECT * FROM payment_issues WHERE kind = ? AND state != ? AND "
        f"COALESCE(stripe_status, '') NOT IN ({marks}) ORDER BY due_by IS NULL, due_by, id",
        (DISPUTE, IssueState.ACCEPTED.value, *DECIDED_STATUSES))
    return [PaymentIssue.from_row(r) for r in rows]


async def remember_card(store: Store, issue_id: int, channel: str | None, ts: str | None) -> None:
    """Keep where the issue's card is (from its post, or from a click on an older card)."""
    if not channel or not ts:
        return
    async with store.transaction() as tx:
        await tx.execute("UPDATE payment_issues SET slack_channel = ?, slack_ts = ? "
                         "WHERE id = ? AND slack_ts IS NULL", (channel, ts, issue_id))


# --- events --------------------------------------------------------------------------------

async def dispute_created(svc: Deps, dispute: dict[str, Any], event_id: str) -> str:
    """Record a new dispute with its evidence pack and show its card (once per dispute)."""
    dispute_id = str(dispute.get("id") or "")
    if not dispute_id:
        raise ValueError("dispute event without a dispute id")
    known = await find_issue(svc.store, DISPUTE, dispute_id)
    if known is not None:
        return f"dispute {dispute_id} already known (issue {known.id})"
    currency = str(dispute.get("currency") or "").upper()
    amount = from_stripe_amount(int(dispute.get("amount") or 0), currency)
    pi = _ref(dispute.get("payment_intent"))
    charge = _ref(dispute.get("charge"))
    refs = [r for r in (pi, charge) if r]
    link = await find_booking(svc, refs)
    if link.booking_code is None and svc.stripe is not None and refs:
        try:
            link = await find_booking(svc, refs, await svc.stripe.payment_metadata(refs[0]))
        except StripeGatewayError as exc:
            log.info("payment metadata unavailable: %s", exc.kind)
    reason = str(dispute.get("reason") or "general")
    try:
        pack = await build_evidence(svc, link, dispute_id=dispute_id, amount=amount,
                                    currency=currency, reason=reason)
    except Exception as exc:  # the card matters more than the pack: post it regardless
        log.exception("evidence pack for dispute %s failed", dispute_id)
        pack = EvidencePack({}, [f"The evidence pack could not be assembled "
                                 f"({exc.__class__.__name__}); Submit evidence retries it."])
    due = (dispute.get("evidence_details") or {}).get("due_by")
    due_by = datetime.fromtimestamp(int(due), UTC).isoformat() if due else None
    detail = {"evidence": pack.fields, "facts": pack.facts, "found_by": link.found_by,
              "charge_refundable": bool(dispute.get("is_charge_refundable"))}
    issue = await _insert(svc.store, kind=DISPUTE, stripe_id=dispute_id, event_id=event_id,
                          payment_intent=pi, charge=charge, link=link, amount=amount,
                          currency=currency, reason=reason, due_by=due_by, detail=detail,
                          stripe_status=str(dispute.get("status") or ""),
                          audit_action="dispute.opened")
    if issue is None:
        return f"dispute {dispute_id} already known"
    await _notify(svc.store, issue, opened=True)
    await _redraw_waiting_case(svc, issue)
    return f"dispute {dispute_id} recorded (issue {issue.id}, booking {link.booking_code or '-'})"


async def dispute_changed(svc: Deps, dispute: dict[str, Any], kind: str) -> str:
    """Stripe moved a dispute on (evidence received, won, lost): keep its status."""
    issue = await find_issue(svc.store, DISPUTE, str(dispute.get("id") or ""))
    if issue is None:
        return f"recorded: {kind} for an unknown dispute"
    status = str(dispute.get("status") or "")
    refundable = bool(dispute.get("is_charge_refundable"))
    if status == issue.stripe_status and refundable == issue.detail.get("charge_refundable"):
        return f"dispute {issue.stripe_id} still {status}"
    async with svc.store.transaction() as tx:
        await tx.execute("UPDATE payment_issues SET stripe_status = ?, updated_at = ?, "
                         "detail = json_set(detail, '$.charge_refundable', json(?)) "
                         "WHERE id = ?", (status, now_iso(), dumps(refundable), issue.id))
        await audit.append(tx, actor="stripe", action="dispute.status", case_id=issue.case_id,
                           detail={"dispute": issue.stripe_id, "event": kind,
                                   "from": issue.stripe_status, "to": status})
    await _notify(svc.store, await get_issue(svc.store, issue.id))
    await _redraw_waiting_case(svc, issue)
    return f"dispute {issue.stripe_id} {status}"


async def _redraw_waiting_case(svc: Deps, issue: PaymentIssue) -> None:
    """A refund case waiting for a person on this booking shows the dispute on its card."""
    if issue.case_id is None:
        return
    case = await cases.get(svc.store, issue.case_id)
    if case.status == Status.PENDING_APPROVAL:
        await svc.notifier.case_updated(case)


async def payment_failed(svc: Deps, intent: dict[str, Any], event_id: str) -> str:
    """A booking's payment failed: record it and show a card (once per payment intent)."""
    pi = str(intent.get("id") or "")
    if not pi:
        raise ValueError("payment_failed event without a payment intent id")
    error = intent.get("last_payment_error") or {}
    why = _failure_text(error)
    currency = str(intent.get("currency") or "").upper()
    known = await find_issue(svc.store, PAYMENT_FAILED, pi)
    if known is not None:
        return await _failed_again(svc, known, why, error, str(intent.get("status") or ""))
    metadata = {str(k): str(v) for k, v in (intent.get("metadata") or {}).items()}
    charge = _ref(error.get("charge")) or _ref(intent.get("latest_charge"))
    link = await find_booking(svc, [r for r in (pi, charge) if r], metadata)
    if link.booking_code is None:
        await audit.record(svc.store, actor="stripe", action="payment.failed_unlinked",
                           detail={"payment_intent": pi, "reason": why})
        return f"ignored: failed payment {pi} is not linked to a booking"
    detail = {"error": _error_detail(error), "failures": 1,
              "payment_method": _ref(intent.get("payment_method"))
              or _ref(error.get("payment_method")),
              "facts": [f"Booking {link.booking_code} (linked by {link.found_by})."]}
    issue = await _insert(svc.store, kind=PAYMENT_FAILED, stripe_id=pi, event_id=event_id,
                          payment_intent=pi, charge=charge, link=link,
                          amount=from_stripe_amount(int(intent.get("amount") or 0), currency),
                          currency=currency, reason=why, due_by=None, detail=detail,
                          stripe_status=str(intent.get("status") or ""),
                          audit_action="payment.failed")
    if issue is None:
        return f"failed payment {pi} already known"
    await _notify(svc.store, issue, opened=True)
    return f"failed payment {pi} recorded (issue {issue.id}, booking {link.booking_code})"


async def _failed_again(svc: Deps, issue: PaymentIssue, why: str, error: dict[str, Any],
                        status: str) -> str:
    detail = dict(issue.detail)
    detail["error"] = _error_detail(error)
    detail["failures"] = int(detail.get("failures") or 1) + 1
    async with svc.store.transaction() as tx:
        await tx.execute("UPDATE payment_issues SET reason = ?, detail = ?, stripe_status = ?, "
                         "updated_at = ? WHERE id = ?",
                         (why, dumps(detail), status, now_iso(), issue.id))
        await audit.append(tx, actor="stripe", action="payment.failed_again",
                           case_id=issue.case_id, detail={"payment_intent": issue.stripe_id,
                                                          "reason": why})
    await _notify(svc.store, await get_issue(svc.store, issue.id))
    return f"failed payment {issue.stripe_id} failed again (issue {issue.id})"


def _failure_text(error: dict[str, Any]) -> str:
    message = str(error.get("message") or "payment failed")
    code = error.get("decline_code") or error.get("code")
    return f"{message} ({code})" if code else message


def _error_detail(error: dict[str, Any]) -> dict[str, Any]:
    return {k: error.get(k) for k in ("code", "decline_code", "message", "type")
            if error.get(k) is not None}


def _ref(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


async def _insert(store: Store, *, kind: str, stripe_id: str, event_id: str,
                  payment_intent: str | None, charge: str | None, link: BookingLink,
                  amount: int, currency: str, reason: str, due_by: str | None,
                  detail: dict[str, Any], stripe_status: str,
                  audit_action: str) -> PaymentIssue | None:
    now = now_iso()
    case_id = link.case.id if link.case else None
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT OR IGNORE INTO payment_issues (kind, stripe_id, event_id, payment_intent, "
            "charge, booking_code, booking_id, case_id, amount, currency, reason, due_by, "
            "detail, state, stripe_status, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?)",
            (kind, stripe_id, event_id, payment_intent, charge, link.booking_code,
             link.booking_id, case_id, amount, currency, reason, due_by, dumps(detail),
             stripe_status, now, now))
        if not cursor.rowcount:
            return None
        issue_id = int(cursor.lastrowid or 0)
        await audit.append(tx, actor="stripe", action=audit_action, case_id=case_id, detail={
            "issue": issue_id, "stripe_id": stripe_id, "event_id": event_id,
            "booking": link.booking_code, "found_by": link.found_by,
            "amount": display(amount, currency), "reason": reason, "due_by": due_by,
            "evidence_fields": sorted(detail.get("evidence") or {})})
    return await get_issue(store, issue_id)


# --- what people do ------------------------------------------------------------------------

async def claim(store: Store, issue_id: int, kind: str, *, by: str, doing: str) -> PaymentIssue:
    """Take an open issue for one action (compare-and-set), or raise IssueTaken/IssueError."""
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "UPDATE payment_issues SET state = 'working', acted_by = ?, acted_at = ?, "
            "outcome = ?, attempts = attempts + 1, updated_at = ? "
            "WHERE id = ? AND kind = ? AND state = 'open'",
            (by, now_iso(), doing, now_iso(), issue_id, kind))
        claimed = bool(cursor.rowcount)
    issue = await get_issue(store, issue_id)
    if issue.kind != kind:
        raise IssueError(f"#{issue_id} is not a {kind.replace('_', ' ')}")
    if not claimed:
        verb = "is being handled" if issue.state == IssueState.WORKING else \
            f"was already handled ({issue.outcome or issue.state.value})"
        raise IssueTaken(f"This {kind.replace('_', ' ')} {verb}", issue.acted_by, issue.acted_at)
    return issue


async def _finish(store: Store, issue: PaymentIssue, *, state: IssueState, outcome: str,
                  by: str, action: str, detail: dict[str, Any],
                  changes: dict[str, Any] | None = None) -> PaymentIssue:
    values: dict[str, Any] = {"state": str(state), "outcome": outcome, "acted_by": by,
                              "acted_at": now_iso(), "updated_at": now_iso(), **(changes or {})}
    assignments = ", ".join(f"{name} = ?" for name in values)
    async with store.transaction() as tx:
        await tx.execute(f"UPDATE payment_issues SET {assignments} WHERE id = ? "
                         "AND state = 'working'", (*values.values(), issue.id))
        await audit.append(tx, actor=by, action=action, case_id=issue.case_id, detail={
            "issue": issue.id, "stripe_id": issue.stripe_id, "booking": issue.booking_code,
            "outcome": outcome, **detail})
    return await get_issue(store, issue.id)


def _key(issue: PaymentIssue, action: str) -> str:
    return f"refund-bot:{issue.kind}:{issue.stripe_id}:{action}-{issue.attempts}"


async def _act(svc: Deps, issue_id: int, kind: str, by: str, doing: str,
               work: Any) -> PaymentIssue:
    """Claim, show `working`, run `work(issue)`; anything unexpected reopens the issue."""
    issue = await claim(svc.store, issue_id, kind, by=by, doing=doing)
    await _notify(svc.store, issue)
    try:
        issue = await work(issue)
    except Exception as exc:
        failure = f"{exc.message}" if isinstance(exc, StripeGatewayError) else \
            f"{exc.__class__.__name__}: {exc}"
        issue = await _finish(svc.store, issue, state=IssueState.OPEN,
                              outcome=f"{doing} failed: {failure}", by=by,
                              action=f"{_prefix(kind)}.action_failed",
                              detail={"doing": doing, "error": failure})
        if not isinstance(exc, StripeGatewayError | CheckfrontError | IssueError):
            log.exception("payment issue %s: %s failed", issue_id, doing)
    await _notify(svc.store, issue)
    return issue


def _prefix(kind: str) -> str:
    return "dispute" if kind == DISPUTE else "payment"


def _stripe(svc: Deps) -> StripeGateway:
    if svc.stripe is None:
        raise IssueError("Stripe is not configured")
    return svc.stripe


async def submit_evidence(svc: Deps, issue_id: int, *, by: str) -> PaymentIssue:
    """Rebuild the evidence pack from today's records and submit it to Stripe."""
    async def work(issue: PaymentIssue) -> PaymentIssue:
        case = await cases.get(svc.store, issue.case_id) if issue.case_id else None
        link = BookingLink(issue.booking_code, issue.booking_id, case,
                           str(issue.detail.get("found_by") or "records"))
        pack = await build_evidence(svc, link, dispute_id=issue.stripe_id, amount=issue.amount,
                                    currency=issue.currency, reason=issue.reason or "general")
        dispute = await _stripe(svc).submit_dispute_evidence(
            issue.stripe_id, pack.fields, idempotency_key=_key(issue, "evidence"))
        detail = {**issue.detail, "evidence": pack.fields, "facts": pack.facts}
        return await _finish(
            svc.store, issue, state=IssueState.SUBMITTED,
            outcome=f"evidence submitted ({len(pack.fields)} fields); Stripe: {dispute.status}",
            by=by, action="dispute.evidence_submitted",
            detail={"fields": sorted(pack.fields),
                    "characters": sum(len(v) for v in pack.fields.values()),
                    "stripe_status": dispute.status,
                    "submission_count": dispute.submission_count},
            changes={"stripe_status": dispute.status, "detail": dumps(detail)})
    return await _act(svc, issue_id, DISPUTE, by, "submitting evidence", work)


async def accept_dispute(svc: Deps, issue_id: int, *, by: str) -> PaymentIssue:
    """Close the dispute at Stripe: the cardholder keeps the money. Irreversible."""
    async def work(issue: PaymentIssue) -> PaymentIssue:
        dispute = await _stripe(svc).close_dispute(issue.stripe_id,
                                                   idempotency_key=_key(issue, "close"))
        return await _finish(
            svc.store, issue, state=IssueState.ACCEPTED,
            outcome=f"dispute accepted: {display(issue.amount, issue.currency)} stays with the "
                    f"cardholder; Stripe: {dispute.status}",
            by=by, action="dispute.accepted", detail={"stripe_status": dispute.status},
            changes={"stripe_status": dispute.status})
    return await _act(svc, issue_id, DISPUTE, by, "accepting the dispute", work)


async def retry_payment(svc: Deps, issue_id: int, *, by: str) -> PaymentIssue:
    """Confirm the PaymentIntent again with its payment method (unless it is paid already)."""
    async def work(issue: PaymentIssue) -> PaymentIssue:
        gateway = _stripe(svc)
        result = await gateway.get_payment(issue.stripe_id)
        if result.status != "succeeded":
            # Stripe detaches a declined payment method; confirm again with it if so
            method = None if result.payment_method else (
                result.failed_payment_method or issue.detail.get("payment_method"))
            result = await gateway.confirm_payment(
                issue.stripe_id, idempotency_key=_key(issue, "retry"), payment_method=method)
        if result.status == "succeeded":
            return await _finish(svc.store, issue, state=IssueState.PAID,
                                 outcome="payment succeeded on retry", by=by,
                                 action="payment.retried", detail={"status": result.status},
                                 changes={"stripe_status": result.status})
        why = f"{result.error} ({result.decline_code})" if result.error and \
            result.decline_code else (result.error or f"payment is {result.status}")
        return await _finish(svc.store, issue, state=IssueState.OPEN,
                             outcome=f"retry failed: {why}", by=by, action="payment.retried",
                             detail={"status": result.status, "error": why},
                             changes={"stripe_status": result.status, "reason": why})
    return await _act(svc, issue_id, PAYMENT_FAILED, by, "retrying the payment", work)


async def send_payment_link(svc: Deps, issue_id: int, *, by: str) -> PaymentIssue:
    """A Stripe payment link for the amount, paid at most once; its URL goes on the card."""
    async def work(issue: PaymentIssue) -> PaymentIssue:
        if issue.link_url:
            raise IssueError(f"a payment link was already made: {issue.link_url}")
        code = issue.booking_code or "-"
        link = await _stripe(svc).create_payment_link(
            amount=issue.amount, currency=issue.currency, name=f"Booking {code}",
            idempotency_key=_key(issue, "link"),
            metadata={"booking_code": code, "failed_payment_intent": issue.stripe_id})
        amount = display(issue.amount, issue.currency)
        return await _finish(svc.store, issue, state=IssueState.OPEN,
                             outcome=f"payment link made for {amount}",
                             by=by, action="payment.link_created",
                             detail={"payment_link": link.id, "url": link.url},
                             changes={"link_url": link.url})
    return await _act(svc, issue_id, PAYMENT_FAILED, by, "making a payment link", work)


async def cancel_booking(svc: Deps, issue_id: int, *, by: str, status: str = "VOID",
                         ) -> PaymentIssue:
    """Void the booking in Checkfront (the customer is not notified) and leave a note."""
    async def work(issue: PaymentIssue) -> PaymentIssue:
        if svc.checkfront is None:
            raise IssueError("Checkfront is not configured")
        booking = issue.booking_id or issue.booking_code
        if not booking:
            raise IssueError("no booking is linked to this payment")
        await svc.checkfront.update_status(booking, status, notify=False)
        noted = True
        try:
            await svc.checkfront.add_note(
                booking, f"Set to {status} by {by} from Slack after Stripe payment "
                         f"{issue.stripe_id} failed: {issue.reason or 'no reason given'}.")
        except CheckfrontError:
            noted = False
        return await _finish(svc.store, issue, state=IssueState.CANCELLED,
                             outcome=f"booking set to {status} in Checkfront (customer not "
                                     "notified)", by=by, action="booking.voided",
                             detail={"status": status, "note": noted})
    return await _act(svc, issue_id, PAYMENT_FAILED, by, "cancelling the booking", work)
