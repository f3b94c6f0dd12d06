"""Owns `/refund quote|status|pause|resume|report|help`: ack at once, answer privately after
(`departure` is `departure.py`'s, `simulate` `simulate.py`'s: it opens a modal, so it is given
the command's whole body).

`/refund quote <booking> [at <time>] [waiver CODE]` quotes at the moment asked for (a time in
the business's timezone, or ISO 8601), else at the booking's cancellation when Checkfront
already cancelled it, else now; a quote for another moment offers no Request refund.

Unknown subcommands, unknown bookings and Checkfront being down each get a helpful answer,
never a stack trace or silence. Pause and resume are for approvers; anyone else is refused
(audited, told, nothing changed).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import answers, ids, notes
from bot.slack.ui.kit import context, date_token, esc
from handlers.slack import departure, simulate
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
from services.refunds import cases, requests
from services.refunds.automation import automation_state, set_automation
from services.refunds.history import case_history
from services.refunds.snapshots import assemble_snapshot, quote_snapshot
from services.store import audit
from services.store.db import iso_utc, utcnow

log = logging.getLogger(__name__)


def register(app: AsyncApp, deps: SlackDeps, command: str = "/refund") -> None:
    async def listener(ack: Any, body: Body, respond: Any) -> None:
        await ack()
        words = str(body.get("text") or "").split()
        sub = words[0].lower() if words else "help"
        user, channel = body["user_id"], str(body.get("channel_id") or "")
        if sub == "simulate":   # a modal: it needs the trigger_id
            deps.later("command:simulate", lambda: simulate.command(deps, body, respond))
            return
        deps.later(f"command:{sub}",
                   lambda: _run(deps, sub, words[1:], user, channel, respond))

    app.command(command)(listener)
    simulate.register(app, deps)


async def _run(deps: SlackDeps, sub: str, args: list[str], user: str, channel: str,
               respond: Any) -> None:
    await audit.record(deps.svc.store, actor=user, action="slack.command",
                       detail={"command": sub, "args": args[:4]})
    handler = COMMANDS.get(sub)
    if handler is None:
        message = answers.help_message()
        unknown = f"I don't know `{esc(sub, 40)}`."
        await respond(text=f"{unknown} " + message.text,
                      blocks=[answers.error_message(unknown).blocks[0],
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
    message = answers.error_message(text)
    await respond(text=message.text, blocks=message.blocks, response_type="ephemeral")


QUOTE_USAGE = ("Usage: `/refund quote &lt;booking&gt; [at 2026-12-01 14:00] [waiver CODE]` "
               "(the time in the business's timezone, or ISO 8601 with an offset)")


class QuoteArgs(NamedTuple):
    booking: str
    at: datetime | None      # the moment to quote for (UTC); None: now, or the cancellation
    waiver: str | None


def parse_quote_args(args: list[str], zone: ZoneInfo) -> QuoteArgs:
    """`<booking> [at <time>] [waiver CODE]`, in either order after the booking. A time is
    "2026-12-01 14:00" or "2026-12-01" in `zone`, or ISO 8601 ("2026-12-01T14:00+01:00").
    ValueError (with the reason) on anything else."""
    if not args:
        raise ValueError("which booking?")
    rest = args[1:]
    at: datetime | None = None
    waiver: str | None = None
    while rest:
        word = rest.pop(0).lower()
        if word == "waiver" and rest and waiver is None:
            waiver = rest.pop(0).upper()
        elif word == "at" and rest and at is None:
            text = rest.pop(0)
            if rest and _CLOCK.fullmatch(rest[0]):
                text += " " + rest.pop(0)
            at = _moment(text, zone)
        else:
            raise ValueError(f"I don't understand `{esc(word, 40)}` there")
    return QuoteArgs(args[0], at, waiver)


_CLOCK = re.compile(r"\d{1,2}:\d{2}(:\d{2})?")


def _moment(text: str, zone: ZoneInfo) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"`{esc(text, 40)}` is not a time like 2026-12-01 14:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


async def quote(deps: SlackDeps, args: list[str], user: str, channel: str,
                respond: Any) -> None:
    """A private quote for a booking: at the moment asked for (`at`), else when Checkfront
    cancelled it (a booking already cancelled), else now. Request refund is offered only on a
    quote for the real moment, since that is the moment a case opens at."""
    if not args:
        await _error(respond, f"Which booking? {QUOTE_USAGE}")
        return
    try:
        asked = parse_quote_args(args, deps.zone)
    except ValueError as exc:
        await _error(respond, f"{exc}. {QUOTE_USAGE}")
        return
    raw = await assemble_snapshot(deps.svc, asked.booking)
    now = utcnow()
    moment = asked.at or await requests.moment(deps.svc, raw, now)
    snapshot, q = await quote_snapshot(deps.svc, raw, moment, asked.waiver)
    existing = await cases.find_open(deps.svc.store, snapshot.code)  # by the booking key
    message = answers.quote_message(
        q, booking_ref=snapshot.booking_id, waiver=asked.waiver,
        open_case={"id": existing.id, "status": existing.status.value} if existing else None)
    blocks = message.blocks
    if asked.at is not None:
        note = (f"Quoted as if cancelled at {date_token(iso_utc(asked.at))}. To open a case, "
                "quote it without `at`: a case is quoted when it is asked for.")
        blocks = [context(note), *(b for b in blocks if not _requests(b))]
    elif moment != now:
        blocks = [context(f"Quoted at its cancellation, {date_token(iso_utc(moment))}: what "
                          "Request refund opens."), *blocks]
    await respond(text=message.text, blocks=blocks, response_type="ephemeral")


def _requests(block: dict[str, Any]) -> bool:
    return block.get("type") == "actions" and any(
        e.get("action_id") == ids.REQUEST for e in block.get("elements", []))


async def quote_booking(deps: SlackDeps, booking: str, user: str, channel: str,
                        respond: Any) -> None:
    """`/refund quote <booking>` on someone's behalf (the message shortcut): the same answer,
    the same helpful errors."""
    await _run(deps, "quote", [booking], user, channel, respond)


async def status(deps: SlackDeps, args: list[str], user: str, channel: str,
                 respond: Any) -> None:
    if not args:
        await _error(respond, "Which booking? `/refund status KMVQ-060314`")
        return
    case = await cases.latest_for_booking(deps.svc.store, args[0])
    lines: list[str] = []
    if case is not None:
        lines = case_history(case, await audit.history(deps.svc.store, case.id)).splitlines()
    message = answers.status_message(case, lines)
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
    message = answers.help_message()
    await respond(text=message.text, blocks=message.blocks, response_type="ephemeral")


async def report(deps: SlackDeps, args: list[str], user: str, channel: str,
                 respond: Any) -> None:
    """Figures for a date range privately, and a CSV of every refund in the channel (uploaded
    through the outbox, paced and retried like every other post). Where Slack refuses the file
    (the bot not in the channel, a direct message) the person is told privately how to fix it:
    at once for a DM, through the command's response URL once the outbox is refused."""
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
    if found.rows and channel[:1] == "D":   # the Messages tab is off: no file in a DM
        lines.append(notes.upload_refused(channel, "messages_tab_disabled"))
    elif found.rows and channel:
        await deps.outbox.add_file(
            channel, filename=f"refunds-{first}-{last}.csv", content=found.csv().encode(),
            title=f"Refunds {first} to {last}", comment=f"<@{user}> asked for this",
            response_url=getattr(respond, "response_url", None))
        lines.append("The CSV of every refund follows in this channel.")
    await respond(text="\n".join(lines), response_type="ephemeral")


COMMANDS = {"quote": quote, "status": status, "pause": pause, "resume": resume, "help": help_,
            "report": report, "departure": departure.command}
