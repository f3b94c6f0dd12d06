"""Owns `/refund quote|status|pause|resume|report|help`: ack at once, answer privately after
(`departure` is `departure.py`'s).

Unknown subcommands, unknown bookings and Checkfront being down each get a helpful answer,
never a stack trace or silence. Pause and resume are for approvers; anyone else is refused
(audited, told, nothing changed).
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import cards
from bot.slack.ui.kit import esc
from handlers.slack import departure
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import Body, refuse
from services.clients.checkfront_errors import (
    BookingNotFound,
    CheckfrontError,
    CheckfrontUnavailable,
)
from services.finance.report import ReportError, range_report
from services.money import display
from services.quoting.booking import SnapshotError
from services.quoting.quote import QuoteError
from services.refunds import cases
from services.refunds.automation import automation_state, set_automation
from services.refunds.history import case_history
from services.refunds.snapshots import assemble_snapshot, quote_snapshot
from services.store import audit
from services.store.db import utcnow

log = logging.getLogger(__name__)


def register(app: AsyncApp, deps: SlackDeps, command: str = "/refund") -> None:
    async def listener(ack: Any, body: Body, respond: Any) -> None:
        await ack()
        words = str(body.get("text") or "").split()
        sub = words[0].lower() if words else "help"
        user, channel = body["user_id"], str(body.get("channel_id") or "")
        deps.later(f"command:{sub}",
                   lambda: _run(deps, sub, words[1:], user, channel, respond))

    app.command(command)(listener)


async def _run(deps: SlackDeps, sub: str, args: list[str], user: str, channel: str,
               respond: Any) -> None:
    await audit.record(deps.svc.store, actor=user, action="slack.command",
                       detail={"command": sub, "args": args[:4]})
    handler = COMMANDS.get(sub)
    if handler is None:
        message = cards.help_message()
        unknown = f"I don't know `{esc(sub, 40)}`."
        await respond(text=f"{unknown} " + message.text,
                      blocks=[cards.error_message(unknown).blocks[0],
                              *message.blocks],
                      response_type="ephemeral")
        return
    try:
        await handler(deps, args, user, channel, respond)
    except BookingNotFound:
        await _error(respond, f"Checkfront has no booking `{esc(args[0] if args else '', 60)}`. "
                     "Check the booking code (e.g. `KMVQ-060314`) or id.")
    except CheckfrontUnavailable:
        await _error(respond, "Checkfront isn't answering right now. Try again in a minute; "
                     "nothing was changed.")
    except CheckfrontError as exc:
        await _error(respond, f"Checkfront refused the request: {esc(exc, 500)}")
    except (SnapshotError, QuoteError) as exc:
        await _error(respond, f"I can't quote this booking: {esc(exc, 500)}")
    except ReportError as exc:
        await _error(respond, f"{esc(exc, 300)}. Usage: `/refund report 2026-11-01 2026-11-30`")


async def _error(respond: Any, text: str) -> None:
    """`text` is mrkdwn: what it quotes from the person or a service is `esc`aped."""
    message = cards.error_message(text)
    await respond(text=message.text, blocks=message.blocks, response_type="ephemeral")


async def quote(deps: SlackDeps, args: list[str], user: str, channel: str,
                respond: Any) -> None:
    if not args:
        await _error(respond, "Which booking? `/refund quote KMVQ-060314 [waiver WEATHER]`")
        return
    booking = args[0]
    waiver = None
    if len(args) >= 3 and args[1].lower() == "waiver":
        waiver = args[2].upper()
    elif len(args) > 1:
        await _error(respond, "Usage: `/refund quote &lt;booking&gt; [waiver CODE]`")
        return
    raw = await assemble_snapshot(deps.svc, booking)
    snapshot, q = await quote_snapshot(deps.svc, raw, utcnow(), waiver)
    existing = await cases.find_open(deps.svc.store, snapshot.code)  # by the booking key
    message = cards.quote_message(
        q, booking_ref=snapshot.booking_id, waiver=waiver,
        open_case={"id": existing.id, "status": existing.status.value} if existing else None)
    await respond(text=message.text, blocks=message.blocks, response_type="ephemeral")


async def status(deps: SlackDeps, args: list[str], user: str, channel: str,
                 respond: Any) -> None:
    if not args:
        await _error(respond, "Which booking? `/refund status KMVQ-060314`")
        return
    case = await cases.latest_for_booking(deps.svc.store, args[0])
    lines: list[str] = []
    if case is not None:
        lines = case_history(case, await audit.history(deps.svc.store, case.id)).splitlines()
    message = cards.status_message(case, lines)
    await respond(text=message.text, blocks=message.blocks, response_type="ephemeral")


async def pause(deps: SlackDeps, args: list[str], user: str, channel: str,
                respond: Any) -> None:
    await _toggle(deps, user, respond, paused=True, reason=" ".join(args) or "paused from Slack")


async def resume(deps: SlackDeps, args: list[str], user: str, channel: str,
                 respond: Any) -> None:
    await _toggle(deps, user, respond, paused=False, reason="resumed from Slack")


async def _toggle(deps: SlackDeps, user: str, respond: Any, *, paused: bool, reason: str) -> None:
    word = "pause" if paused else "resume"
    if not deps.is_approver(user):
        await refuse(deps, user, f"command:{word}", None,
                     tell=lambda text: _error(respond, text),
                     note=f"Only refund approvers can {word} automation.")
        return
    current = await automation_state(deps.svc.store)
    if current.paused == paused:
        await _error(respond, f"Automation is already {'paused' if paused else 'running'}.")
        return
    await set_automation(deps.svc, paused=paused, reason=reason, by=user)
    text = ("Automation paused: every new refund now waits for a person." if paused
            else "Automation resumed: policy-clear refunds are approved automatically again.")
    await respond(text=text, response_type="ephemeral")


async def help_(deps: SlackDeps, args: list[str], user: str, channel: str,
                respond: Any) -> None:
    message = cards.help_message()
    await respond(text=message.text, blocks=message.blocks, response_type="ephemeral")


async def report(deps: SlackDeps, args: list[str], user: str, channel: str,
                 respond: Any) -> None:
    """Figures for a date range privately, and a CSV of every refund in the channel (uploaded
    through the outbox, paced and retried like every other post)."""
    try:
        first, last = (date.fromisoformat(a) for a in args[:2])
    except ValueError:
        raise ReportError("dates are YYYY-MM-DD") from None
    if len(args) != 2:
        raise ReportError("give a start and an end date")
    found = await range_report(deps.svc.store, first, last, deps.zone)
    lines = [f"*Refunds {first} → {last}*"]
    lines += [f"• {cur}: {n} refund(s), {display(total, cur)}"
              for cur, (n, total) in found.totals.items()] or ["• none"]
    lines += [f"• {decision.replace('_', ' ')}: {n}" for decision, n in found.decisions.items()]
    if found.rows and channel:
        await deps.outbox.add_file(
            channel, filename=f"refunds-{first}-{last}.csv", content=found.csv().encode(),
            title=f"Refunds {first} to {last}", comment=f"<@{user}> asked for this")
        lines.append("The CSV of every refund is in this channel.")
    await respond(text="\n".join(lines), response_type="ephemeral")


COMMANDS = {"quote": quote, "status": status, "pause": pause, "resume": resume, "help": help_,
            "report": report, "departure": departure.command}
