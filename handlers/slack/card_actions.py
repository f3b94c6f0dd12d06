"""Owns a refund card's own buttons beside the decision: Details, Mark refunded, and the links.

- Details (anyone who sees the card): opens the Details modal (`views.open` with the click's
  trigger_id) drawn from the case's current quote.
- Mark refunded (approvers only; a refusal is answered privately and audited): opens the modal
  for what was refunded by hand; its submission is checked on the ack path (amount not above
  what is left, a method, a reference without contact data) with the answer inside the modal,
  and a case no longer waiting for it is answered there too; the record itself
  (`services.refunds.manual.mark`: compare-and-set, the row and the audit in one transaction)
  runs after the ack.
- Open in Checkfront / View in Stripe are url buttons: Slack opens the page and still sends a
  `block_actions` request, which is acked and nothing more.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import cards, ids
from bot.slack.ui.details import details_modal
from bot.slack.ui.kit import esc, money
from bot.slack.ui.manual import ManualForm, manual_modal
from bot.slack.ui.payloads import CaseRef
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import (
    Body,
    Respond,
    button_listener,
    channel_of,
    metadata_of,
    read_button,
    refuse,
    teller,
    user_of,
)
from services.refunds import cases, manual
from services.refunds.models import CaseError

STALE_FORM = "This form is out of date; close it and click the card again."


def register(app: AsyncApp, deps: SlackDeps) -> None:
    app.action(ids.DETAILS)(button_listener(deps, ids.DETAILS, open_details,
                                            approvers_only=False))
    app.action(ids.MARK_REFUNDED)(button_listener(deps, ids.MARK_REFUNDED, open_manual))
    for link in (ids.OPEN_CHECKFRONT, ids.VIEW_STRIPE):
        app.action(link)(ack_only)
    app.view(ids.MANUAL_VIEW)(_manual_listener(deps))


async def ack_only(ack: Any) -> None:
    """A url button: the browser opens the page; the bot has nothing to do."""
    await ack()


async def open_details(deps: SlackDeps, body: Body, respond: Respond) -> None:
    ref = await read_button(deps, body, respond, CaseRef)
    if ref is None:
        return
    try:
        case = await cases.get(deps.svc.store, ref.case_id)
        quote = (await cases.current_quote(deps.svc.store, case)).quote
    except CaseError as exc:
        await teller(deps, body, respond)(esc(exc, 500))
        return
    await deps.client.views_open(trigger_id=body["trigger_id"], view=details_modal(case, quote))


async def open_manual(deps: SlackDeps, body: Body, respond: Respond) -> None:
    ref = await read_button(deps, body, respond, CaseRef)
    if ref is None:
        return
    store = deps.svc.store
    case = await cases.get(store, ref.case_id)
    left = await manual.left_by_hand(store, case)
    if case.status not in manual.CLOSABLE or left <= 0:
        await teller(deps, body, respond)(
            f"Case #{case.id} is {case.status.value.replace('_', ' ')}; there is nothing left "
            "to refund by hand.")
        return
    await deps.client.views_open(trigger_id=body["trigger_id"],
                                 view=manual_modal(case, left, channel_of(body)))


def _value(view: Body, block: str, action: str) -> str:
    state = view["state"]["values"].get(block, {}).get(action, {})
    chosen = state.get("selected_option") or {}
    return str(state.get("value") or chosen.get("value") or "").strip()


def check_form(form: ManualForm, view: Body) -> tuple[dict[str, str], int | None, str, str]:
    """(errors by block, the amount, the method, the reference) of a submitted modal; pure."""
    errors: dict[str, str] = {}
    amount, problem = cards.check_amount(_value(view, ids.AMOUNT_BLOCK, ids.AMOUNT_INPUT),
                                         max(form.left_minor, 1), form.currency)
    if problem and amount is None and "more than the" in problem:
        problem = f"That is more than the {money(form.left_minor, form.currency)} left to refund."
    if problem:
        errors[ids.AMOUNT_BLOCK] = problem
    method = _value(view, ids.METHOD_BLOCK, ids.METHOD_INPUT)
    if method not in manual.METHODS:
        errors[ids.METHOD_BLOCK] = "Choose how the refund was made."
    reference = _value(view, ids.REFERENCE_BLOCK, ids.REFERENCE_INPUT)
    if reference and (bad := manual.check_reference(reference)):
        errors[ids.REFERENCE_BLOCK] = bad
    return errors, amount, method, reference


def _manual_listener(deps: SlackDeps) -> Any:
    async def listener(ack: Any, body: Body, view: Body) -> None:
        form = metadata_of(view, ManualForm)
        if form is None:
            await ack(response_action="errors", errors={ids.AMOUNT_BLOCK: STALE_FORM})
            return
        user = user_of(body)
        if not deps.is_approver(user):
            await ack(response_action="errors", errors={
                ids.AMOUNT_BLOCK: "Only refund approvers can mark refunds as done."})
            deps.later("refuse:manual", lambda: refuse(deps, user, ids.MANUAL_VIEW,
                                                       form.case_id))
            return
        errors, amount, method, reference = check_form(form, view)
        if not errors:   # one indexed read: a case closed meanwhile is answered in the modal
            status = await manual.status_now(deps.svc.store, form.case_id)
            if status not in manual.CLOSABLE:
                errors[ids.AMOUNT_BLOCK] = (f"Case #{form.case_id} is already "
                                            f"{str(status).replace('_', ' ')}; nothing was "
                                            "recorded.")
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        assert amount is not None
        deps.later(f"manual:{form.case_id}",
                   lambda: _mark(deps, user, form, amount, method, reference or None))
    return listener


async def _mark(deps: SlackDeps, user: str, form: ManualForm, amount: int, method: str,
                reference: str | None) -> None:
    try:
        await manual.mark(deps.svc, form.case_id, by=user, amount=amount, method=method,
                          reference=reference)
    except CaseError as exc:
        await deps.tell(user, form.channel, f"Could not mark case #{form.case_id} refunded: "
                                            f"{esc(exc, 1000)}")
