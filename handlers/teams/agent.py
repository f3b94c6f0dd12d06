"""Owns what Teams sends the bot: installs, messages (commands) and card actions.

Registered on the Agents SDK's `AgentApplication` (its route decorators):
- every activity first (`before_turn`): its conversation reference is stored, so the bot can
  post there later, also after a restart; a `conversationUpdate` adding the app to a team is
  how the approvals and digest channels become reachable;
- a message is a command (`quote`, `status`, `pause`, `resume`, `report`, `help`), answered in
  the personal chat, or in the thread in a channel, as a card (`answer_card`); the same
  services as /refund in Slack;
- `adaptiveCard/action` (Universal Actions) with verbs `approve`, `deny`, `adjust`, `resume`,
  `refresh`, data `{"case_id", "version"}`: the same decisions, permissions and exactly-once
  path as the Slack buttons; the answer is the refreshed card (the posted activity is also
  edited, through the outbox, for everyone); a refusal is audited and answered to the
  clicker only with `refused_card` (no decision buttons, refreshed for that user only); an
  invalid adjusted amount or a missing reason answers the card again with that form open and
  the error under its field. Deny's reason is `reason`, Adjust's `amount` and
  `adjust_reason` (`cards.decision_inputs`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from microsoft_agents.activity import Activity, ActivityTypes
from microsoft_agents.hosting.core import AgentApplication, TurnContext, TurnState
from microsoft_agents.hosting.core.app.adaptive_card import factory

from bot.teams import cards
from services.deps import Deps
from services.finance.report import ReportError, range_report
from services.money import display, to_minor
from services.refunds import cases, decisions
from services.refunds.automation import automation_state, set_automation
from services.refunds.models import AlreadyDecided, CaseError, StaleQuote
from services.refunds.permissions import ApproverRules, NotAllowed
from services.refunds.snapshots import assemble_snapshot, quote_snapshot
from services.store import audit
from services.store.db import utcnow

log = logging.getLogger(__name__)

HELP = ("Commands: quote <booking> [at <time>] [waiver CODE] · status <booking> · "
        "pause <reason> · resume · report <from> <to> (YYYY-MM-DD) · help")
ONLY_APPROVERS = "Only refund approvers can do that."
CARD_CONTENT = "application/vnd.microsoft.card.adaptive"


@dataclass
class TeamsDeps:
    svc: Deps
    rules: ApproverRules
    zone: ZoneInfo
    remember: Callable[[Activity], Awaitable[None]]          # store a conversation reference
    card_for: Callable[..., Awaitable[dict[str, Any]]]       # a case's card as it stands
    refused_for: Callable[[int, str, str], Awaitable[dict[str, Any]]]   # (case, user, why)
    refresh: Callable[[int], Awaitable[None]]                # edit the posted card for everyone


def register(app: AgentApplication, deps: TeamsDeps) -> None:
    async def capture(context: TurnContext, _state: TurnState) -> bool:
        if context.activity.conversation is not None and context.activity.service_url:
            await deps.remember(context.activity)
        return True

    app.before_turn(capture)

    @app.conversation_update("membersAdded")
    async def installed(context: TurnContext, _state: TurnState) -> None:
        return None   # captured by `capture`; nothing is said on install

    @app.activity(ActivityTypes.message)
    async def on_message(context: TurnContext, _state: TurnState) -> None:
        card = answer(await command(deps, context))
        await context.send_activity(Activity(type=ActivityTypes.message, attachments=[
            {"contentType": CARD_CONTENT, "content": card}]))

    for verb in ("approve", "deny", "adjust", "resume", "refresh"):
        app.adaptive_card.action_execute(verb)(_action(deps, verb))


def _user(context: TurnContext) -> str:
    sender = context.activity.from_property
    return str(getattr(sender, "aad_object_id", None) or (sender.id if sender else ""))


# --- card actions --------------------------------------------------------------------------

def _action(deps: TeamsDeps, verb: str) -> Callable[..., Awaitable[Any]]:
    async def handler(context: TurnContext, _state: TurnState, data: Any) -> Any:
        data = data if isinstance(data, dict) else {}
        user = _user(context)
        try:
            case_id = int(data.get("case_id", 0))
        except (TypeError, ValueError):
            return factory.bad_request("The card's data names no case.")
        version = str(data.get("version") or "") or None
        if verb == "resume":
            return await _resume(deps, user)
        try:
            case = await cases.get(deps.svc.store, case_id)
        except CaseError:
            return factory.bad_request("That case does not exist.")
        if verb == "refresh":   # Teams asks when someone views the card (or presses Back)
            if not deps.rules.is_approver(user):   # a refused viewer keeps their own view
                return _card(await deps.refused_for(case_id, user, ONLY_APPROVERS))
            return _card(await deps.card_for(case_id))
        if not deps.rules.is_approver(user):
            return await _refused(deps, user, verb, case_id, ONLY_APPROVERS)
        if verb == "approve":
            return await _decide(deps, user, case_id, version, approve=True,
                                 amount=case.refund_amount, currency=case.currency,
                                 requested_by=case.requested_by)
        amount_text, reason = cards.decision_inputs(verb, data)
        if verb == "deny":
            if not reason:
                return _card(await deps.card_for(
                    case_id, form=cards.DENY, values={cards.REASON: reason},
                    errors={cards.REASON: "Say why it is denied."}))
            return await _decide(deps, user, case_id, version, approve=False, reason=reason)
        amount, problem = check_amount(amount_text, case.refund_amount, case.currency)
        errors = {cards.AMOUNT: problem} if problem else {}
        if not reason:
            errors[cards.ADJUST_REASON] = "Say why the amount is adjusted."
        if errors:
            return _card(await deps.card_for(
                case_id, form=cards.ADJUST, errors=errors,
                values={cards.AMOUNT: amount_text, cards.ADJUST_REASON: reason}))
        assert amount is not None
        return await _decide(deps, user, case_id, version, approve=True, amount=amount,
                             currency=case.currency, requested_by=case.requested_by,
                             reason=reason, adjusted=True)
    return handler


def check_amount(text: str, ceiling: int, currency: str) -> tuple[int | None, str | None]:
    """An adjusted amount typed as a decimal string: its minor units, or why not."""
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        return None, "Type an amount such as 12.50."
    if not value.is_finite() or value <= 0:
        return None, "The amount must be more than zero."
    try:
        minor = to_minor(value, currency)
    except (ValueError, ArithmeticError):
        return None, f"Use at most the decimals {currency} has."
    if minor > ceiling:
        return None, f"That is more than the {display(ceiling, currency)} quoted."
    return minor, None


async def _decide(deps: TeamsDeps, user: str, case_id: int, version: str | None, *,
                  approve: bool, amount: int = 0, currency: str = "", reason: str = "",
                  requested_by: str | None = None, adjusted: bool = False) -> Any:
    if approve:
        try:
            deps.rules.check_approve(user, amount, currency, requested_by=requested_by)
        except NotAllowed as exc:
            return await _refused(deps, user, "adjust" if adjusted else "approve", case_id,
                                  str(exc))
    note = None
    try:
        if approve:
            await decisions.approve(deps.svc, case_id, by=user,
                                    amount=amount if adjusted else None,
                                    reason=reason or None, quote_version=version)
        else:
            await decisions.deny(deps.svc, case_id, by=user, reason=reason,
                                 quote_version=version)
    except StaleQuote:
        note = "This card was out of date: the refund was re-quoted. It shows the new quote."
    except AlreadyDecided as exc:
        note = f"Already {exc.outcome} by {exc.decided_by}."
    except CaseError as exc:
        note = str(exc)[:500]
    await deps.refresh(case_id)
    return _card(await deps.card_for(case_id, note=note))


async def _refused(deps: TeamsDeps, user: str, verb: str, case_id: int | None,
                   why: str) -> Any:
    """Audited; the clicker alone sees why: the invoke's answer goes only to whoever clicked
    (a card without decision buttons, refreshed for that user only); the posted card is not
    edited."""
    await audit.record(deps.svc.store, actor=user, action="teams.refused", case_id=case_id,
                       detail={"action": verb, "why": why})
    if case_id:
        return _card(await deps.refused_for(case_id, user, why))
    return _card(cards.answer_card("Not done", [why]))


async def _resume(deps: TeamsDeps, user: str) -> Any:
    if not deps.rules.is_approver(user):
        return await _refused(deps, user, "resume", None, ONLY_APPROVERS)
    current = await automation_state(deps.svc.store)
    if current.paused:
        await set_automation(deps.svc, paused=False, reason="resumed from Teams", by=user)
        return _card(cards.automation_card(True, current.reason or "", current.by or "", [],
                                           resumed_by=user, resumed_at=utcnow().isoformat()))
    return _card(cards.automation_card(False, "", user, []))


def _card(card: dict[str, Any]) -> Any:
    return factory.adaptive_card(json.dumps(card)).model_copy(update={"value": card})


# --- commands ---------------------------------------------------------------------------------

def answer(text: str) -> dict[str, Any]:
    """A command's answer as a card: its first line the title, each further line a line of
    its own (every one escaped: a booking's or a policy's text cannot form markup)."""
    title, *lines = text.split("\n")
    return cards.answer_card(title, [line.removeprefix("- ") for line in lines])


async def command(deps: TeamsDeps, context: TurnContext) -> str:
    text = TurnContext.remove_recipient_mention(context.activity) \
        if context.activity.entities else None
    words = str(text if text is not None else context.activity.text or "").split()
    sub, args = (words[0].lower(), words[1:]) if words else ("help", [])
    user = _user(context)
    try:
        if sub == "quote":
            return await _quote(deps, args)
        if sub == "status":
            return await _status(deps, args)
        if sub in ("pause", "resume"):
            return await _toggle(deps, user, paused=sub == "pause",
                                 reason=" ".join(args) or "paused from Teams")
        if sub == "report":
            return await _report(deps, args)
    except ReportError as exc:
        return f"Could not make the report: {exc}. report 2026-01-01 2026-01-31"
    except Exception as exc:   # a helpful answer, never silence
        log.warning("teams command %s failed: %s", sub, exc.__class__.__name__)
        return f"Could not do that now ({exc.__class__.__name__}); try again shortly."
    return HELP


async def _quote(deps: TeamsDeps, args: list[str]) -> str:
    from handlers.slack.commands import parse_quote_args  # the same grammar as /refund quote
    if not args:
        return "Which booking? quote HBR-1001 [at <time>] [waiver WEATHER]"
    try:
        asked = parse_quote_args(args, deps.zone)
    except ValueError as exc:
        return f"{exc}. quote HBR-1001 [at <time>] [waiver WEATHER]"
    raw = await assemble_snapshot(deps.svc, asked.booking)
    _snapshot, q = await quote_snapshot(deps.svc, raw, asked.at or utcnow(), asked.waiver)
    lines = [f"Quote for {q.booking_code}: refund {q.amount(q.total_refund)} of "
             f"{q.amount(q.net_paid)} paid (fee {q.amount(q.fee)}); {q.decision.value}."]
    lines += [f"- {reason}" for reason in q.reasons]
    return "\n".join(lines)


async def _status(deps: TeamsDeps, args: list[str]) -> str:
    if not args:
        return "Which booking? status HBR-1001"
    case = await cases.latest_for_booking(deps.svc.store, args[0])
    if case is None:
        return f"No refund case for {args[0]}."
    return (f"Case #{case.id} for {case.booking_code}: {case.status.value.replace('_', ' ')}, "
            f"{case.money(case.approved_amount or case.refund_amount)}.")


async def _toggle(deps: TeamsDeps, user: str, *, paused: bool, reason: str) -> str:
    word = "pause" if paused else "resume"
    if not deps.rules.is_approver(user):
        await audit.record(deps.svc.store, actor=user, action="teams.refused", case_id=None,
                           detail={"action": f"command:{word}", "why": ONLY_APPROVERS})
        return f"Only refund approvers can {word} automation."
    if (await automation_state(deps.svc.store)).paused == paused:
        return f"Automation is already {'paused' if paused else 'running'}."
    await set_automation(deps.svc, paused=paused,
                         reason=reason if paused else "resumed from Teams", by=user)
    return ("Automation paused: every new refund now waits for a person." if paused
            else "Automation resumed: policy-clear refunds are approved automatically again.")


async def _report(deps: TeamsDeps, args: list[str]) -> str:
    if len(args) != 2:
        raise ReportError("give a start and an end date")
    try:
        first, last = (date.fromisoformat(a) for a in args)
    except ValueError:
        raise ReportError("dates are YYYY-MM-DD") from None
    found = await range_report(deps.svc.store, first, last, deps.zone)
    lines = [f"Refunds {first} to {last}"]
    lines += [f"- {cur}: {n} refund(s), {display(total, cur)}"
              for cur, (n, total) in found.totals.items()] or ["- none"]
    return "\n".join(lines)
