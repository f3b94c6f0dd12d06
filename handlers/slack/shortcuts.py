"""The message shortcut **Quote refund** ("Quote refund for this booking"): it finds a
Checkfront booking code in the message and answers with that booking's quote privately.

Checkfront's booking codes are four letters, a dash and six digits (`KMVQ-060314`); the first
one in the message text is quoted, exactly as `/refund quote <code>` answers (with its helpful
errors), through the shortcut's response URL. A message without one gets a private note
saying what was looked for.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import ids
from bot.slack.ui.kit import esc
from handlers.slack.commands import quote_booking
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import Body, user_of

BOOKING_CODE = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{4}-\d{6})(?![A-Za-z0-9])")


def booking_codes(text: str) -> list[str]:
    """The booking codes in a message, upper case, each once, in order."""
    seen: list[str] = []
    for match in BOOKING_CODE.finditer(text):
        code = match.group(1).upper()
        if code not in seen:
            seen.append(code)
    return seen


def register(app: AsyncApp, deps: SlackDeps) -> None:
    @app.shortcut(ids.QUOTE_SHORTCUT)
    async def quote_message(ack: Any, body: Body, respond: Any) -> None:
        await ack()
        deps.later(f"shortcut:{user_of(body)}", lambda: _quote(deps, body, respond))


async def _quote(deps: SlackDeps, body: Body, respond: Any) -> None:
    message = body.get("message") or {}
    codes = booking_codes(str(message.get("text") or ""))
    user = user_of(body)
    channel = str((body.get("channel") or {}).get("id") or "")
    if not codes:
        await respond(text="I found no Checkfront booking code (like `KMVQ-060314`) in that "
                      "message. Try `/refund quote &lt;booking&gt;`.",
                      response_type="ephemeral", replace_original=False)
        return
    if len(codes) > 1:
        others = ", ".join(f"`{esc(c, 20)}`" for c in codes[1:4])
        await respond(text=f"That message names {len(codes)} bookings; quoting "
                      f"`{esc(codes[0], 20)}`. For the others: `/refund quote` {others}.",
                      response_type="ephemeral", replace_original=False)
    await quote_booking(deps, codes[0], user, channel, respond)
