"""Modal submissions: the Deny reason and the Adjust amount.

Validation runs on the ack path (pure, no I/O) so errors show inside the modal with
`response_action: errors`; the decision itself runs after the ack.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import cards, ids
from handlers.slack.deps import SlackDeps
from services.money import display, to_minor
from services.refunds import cases, decisions
from services.refunds.cases import CaseError
from services.refunds.permissions import NotAllowed

Body = dict[str, Any]


def register(app: AsyncApp, deps: SlackDeps) -> None:
    app.view(ids.DENY_VIEW)(_deny_listener(deps))
    app.view(ids.ADJUST_VIEW)(_adjust_listener(deps))


def _input(view: Body, block: str, action: str) -> str:
    value = view["state"]["values"].get(block, {}).get(action, {}).get("value")
    return str(value or "").strip()


def _meta(view: Body) -> dict[str, Any] | None:
    try:
        return cards.parse_metadata(str(view.get("private_metadata") or ""))
    except ValueError:
        return None


STALE_FORM = "This form is out of date; close it and click the card again."


def _deny_listener(deps: SlackDeps) -> Any:
    async def listener(ack: Any, body: Body, view: Body) -> None:
        reason = _input(view, ids.REASON_BLOCK, ids.REASON_INPUT)
        if not reason:
            await ack(response_action="errors",
                      errors={ids.REASON_BLOCK: "Say why the refund is denied."})
            return
        user = body["user"]["id"]
        meta = _meta(view)
        if meta is None:
            await ack(response_action="errors", errors={ids.REASON_BLOCK: STALE_FORM})
            return
        if not deps.is_approver(user):
            await ack(response_action="errors",
                      errors={ids.REASON_BLOCK: "Only refund approvers can deny refunds."})
            deps.later("refuse:deny", lambda: deps.audit_refusal(
                user, ids.DENY_VIEW, meta.get("case"), "not an approver"))
            return
        await ack()
        deps.later(f"deny:{meta.get('case')}", lambda: _deny(deps, user, meta, reason))
    return listener


async def _deny(deps: SlackDeps, user: str, meta: dict[str, Any], reason: str) -> None:
    try:
        await decisions.deny(deps.svc, int(meta["case"]), by=user, reason=reason,
                             quote_version=meta.get("v"))
    except CaseError as exc:
        await deps.tell(user, None, f"Could not deny case #{meta.get('case')}: {exc}")


def _adjust_listener(deps: SlackDeps) -> Any:
    async def listener(ack: Any, body: Body, view: Body) -> None:
        meta = _meta(view)
        if meta is None:
            await ack(response_action="errors", errors={ids.AMOUNT_BLOCK: STALE_FORM})
            return
        user = body["user"]["id"]
        currency = str(meta.get("cur") or "")
        amount_text = _input(view, ids.AMOUNT_BLOCK, ids.AMOUNT_INPUT)
        reason = _input(view, ids.REASON_BLOCK, ids.REASON_INPUT)
        amount, problem = cards.validate_adjustment(amount_text, str(meta.get("max")), currency)
        errors: dict[str, str] = {}
        if problem:
            errors[ids.AMOUNT_BLOCK] = problem
        elif amount is not None:
            limit_problem = _over_limit(deps, user, amount, currency)
            if limit_problem:
                errors[ids.AMOUNT_BLOCK] = limit_problem
        if not reason:
            errors[ids.REASON_BLOCK] = "Say why the amount is adjusted."
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        assert amount is not None
        deps.later(f"adjust:{meta.get('case')}",
                   lambda: _adjust(deps, user, meta, amount, reason))
    return listener


def _over_limit(deps: SlackDeps, user: str, amount: int, currency: str) -> str | None:
    try:
        limit = deps.rules.limit_for(user, deps.groups.members)
    except NotAllowed as exc:
        return str(exc)
    if limit is not None and amount > to_minor(Decimal(limit), currency):
        return f"You can approve up to {display(to_minor(limit, currency), currency)}."
    return None


async def _adjust(deps: SlackDeps, user: str, meta: dict[str, Any], amount: int,
                  reason: str) -> None:
    case_id = int(meta["case"])
    store = deps.svc.store
    try:
        case = await cases.get(store, case_id)
        deps.rules.check_approve(user, amount, case.currency, group_members=deps.groups.members,
                                 requested_by=case.requested_by)
    except NotAllowed as exc:
        await deps.audit_refusal(user, ids.ADJUST_VIEW, case_id, str(exc))
        await deps.tell(user, None, str(exc))
        return
    except CaseError as exc:
        await deps.tell(user, None, f"Could not approve case #{case_id}: {exc}")
        return
    try:
        await decisions.approve(deps.svc, case_id, by=user, amount=amount, reason=reason,
                                quote_version=meta.get("v"))
    except CaseError as exc:
        await deps.tell(user, None, f"Could not approve case #{case_id}: {exc}")
