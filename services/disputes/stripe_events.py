"""Stripe's dispute and failed-payment events, turned into payment issues.

A `charge.dispute.created` or `payment_intent.payment_failed` event becomes one issue, one per
dispute id or payment intent (the same event twice, or a second failure of the same payment,
never makes a second card). Each issue is linked to the booking and refund case our own
records know for the payment (refund executions, Checkfront payments, then the payment's
metadata). For a dispute the bot assembles an evidence pack from those records only
(services/disputes/evidence.py); later dispute events keep its Stripe status.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_money import from_stripe_amount
from services.deps import Deps
from services.disputes import issues
from services.disputes.evidence import EvidencePack, build_evidence, find_booking
from services.disputes.issues import DISPUTE, PAYMENT_FAILED, PaymentIssue
from services.refunds import cases
from services.refunds.models import Status
from services.store import audit

log = logging.getLogger(__name__)


async def dispute_created(svc: Deps, dispute: dict[str, Any], event_id: str) -> str:
    """Record a new dispute with its evidence pack and show its card (once per dispute)."""
    dispute_id = str(dispute.get("id") or "")
    if not dispute_id:
        raise ValueError("dispute event without a dispute id")
    known = await issues.find_issue(svc.store, DISPUTE, dispute_id)
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
    issue = await issues.insert(svc.store, kind=DISPUTE, stripe_id=dispute_id,
                                event_id=event_id, payment_intent=pi, charge=charge, link=link,
                                amount=amount, currency=currency, reason=reason, due_by=due_by,
                                detail=detail, stripe_status=str(dispute.get("status") or ""),
                                audit_action="dispute.opened")
    if issue is None:
        return f"dispute {dispute_id} already known"
    await issues.show(svc, issue, opened=True)
    await _redraw_waiting_case(svc, issue)
    return f"dispute {dispute_id} recorded (issue {issue.id}, booking {link.booking_code or '-'})"


async def dispute_changed(svc: Deps, dispute: dict[str, Any], kind: str) -> str:
    """Stripe moved a dispute on (evidence received, won, lost): keep its status."""
    issue = await issues.find_issue(svc.store, DISPUTE, str(dispute.get("id") or ""))
    if issue is None:
        return f"recorded: {kind} for an unknown dispute"
    status = str(dispute.get("status") or "")
    refundable = bool(dispute.get("is_charge_refundable"))
    if status == issue.stripe_status and refundable == issue.detail.get("charge_refundable"):
        return f"dispute {issue.stripe_id} still {status}"
    await issues.show(svc, await issues.set_dispute_status(svc.store, issue, status, refundable,
                                                           kind))
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
    known = await issues.find_issue(svc.store, PAYMENT_FAILED, pi)
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
    issue = await issues.insert(
        svc.store, kind=PAYMENT_FAILED, stripe_id=pi, event_id=event_id, payment_intent=pi,
        charge=charge, link=link,
        amount=from_stripe_amount(int(intent.get("amount") or 0), currency),
        currency=currency, reason=why, due_by=None, detail=detail,
        stripe_status=str(intent.get("status") or ""), audit_action="payment.failed")
    if issue is None:
        return f"failed payment {pi} already known"
    await issues.show(svc, issue, opened=True)
    return f"failed payment {pi} recorded (issue {issue.id}, booking {link.booking_code})"


async def _failed_again(svc: Deps, issue: PaymentIssue, why: str, error: dict[str, Any],
                        status: str) -> str:
    detail = dict(issue.detail)
    detail["error"] = _error_detail(error)
    detail["failures"] = int(detail.get("failures") or 1) + 1
    await issues.show(svc, await issues.set_failed_again(svc.store, issue, why, detail, status))
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
