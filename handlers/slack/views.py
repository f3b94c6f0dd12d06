"""Owns the refund modals' submissions: the Deny reason and the Adjust amount.

Validation runs on the ack path so errors show inside the modal with `response_action: errors`:
the form's fields (pure), then a non-approver (refused there, the refusal audited after the
ack), then where the case stands, read from the store's read-only connection
(`services.refunds.standing`): a case someone already decided is answered on the field with
who decided it and when, a case re-quoted since the form opened likewise, an amount the
approver may not approve (self-approval, over the limit) too. The decision itself runs after
the ack, in the outbox's priority lane; if it still loses a race, the answer is ephemeral in
the card's channel (never a DM: the Messages tab is off).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import cards, ids, notes
from bot.slack.ui.kit import esc
from bot.slack.ui.payloads import AdjustForm, CaseRef
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import Body, metadata_of, refuse, user_of
from services import outbox as posts
from services.money import display, to_minor
from services.refunds import cases, decisions
from services.refunds.models import AlreadyDecided, CaseError
from services.refunds.permissions import NotAllowed
from services.refunds.standing import standing

log = logging.getLogger(__name__)
STALE_FORM = "This form is out of date; close it and click the card again."
REQUOTED = ("The booking changed and the refund was re-quoted since this form opened; close "
            "it and look at the card again.")


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
        problem = await _standing_problem(deps, user, form)
        if problem:
            await ack(response_action="errors", errors={ids.REASON_BLOCK: problem})
            return
        await ack()
        deps.later(f"deny:{form.case_id}", lambda: _deny(deps, user, form, reason))
    return listener


async def _standing_problem(deps: SlackDeps, user: str, form: CaseRef,
                            amount: int | None = None) -> str | None:
    """Why the case cannot take this form's decision now (plain text for the field), or None.
    Given an `amount` (an approval), the approver's own permission to approve it too."""
    try:
        found = await standing(deps.svc.store, form.case_id)
    except Exception as exc:  # the decision checks again; a failed read must not block it
        log.warning("could not read a case before answering a form: %s",
                    exc.__class__.__name__)
        return None
    if found is None:
        return STALE_FORM
    if found.decided is not None:
        decided = found.decided
        return notes.decided_error(decided.outcome, decided.decided_by, decided.decided_at,
                                   deps.people.name(decided.decided_by), deps.zone)
    if found.stale(form.version):
        return REQUOTED
    if amount is not None:
        try:
            deps.rules.check_approve(user, amount, found.case.currency,
                                     group_members=deps.groups.members,
                                     requested_by=found.case.requested_by)
        except NotAllowed as exc:
            why = str(exc)
            deps.later("refuse:adjust", lambda: refuse(deps, user, ids.ADJUST_VIEW,
                                                       form.case_id, why))
            return why
    return None


async def _tell_near_card(deps: SlackDeps, user: str, case_id: int, text: str) -> None:
    """Privately, in the channel of the case's card (the form itself is closed by now)."""
    card = await posts.message_of(deps.svc.store, case_id)
    await deps.tell(user, card.channel if card is not None else None, text)


async def _deny(deps: SlackDeps, user: str, form: CaseRef, reason: str) -> None:
    with deps.outbox.urgent():
        try:
            await decisions.deny(deps.svc, form.case_id, by=user, reason=reason,
                                 quote_version=form.version)
        except AlreadyDecided as exc:
            await _tell_near_card(deps, user, form.case_id, notes.decided_note(
                form.case_id, exc.outcome, exc.decided_by, exc.decided_at))
        except CaseError as exc:
            await _tell_near_card(deps, user, form.case_id,
                                  f"Could not deny case #{form.case_id}: {esc(exc, 1000)}")


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
        if not errors:
            assert amount is not None
            problem = await _standing_problem(deps, user, form, amount)
            if problem:
                errors[ids.AMOUNT_BLOCK] = problem
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

    async def tell(text: str) -> None:
        await _tell_near_card(deps, user, case_id, text)

    try:
        case = await cases.get(store, case_id)
        deps.rules.check_approve(user, amount, case.currency, group_members=deps.groups.members,
                                 requested_by=case.requested_by)
    except NotAllowed as exc:
        await refuse(deps, user, ids.ADJUST_VIEW, case_id, str(exc), tell=tell)
        return
    except CaseError as exc:
        await tell(f"Could not approve case #{case_id}: {esc(exc, 1000)}")
        return
    with deps.outbox.urgent():
        try:
            await decisions.approve(deps.svc, case_id, by=user, amount=amount, reason=reason,
                                    quote_version=form.version)
        except AlreadyDecided as exc:
            await tell(notes.decided_note(case_id, exc.outcome, exc.decided_by, exc.decided_at))
        except CaseError as exc:
            await tell(f"Could not approve case #{case_id}: {esc(exc, 1000)}")
