"""Owns the refund buttons: Approve, Deny, Adjust, Retry, Request refund, Resume automation.

Each listener acks at once (only the in-memory approver check runs before the ack) and hands
the work to the worker (`listeners.button`). The work reads the button's payload, calls
services, and answers privately; what the channel sees comes from the notifier. A decision's
card update (Approve, Retry) and Resume's alerts take the outbox's priority lane, ahead of posts
already waiting. Resume changes the switch only if automation is still paused (one change, one
"resumed" post, however many clicks); a later click is told privately who resumed it and when.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import cards, ids, notes
from bot.slack.ui.kit import date_token, esc, who
from bot.slack.ui.payloads import CaseRef, QuoteRequest
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import (
    Body,
    Respond,
    button_listener,
    channel_of,
    read_button,
    refuse,
    teller,
    user_of,
)
from services.quoting.quote import Quote
from services.refunds import cases, decisions, requests
from services.refunds.automation import switch_automation
from services.refunds.models import AlreadyDecided, Case, CaseError, StaleQuote, Status
from services.refunds.opening import open_case
from services.refunds.permissions import NotAllowed
from services.refunds.snapshots import assemble_snapshot
from services.store.db import utcnow


def register(app: AsyncApp, deps: SlackDeps) -> None:
    for action, work, approvers_only in (
        (ids.APPROVE, approve, True),
        (ids.DENY, open_deny, True),
        (ids.ADJUST, open_adjust, True),
        (ids.RETRY, retry, True),
        (ids.RESUME, resume, True),
        (ids.REQUEST, request_refund, False),
    ):
        app.action(action)(button_listener(deps, action, work, approvers_only=approvers_only))


async def approve(deps: SlackDeps, body: Body, respond: Respond) -> None:
    ref = await read_button(deps, body, respond, CaseRef)
    if ref is None:
        return
    user, tell = user_of(body), teller(deps, body, respond)
    store = deps.svc.store
    case = await cases.get(store, ref.case_id)
    try:
        deps.rules.check_approve(user, case.refund_amount, case.currency,
                                 group_members=deps.groups.members,
                                 requested_by=case.requested_by)
    except NotAllowed as exc:
        await refuse(deps, user, ids.APPROVE, ref.case_id, str(exc), tell=tell)
        return
    try:
        with deps.outbox.urgent():
            await decisions.approve(deps.svc, ref.case_id, by=user, quote_version=ref.version)
    except StaleQuote:
        await tell("This card was out of date: the booking changed and the refund was "
                   "re-quoted. The card now shows the current quote.")
        await deps.notifier.case_updated(await cases.get(store, ref.case_id))
        return
    except AlreadyDecided as exc:
        await tell(_already(exc))
        return
    except CaseError as exc:
        await tell(esc(exc, 1000))


async def retry(deps: SlackDeps, body: Body, respond: Respond) -> None:
    ref = await read_button(deps, body, respond, CaseRef)
    if ref is None:
        return
    user, tell = user_of(body), teller(deps, body, respond)
    case = await cases.get(deps.svc.store, ref.case_id)
    amount = case.approved_amount or case.refund_amount
    try:
        deps.rules.check_approve(user, amount, case.currency, group_members=deps.groups.members)
    except NotAllowed as exc:
        await refuse(deps, user, ids.RETRY, ref.case_id, str(exc), tell=tell)
        return
    if case.status != Status.FAILED:
        await tell(f"Case #{ref.case_id} is {case.status.value}; there is nothing to retry.")
        return
    try:
        with deps.outbox.urgent():
            await decisions.retry(deps.svc, ref.case_id, by=user)
    except AlreadyDecided:
        await tell("Someone else is already retrying this refund.")


async def open_deny(deps: SlackDeps, body: Body, respond: Respond) -> None:
    await _open_modal(deps, body, respond, lambda case, quote: cards.deny_modal(case))


async def open_adjust(deps: SlackDeps, body: Body, respond: Respond) -> None:
    await _open_modal(deps, body, respond, cards.adjust_modal)


async def _open_modal(deps: SlackDeps, body: Body, respond: Respond,
                      build: Callable[[Case, Quote], dict[str, Any]]) -> None:
    ref = await read_button(deps, body, respond, CaseRef)
    if ref is None:
        return
    tell = teller(deps, body, respond)
    case = await cases.get(deps.svc.store, ref.case_id)
    if case.status != Status.PENDING_APPROVAL:
        last = await cases.last_decision(deps.svc.store, ref.case_id)
        await tell(f"Case #{ref.case_id} is already {case.status.value}"
                   + (f" (by {who(last['decided_by'])})" if last else "") + ".")
        return
    if ref.version is not None and ref.version != case.quote_version:
        await tell("This card was out of date; it now shows the current quote.")
        await deps.notifier.case_updated(case)
        return
    quote = (await cases.current_quote(deps.svc.store, case)).quote
    await deps.client.views_open(trigger_id=body["trigger_id"], view=build(case, quote))


async def resume(deps: SlackDeps, body: Body, respond: Respond) -> None:
    with deps.outbox.urgent():
        state, changed = await switch_automation(deps.svc, paused=False,
                                                 reason="resumed from Slack", by=user_of(body))
    tell = teller(deps, body, respond)
    if not changed:
        await tell(notes.already_resumed(state.by, state.at))
        return
    await tell("Automation resumed: policy-clear refunds are approved automatically again.")


async def request_refund(deps: SlackDeps, body: Body, respond: Respond) -> None:
    """From an ephemeral quote: open the case (a card follows if a person must decide)."""
    request = await read_button(deps, body, respond, QuoteRequest,
                         malformed="That button is malformed; quote again.")
    if request is None:
        return
    user, tell = user_of(body), teller(deps, body, respond)
    raw = await assemble_snapshot(deps.svc, request.booking)
    opened = await open_case(deps.svc, raw, cancelled_at=await requests.moment(
        deps.svc, raw, utcnow()), source="slack", requested_by=user, waiver=request.waiver)
    case = opened.case
    if opened.created and channel_of(body):   # told privately there once it is decided
        await requests.record(deps.svc.store, case.id, user=user, channel=str(channel_of(body)),
                              thread_ts=(body.get("container") or {}).get("thread_ts"))
    if not opened.created:
        await tell(f"Booking `{esc(case.booking_code, 60)}` already has case #{case.id} "
                   f"({case.status.value.replace('_', ' ')}).")
        return
    await tell(f"Case #{case.id} opened for `{esc(case.booking_code, 60)}`: "
               f"{case.status.value.replace('_', ' ')}.")
    await decisions.run_if_auto_approved(deps.svc, case)


def _already(exc: AlreadyDecided) -> str:
    if exc.decided_by and exc.outcome:
        return (f"Already {esc(exc.outcome, 40)} by {who(exc.decided_by)} at "
                f"{date_token(exc.decided_at)}.")
    return esc(exc, 1000)
