"""What people do about a payment issue: evidence, accepting, retrying, payment links, voiding.

Each action claims the open issue first (compare-and-set, so two clicks make one action),
shows it `working`, calls Stripe or Checkfront with an idempotency key derived from the
issue and its attempt, then records the outcome; anything unexpected reopens the issue with
the failure as its outcome. Every outcome is audited and shown through the notifier.
"""

from __future__ import annotations

import logging
from typing import Any

from services.clients.checkfront_errors import CheckfrontError
from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_gateway import StripeGateway
from services.deps import Deps
from services.disputes import issues
from services.disputes.evidence import BookingLink, build_evidence
from services.disputes.issues import DISPUTE, PAYMENT_FAILED, IssueError, IssueState, PaymentIssue
from services.money import display
from services.refunds import cases
from services.store.db import dumps

log = logging.getLogger(__name__)


def _key(issue: PaymentIssue, action: str) -> str:
    return f"refund-bot:{issue.kind}:{issue.stripe_id}:{action}-{issue.attempts}"


async def _act(svc: Deps, issue_id: int, kind: str, by: str, doing: str,
               work: Any) -> PaymentIssue:
    """Claim, show `working`, run `work(issue)`; anything unexpected reopens the issue."""
    issue = await issues.claim(svc.store, issue_id, kind, by=by, doing=doing)
    await issues.show(svc, issue)
    try:
        issue = await work(issue)
    except Exception as exc:
        failure = f"{exc.message}" if isinstance(exc, StripeGatewayError) else \
            f"{exc.__class__.__name__}: {exc}"
        issue = await issues.finish(svc.store, issue, state=IssueState.OPEN,
                                    outcome=f"{doing} failed: {failure}", by=by,
                                    action=f"{_prefix(kind)}.action_failed",
                                    detail={"doing": doing, "error": failure})
        if not isinstance(exc, StripeGatewayError | CheckfrontError | IssueError):
            log.exception("payment issue %s: %s failed", issue_id, doing)
    await issues.show(svc, issue)
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
        return await issues.finish(
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
        return await issues.finish(
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
            return await issues.finish(svc.store, issue, state=IssueState.PAID,
                                       outcome="payment succeeded on retry", by=by,
                                       action="payment.retried",
                                       detail={"status": result.status},
                                       changes={"stripe_status": result.status})
        why = f"{result.error} ({result.decline_code})" if result.error and \
            result.decline_code else (result.error or f"payment is {result.status}")
        return await issues.finish(svc.store, issue, state=IssueState.OPEN,
                                   outcome=f"retry failed: {why}", by=by,
                                   action="payment.retried",
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
        return await issues.finish(svc.store, issue, state=IssueState.OPEN,
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
        return await issues.finish(svc.store, issue, state=IssueState.CANCELLED,
                                   outcome=f"booking set to {status} in Checkfront (customer "
                                           "not notified)", by=by, action="booking.voided",
                                   detail={"status": status, "note": noted})
    return await _act(svc, issue_id, PAYMENT_FAILED, by, "cancelling the booking", work)
