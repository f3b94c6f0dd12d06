"""Buttons: Approve, Deny, Adjust, Retry, Request refund, Resume automation.

Each listener acks at once (only an in-memory approver check runs before the ack) and hands
the work to the worker. The work calls services; what people see comes from the notifier.
"""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import cards, ids
from bot.slack.ui.kit import who
from handlers.slack.deps import SlackDeps
from services.refunds import cases, decisions
from services.refunds.automation import set_automation
from services.refunds.cases import AlreadyDecided, CaseError, StaleQuote, Status
from services.refunds.opening import open_case
from services.refunds.permissions import NotAllowed
from services.refunds.snapshots import assemble_snapshot
from services.store.db import utcnow

Body = dict[str, Any]


def register(app: AsyncApp, deps: SlackDeps) -> None:
    for action_id, work, approver_only in (
        (ids.APPROVE, approve, True),
        (ids.DENY, open_deny, True),
        (ids.ADJUST, open_adjust, True),
        (ids.RETRY, retry, True),
        (ids.RESUME, resume, True),
        (ids.REQUEST, request_refund, False),
    ):
        app.action(action_id)(_listener(deps, action_id, work, approver_only))


def _listener(deps: SlackDeps, action_id: str, work: Any, approver_only: bool) -> Any:
    async def listener(ack: Any, body: Body, respond: Any) -> None:
        await ack()
        user = body["user"]["id"]
        if approver_only and not deps.is_approver(user):
            deps.later(f"refuse:{action_id}", lambda: _refuse(deps, body, respond, action_id))
            return
        deps.later(f"{action_id}:{user}", lambda: work(deps, body, respond))
    return listener


async def _refuse(deps: SlackDeps, body: Body, respond: Any, action_id: str) -> None:
    user = body["user"]["id"]
    case_id = _case_of(body)
    await deps.audit_refusal(user, action_id, case_id, "not an approver")
    await deps.tell(user, _channel(body), "Only refund approvers can do that. Ask a manager "
                    "or finance lead.", respond)


async def approve(deps: SlackDeps, body: Body, respond: Any) -> None:
    user = body["user"]["id"]
    case_id, version = cards.parse_button_value(_value(body))
    store = deps.svc.store
    case = await cases.get(store, case_id)
    try:
        deps.rules.check_approve(user, case.refund_amount, case.currency,
                                 group_members=deps.groups.members,
                                 requested_by=case.requested_by)
    except NotAllowed as exc:
        await deps.audit_refusal(user, ids.APPROVE, case_id, str(exc))
        await deps.tell(user, _channel(body), str(exc), respond)
        return
    try:
        await decisions.approve(deps.svc, case_id, by=user, quote_version=version)
    except StaleQuote:
        await deps.tell(user, _channel(body), "This card was out of date: the booking changed "
                        "and the refund was re-quoted. The card now shows the current quote.",
                        respond)
        await deps.notifier.case_updated(await cases.get(store, case_id))
        return
    except AlreadyDecided as exc:
        await deps.tell(user, _channel(body), _already(exc), respond)
        return
    except CaseError as exc:
        await deps.tell(user, _channel(body), str(exc), respond)


async def retry(deps: SlackDeps, body: Body, respond: Any) -> None:
    user = body["user"]["id"]
    case_id, _ = cards.parse_button_value(_value(body))
    case = await cases.get(deps.svc.store, case_id)
    amount = case.approved_amount or case.refund_amount
    try:
        deps.rules.check_approve(user, amount, case.currency, group_members=deps.groups.members)
    except NotAllowed as exc:
        await deps.audit_refusal(user, ids.RETRY, case_id, str(exc))
        await deps.tell(user, _channel(body), str(exc), respond)
        return
    if case.status != Status.FAILED:
        await deps.tell(user, _channel(body), f"Case #{case_id} is {case.status.value}; "
                        "there is nothing to retry.", respond)
        return
    try:
        await decisions.retry(deps.svc, case_id, by=user)
    except AlreadyDecided:
        await deps.tell(user, _channel(body), "Someone else is already retrying this refund.",
                        respond)


async def open_deny(deps: SlackDeps, body: Body, respond: Any) -> None:
    await _open_modal(deps, body, respond, lambda case, quote: cards.deny_modal(case))


async def open_adjust(deps: SlackDeps, body: Body, respond: Any) -> None:
    await _open_modal(deps, body, respond, cards.adjust_modal)


async def _open_modal(deps: SlackDeps, body: Body, respond: Any, build: Any) -> None:
    user = body["user"]["id"]
    case_id, version = cards.parse_button_value(_value(body))
    case = await cases.get(deps.svc.store, case_id)
    if case.status != Status.PENDING_APPROVAL:
        last = await cases.last_decision(deps.svc.store, case_id)
        text = (f"Case #{case_id} is already {case.status.value}"
                + (f" (by {who(last['decided_by'])})" if last else "") + ".")
        await deps.tell(user, _channel(body), text, respond)
        return
    if version is not None and version != case.quote_version:
        await deps.tell(user, _channel(body), "This card was out of date; it now shows the "
                        "current quote.", respond)
        await deps.notifier.case_updated(case)
        return
    quote = (await cases.current_quote(deps.svc.store, case)).quote
    await deps.client.views_open(trigger_id=body["trigger_id"], view=build(case, quote))


async def resume(deps: SlackDeps, body: Body, respond: Any) -> None:
    user = body["user"]["id"]
    await set_automation(deps.svc, paused=False, reason="resumed from Slack", by=user)
    await deps.tell(user, _channel(body), "Automation resumed: policy-clear refunds are "
                    "approved automatically again.", respond)


async def request_refund(deps: SlackDeps, body: Body, respond: Any) -> None:
    """From an ephemeral quote: open the case (a card follows if a person must decide)."""
    user = body["user"]["id"]
    try:
        data = json.loads(_value(body))
        booking = str(data["b"])
        waiver = data.get("w")
    except (ValueError, KeyError, TypeError):
        await deps.tell(user, _channel(body), "That button is malformed; quote again.", respond)
        return
    raw = await assemble_snapshot(deps.svc, booking)
    opened = await open_case(deps.svc, raw, cancelled_at=utcnow(), source="slack",
                             requested_by=user, waiver=waiver)
    case = opened.case
    if not opened.created:
        await deps.tell(user, _channel(body), f"Booking {case.booking_code} already has case "
                        f"#{case.id} ({case.status.value}).", respond)
        return
    await deps.tell(user, _channel(body), f"Case #{case.id} opened for {case.booking_code}: "
                    f"{case.status.value.replace('_', ' ')}.", respond)
    await decisions.run_if_auto_approved(deps.svc, case)


def _value(body: Body) -> str:
    return str(body["actions"][0].get("value") or "")


def _case_of(body: Body) -> int | None:
    try:
        return cards.parse_button_value(_value(body))[0]
    except (ValueError, KeyError, IndexError):
        return None


def _channel(body: Body) -> str | None:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id")



def _already(exc: AlreadyDecided) -> str:
    if exc.decided_by and exc.outcome:
        return (f"Already {exc.outcome} by {who(exc.decided_by)} at "
                f"{(exc.decided_at or '')[11:16]} UTC.")
    return str(exc)
