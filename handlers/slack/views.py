"""Owns the refund modals' submissions: the Deny reason and the Adjust amount.

Validation runs on the ack path (pure, no I/O) so errors show inside the modal with
`response_action: errors`; a non-approver is refused there too (the refusal is audited after
the ack), and the decision itself runs after the ack.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import cards, ids
from bot.slack.ui.kit import esc
from bot.slack.ui.payloads import AdjustForm, CaseRef
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import Body, metadata_of, refuse, user_of
from services.money import display, to_minor
from services.refunds import cases, decisions
from services.refunds.models import CaseError
from services.refunds.permissions import NotAllowed

STALE_FORM = "This form is out of date; close it and click the card again."


def register(app: AsyncApp, deps: SlackDeps) -> None:
    app.view(ids.DENY_VIEW)(_deny_listener(deps))
    app.view(ids.ADJUST_VIEW)(_adjust_listener(deps))


def _input(view: Body, block: str, action: str) -> str:
    value = view["state"]["values"].get(block, {}).get(action, {}).get("value")
    return str(value or "").strip()


def _deny_listener(deps: SlackDeps) -> Any:
    async def listener(ack: Any, body: Body, view: Body) -> None:
        reason = _input(view, ids.REASON_BLOCK, ids.REASON_INPUT)
        if not reason:
            await ack(response_action="errors",
                      errors={ids.REASON_BLOCK: "Say why the refund is denied."})
            return
        user = user_of(body)
        form = metadata_of(view, CaseRef)
        if form is None:
            await ack(response_action="errors", errors={ids.REASON_BLOCK: STALE_FORM})
            return
        if not deps.is_approver(user):
            await ack(response_action="errors",
                      errors={ids.REASON_BLOCK: "Only refund approvers can deny refunds."})
            deps.later("refuse:deny", lambda: refuse(deps, user, ids.DENY_VIEW, form.case_id))
            return
        await ack()
        deps.later(f"deny:{form.case_id}", lambda: _deny(deps, user, form, reason))
    return listener


async def _deny(deps: SlackDeps, user: str, form: CaseRef, reason: str) -> None:
    try:
        await decisions.deny(deps.svc, form.case_id, by=user, reason=reason,
                             quote_version=form.version)
    except CaseError as exc:
        await deps.tell(user, None, f"Could not deny case #{form.case_id}: {esc(exc, 1000)}")


def _adjust_listener(deps: SlackDeps) -> Any:
    async def listener(ack: Any, body: Body, view: Body) -> None:
        form = metadata_of(view, AdjustForm)
        if form is None:
            await ack(response_action="errors", errors={ids.AMOUNT_BLOCK: STALE_FORM})
            return
        user = user_of(body)
        amount_text = _input(view, ids.AMOUNT_BLOCK, ids.AMOUNT_INPUT)
        reason = _input(view, ids.REASON_BLOCK, ids.REASON_INPUT)
        amount, problem = cards.check_amount(amount_text, form.ceiling, form.currency)
        errors: dict[str, str] = {}
        if problem:
            errors[ids.AMOUNT_BLOCK] = problem
        elif amount is not None:
            limit_problem = _over_limit(deps, user, amount, form.currency)
            if limit_problem:
                errors[ids.AMOUNT_BLOCK] = limit_problem
        if not reason:
            errors[ids.REASON_BLOCK] = "Say why the amount is adjusted."
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        assert amount is not None
        deps.later(f"adjust:{form.case_id}", lambda: _adjust(deps, user, form, amount, reason))
    return listener


def _over_limit(deps: SlackDeps, user: str, amount: int, currency: str) -> str | None:
    try:
        limit = deps.rules.limit_for(user, deps.groups.members)
    except NotAllowed as exc:
        return str(exc)
    if limit is not None and amount > to_minor(Decimal(limit), currency):
        return f"You can approve up to {display(to_minor(limit, currency), currency)}."
    return None


async def _adjust(deps: SlackDeps, user: str, form: AdjustForm, amount: int,
                  reason: str) -> None:
    case_id = form.case_id
    store = deps.svc.store
    try:
        case = await cases.get(store, case_id)
        deps.rules.check_approve(user, amount, case.currency, group_members=deps.groups.members,
                                 requested_by=case.requested_by)
    except NotAllowed as exc:
        await refuse(deps, user, ids.ADJUST_VIEW, case_id, str(exc),
                     tell=lambda text: deps.tell(user, None, text))
        return
    except CaseError as exc:
        await deps.tell(user, None, f"Could not approve case #{case_id}: {esc(exc, 1000)}")
        return
    try:
        await decisions.approve(deps.svc, case_id, by=user, amount=amount, reason=reason,
                                quote_version=form.version)
    except CaseError as exc:
        await deps.tell(user, None, f"Could not approve case #{case_id}: {esc(exc, 1000)}")
