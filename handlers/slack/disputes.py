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
from bot.slack.ui.kit import date_token, esc, who
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import (
    NOT_APPROVER,
    Body,
    button_listener,
    channel_of,
    message_ts_of,
    user_of,
)
from services.deps import Deps
from services.disputes import actions, issues
from services.disputes.issues import IssueError, IssueState, IssueTaken, PaymentIssue
from services.refunds.permissions import NotAllowed
from services.store import audit

Work = Callable[..., Awaitable[PaymentIssue]]


def register(app: AsyncApp, deps: SlackDeps) -> None:
    for action_id, work in (
        (SUBMIT_EVIDENCE, actions.submit_evidence),
        (ACCEPT_DISPUTE, actions.accept_dispute),
        (RETRY_PAYMENT, actions.retry_payment),
        (PAYMENT_LINK, actions.send_payment_link),
        (CANCEL_BOOKING, actions.cancel_booking),
    ):
        app.action(action_id)(button_listener(
            deps, action_id, _running(action_id, work), refused=_refused_click))


def _running(action_id: str, work: Work) -> Any:
    return lambda deps, body, respond: _run(deps, body, respond, action_id, work)


async def _refused_click(deps: SlackDeps, body: Body, respond: Any, action_id: str) -> None:
    await _refuse(deps, body, respond, action_id, NOT_APPROVER)


async def _refuse(deps: SlackDeps, body: Body, respond: Any, action_id: str, why: str,
                  issue: PaymentIssue | None = None) -> None:
    user = user_of(body)
    if issue is None:
        issue = await _issue_of(deps.svc, body)
    await audit.record(deps.svc.store, actor=user, action="slack.refused",
                       case_id=issue.case_id if issue else None,
                       detail={"action": action_id, "why": why,
                               "issue": issue.id if issue else None,
                               "stripe_id": issue.stripe_id if issue else None})
    text = "Only refund approvers can act on disputes and failed payments. Ask a manager or " \
        "finance lead." if why == NOT_APPROVER else esc(why, 1000)
    await deps.tell(user, channel_of(body), text, respond)


async def _run(deps: SlackDeps, body: Body, respond: Any, action_id: str, work: Work) -> None:
    user = user_of(body)
    issue = await _issue_of(deps.svc, body)
    if issue is None:
        await deps.tell(user, channel_of(body), "That card is out of date or malformed.", respond)
        return
    await issues.remember_card(deps.svc.store, issue.id, channel_of(body), message_ts_of(body))
    try:
        deps.rules.check_approve(user, issue.amount, issue.currency,
                                 group_members=deps.groups.members)
    except NotAllowed as exc:
        await _refuse(deps, body, respond, action_id, str(exc), issue)
        return
    try:
        issue = await work(deps.svc, issue.id, by=user)
    except IssueTaken as exc:
        by = f" by {who(exc.by)} at {date_token(exc.at)}" if exc.by else ""
        await deps.tell(user, channel_of(body), f"{esc(exc, 500)}{by}.", respond)
        await deps.notifier.issue_updated(issue)
        return
    except IssueError as exc:
        await deps.tell(user, channel_of(body), esc(exc, 1000), respond)
        return
    if issue.state == IssueState.OPEN and "failed" in (issue.outcome or ""):
        outcome = esc(issue.outcome, 1000)
        await deps.tell(user, channel_of(body), outcome[:1].upper() + outcome[1:], respond)


async def _issue_of(svc: Deps, body: Body) -> PaymentIssue | None:
    try:
        issue_id = parse_issue_value(str(body["actions"][0].get("value") or ""))
        return await issues.get_issue(svc.store, issue_id)
    except (ValueError, KeyError, IndexError, IssueError):
        return None
