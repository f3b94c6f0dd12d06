"""Dispute and failed-payment buttons: who may click them, and running the chosen action.

The same rules as refund approvals: each listener acks at once (only the in-memory approver
check runs first) and hands the work to the worker; a click from someone who may not decide
is audited and answered ephemerally, and the card does not change. The approver's amount limit
applies to the amount at stake (the dispute, or the payment).

The cards themselves are posted and refreshed by the notifier through the outbox (paced, kept
across restarts), which keeps the card's channel and timestamp; later changes (a click, a
Stripe verdict) update it in place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.ui.disputes import parse_issue_value
from bot.slack.ui.ids import (
    ACCEPT_DISPUTE,
    CANCEL_BOOKING,
    PAYMENT_LINK,
    RETRY_PAYMENT,
    SUBMIT_EVIDENCE,
)
from bot.slack.ui.kit import clock, who
from handlers.slack.deps import SlackDeps
from services.deps import Deps
from services.disputes import actions, issues
from services.disputes.issues import IssueError, IssueState, IssueTaken, PaymentIssue
from services.refunds.permissions import NotAllowed
from services.store import audit

Body = dict[str, Any]
Work = Callable[..., Awaitable[PaymentIssue]]


def register(app: AsyncApp, deps: SlackDeps) -> None:
    for action_id, work in (
        (SUBMIT_EVIDENCE, actions.submit_evidence),
        (ACCEPT_DISPUTE, actions.accept_dispute),
        (RETRY_PAYMENT, actions.retry_payment),
        (PAYMENT_LINK, actions.send_payment_link),
        (CANCEL_BOOKING, actions.cancel_booking),
    ):
        app.action(action_id)(_listener(deps, action_id, work))


def _listener(deps: SlackDeps, action_id: str, work: Work) -> Any:
    async def listener(ack: Any, body: Body, respond: Any) -> None:
        await ack()
        user = body["user"]["id"]
        if not deps.is_approver(user):
            deps.later(f"refuse:{action_id}",
                       lambda: _refuse(deps, body, respond, action_id, "not an approver"))
            return
        deps.later(f"{action_id}:{user}",
                   lambda: _run(deps, body, respond, action_id, work))
    return listener


async def _refuse(deps: SlackDeps, body: Body, respond: Any, action_id: str, why: str,
                  issue: PaymentIssue | None = None) -> None:
    user = body["user"]["id"]
    if issue is None:
        issue = await _issue_of(deps.svc, body)
    await audit.record(deps.svc.store, actor=user, action="slack.refused",
                       case_id=issue.case_id if issue else None,
                       detail={"action": action_id, "why": why,
                               "issue": issue.id if issue else None,
                               "stripe_id": issue.stripe_id if issue else None})
    text = "Only refund approvers can act on disputes and failed payments. Ask a manager or " \
        "finance lead." if why == "not an approver" else why
    await deps.tell(user, _channel(body), text, respond)


async def _run(deps: SlackDeps, body: Body, respond: Any, action_id: str, work: Work) -> None:
    user = body["user"]["id"]
    issue = await _issue_of(deps.svc, body)
    if issue is None:
        await deps.tell(user, _channel(body), "That card is out of date or malformed.", respond)
        return
    await issues.remember_card(deps.svc.store, issue.id, _channel(body), _message_ts(body))
    try:
        deps.rules.check_approve(user, issue.amount, issue.currency,
                                 group_members=deps.groups.members)
    except NotAllowed as exc:
        await _refuse(deps, body, respond, action_id, str(exc), issue)
        return
    try:
        issue = await work(deps.svc, issue.id, by=user)
    except IssueTaken as exc:
        by = f" by {who(exc.by)} at {clock(exc.at)}" if exc.by else ""
        await deps.tell(user, _channel(body), f"{exc}{by}.", respond)
        await deps.notifier.issue_updated(issue)
        return
    except IssueError as exc:
        await deps.tell(user, _channel(body), str(exc), respond)
        return
    if issue.state == IssueState.OPEN and "failed" in (issue.outcome or ""):
        await deps.tell(user, _channel(body), (issue.outcome or "")[:1].upper()
                        + (issue.outcome or "")[1:], respond)


async def _issue_of(svc: Deps, body: Body) -> PaymentIssue | None:
    try:
        issue_id = parse_issue_value(str(body["actions"][0].get("value") or ""))
        return await issues.get_issue(svc.store, issue_id)
    except (ValueError, KeyError, IndexError, IssueError):
        return None


def _channel(body: Body) -> str | None:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id")


def _message_ts(body: Body) -> str | None:
    return (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get(
        "ts")
