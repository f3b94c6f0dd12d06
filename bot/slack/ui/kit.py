"""Owns the Block Kit primitives the cards are built from: Slack's limits, text safety, builders.

Every builder here clips its text to the limit Slack documents for that field, and `fit` trims a
message to Slack's 50 blocks, so a message built from them is never refused for length.

Text safety, the one rule for every surface: Slack parses mrkdwn text objects, section fields,
context elements, a message's fallback `text`, thread replies and ephemeral answers; it does not
parse plain_text objects (headers, buttons, confirm dialogs, modal titles, input labels) and
shows entities there literally. So a string from a person, a booking, Stripe or Checkfront goes
through `esc` when it lands in mrkdwn (`&`, `<`, `>` as `&amp;` `&lt;` `&gt;`: no `<!channel>`,
`<@U…>`, `<#C…>` or `<https://…|label>` of its own, no `>` quote; a `*bold*`, `_italic_`,
`~strike~` or `` `code` `` run it would form gets look-alike markers), and through `plain` when it
lands in plain_text. Both scrub anything shaped like an email, phone or card number. The bot's
own markup (`who`'s mentions, `date_token`, links to its cards) is added around escaped text,
never inside it.

Times in Slack are `date_token`s, which each reader sees in their own timezone, with a readable
UTC fallback; `utc_text` is for plain text (the log, the command line). Amounts are `money`
("1,525.00 USD"); `amounts_in` gives bare decimals inside service texts the same form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from bot.text import Markup, clip, parse_time, scrub
from bot.text import amounts_in as amounts_in  # re-exported: the cards import it from here
from services.money import display, to_minor

# Documented Block Kit limits (characters unless noted).
HEADER_TEXT = 150
SECTION_TEXT = 3000
FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
MAX_ACTION_ELEMENTS = 25
CONFIRM_TITLE = 100
CONFIRM_TEXT = 300
CONFIRM_BUTTON = 30
MODAL_TITLE = 24
MODAL_BUTTON = 24
PRIVATE_METADATA = 3000
INPUT_LABEL = 2000
INPUT_HINT = 2000
PLACEHOLDER = 150
MESSAGE_BLOCKS = 50
MODAL_BLOCKS = 100
FALLBACK_TEXT = 300  # notification text: Slack allows far more, people read far less

_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")
# A run of mrkdwn formatting a user string would form: the marker after a start or a non-word
# character, something not blank, the same marker before an end or a non-word character.
_FORMAT_RUN = re.compile(r"(?<![\w*_~`])([*_~`])(?=\S)(.+?)(?<=\S)\1(?![\w*_~`])")
_LOOKALIKE = {"*": "\u2217", "_": "\uff3f", "~": "\u223c", "`": "\u02cb"}


@dataclass(frozen=True)
class Message:
    text: str  # notification fallback text, no PII
    blocks: list[dict[str, Any]]


# --- text ---------------------------------------------------------------------------------

def _unformat(match: re.Match[str]) -> str:
    mark = _LOOKALIKE[match.group(1)]
    return f"{mark}{match.group(2)}{mark}"


def esc(text: object, limit: int = 500) -> str:
    """Free text made safe for mrkdwn: one line, scrubbed, clipped, `&<>` escaped, and any
    formatting run it would form given look-alike markers (so it cannot pass for the bot's own
    bold or code). A SKU like `kayak_tour_2` forms no run and stays as it is."""
    plain = clip(scrub(clip(" ".join(str(text).split()), 2 * limit + 100)), limit)
    if any(mark in plain for mark in _LOOKALIKE):
        plain = _FORMAT_RUN.sub(_unformat, plain)
    return plain.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: object, limit: int) -> str:
    """Free text for a plain_text object: scrubbed and clipped, no escaping."""
    return clip(scrub(clip(" ".join(str(text).split()), 2 * limit + 100)), limit)


def who(actor: str | None) -> str:
    """A Slack user id as a mention, anything else ("policy", "maria") as text."""
    if not actor:
        return "someone"
    return f"<@{actor}>" if _SLACK_USER.fullmatch(actor) else esc(actor, 80)


def date_token(iso: str | None, unknown: str = "unknown") -> str:
    """A Slack date that each reader sees in their own timezone ("Nov 24, 2026 2:05 PM"), with
    "2026-11-24 14:05 UTC" as the fallback where Slack cannot show it; `unknown` when the time
    is missing or unreadable."""
    moment = parse_time(iso)
    if moment is None:
        return esc(iso, 40) if iso else unknown
    utc = moment.astimezone(UTC)
    fallback = utc.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(utc.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def utc_text(iso: str | None) -> str:
    """"2026-11-24 14:05 UTC" for a record's time in plain text (the log, the command line);
    Slack shows `date_token`s."""
    moment = parse_time(iso)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "unknown"


# --- money ----------------------------------------------------------------------------------

def money(minor: int, currency: str) -> str:
    """"1,525.00 USD"."""
    return display(minor, currency)


def number(minor: int, currency: str) -> str:
    """"1,525.00" (no code), for lists where the currency is already stated."""
    return display(minor, currency).rsplit(" ", 1)[0]


def minor_of(text: str | int, currency: str) -> int:
    """A quote amount (decimal string in major units) in minor units."""
    return to_minor(text, currency)


# --- blocks -------------------------------------------------------------------------------

def mrkdwn(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def plain_text(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": plain_text(text, HEADER_TEXT)}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(text)}


def fields(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Label/value pairs side by side (at most ten)."""
    items = [mrkdwn(f"*{label}*\n{value}", FIELD_TEXT) for label, value in pairs]
    return {"type": "section", "fields": items[:MAX_FIELDS]}


def context(*texts: str) -> dict[str, Any]:
    return {"type": "context",
            "elements": [mrkdwn(t) for t in texts[:MAX_CONTEXT_ELEMENTS]]}


def divider() -> dict[str, Any]:
    return {"type": "divider"}


def actions(*elements: dict[str, Any], block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "actions", "elements": list(elements[:MAX_ACTION_ELEMENTS])}
    if block_id:
        block["block_id"] = block_id
    return block


def confirm(title: str, text: str, yes: str, no: str = "Cancel",
            style: str | None = None) -> dict[str, Any]:
    dialog: dict[str, Any] = {
        "title": plain_text(title, CONFIRM_TITLE),
        "text": plain_text(text, CONFIRM_TEXT),
        "confirm": plain_text(yes, CONFIRM_BUTTON),
        "deny": plain_text(no, CONFIRM_BUTTON),
    }
    if style:
        dialog["style"] = style
    return dialog


def button(text: str, action_id: str, value: str, *, style: str | None = None,
           confirm_dialog: dict[str, Any] | None = None) -> dict[str, Any]:
    if len(value) > BUTTON_VALUE:
        raise ValueError(f"button value is {len(value)} characters; Slack allows {BUTTON_VALUE}")
    element: dict[str, Any] = {"type": "button", "text": plain_text(text, BUTTON_TEXT),
                               "action_id": action_id, "value": value}
    if style:
        element["style"] = style
    if confirm_dialog:
        element["confirm"] = confirm_dialog
    return element


def text_input(block_id: str, action_id: str, label: str, *, multiline: bool = False,
               initial: str | None = None, hint: str | None = None,
               placeholder: str | None = None, max_length: int | None = None) -> dict[str, Any]:
    """A required input block holding one plain_text_input."""
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": action_id,
                               "multiline": multiline}
    if initial is not None:
        element["initial_value"] = initial
    if placeholder:
        element["placeholder"] = plain_text(placeholder, PLACEHOLDER)
    if max_length:
        element["max_length"] = max_length
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "optional": False,
                             "label": plain_text(label, INPUT_LABEL), "element": element}
    if hint:
        block["hint"] = plain_text(hint, INPUT_HINT)
    return block


def modal(callback_id: str, title: str, blocks: list[dict[str, Any]], *, submit: str,
          close: str, private_metadata: str) -> dict[str, Any]:
    if len(private_metadata) > PRIVATE_METADATA:
        raise ValueError("private_metadata is longer than Slack allows")
    return {"type": "modal", "callback_id": callback_id,
            "title": plain_text(title, MODAL_TITLE), "submit": plain_text(submit, MODAL_BUTTON),
            "close": plain_text(close, MODAL_BUTTON), "private_metadata": private_metadata,
            "blocks": blocks[:MODAL_BLOCKS]}


def line_sections(lines: Sequence[str], *, title: str | None = None,
                  max_sections: int = 2) -> list[dict[str, Any]]:
    """Lines packed into as few sections as fit; whole lines only, "…and N more" when cut."""
    if not lines:
        return []
    chunks: list[list[str]] = [[f"*{title}*"]] if title else [[]]
    sizes = [len(chunks[0][0]) if title else 0]
    shown = 0
    budget = SECTION_TEXT - 40  # room for the "…and N more" line
    for line in lines:
        line = clip(line, budget)
        extra = len(line) + (1 if chunks[-1] else 0)
        if sizes[-1] + extra > budget:
            if len(chunks) == max_sections:
                break
            chunks.append([])
            sizes.append(0)
            extra = len(line)
        chunks[-1].append(line)
        sizes[-1] += extra
        shown += 1
    if shown < len(lines):
        chunks[-1].append(f"_…and {len(lines) - shown} more_")
    return [section("\n".join(chunk)) for chunk in chunks if chunk]


def fit(blocks: list[dict[str, Any]], keep_last: int = 0) -> list[dict[str, Any]]:
    """At most 50 blocks for a message; the last `keep_last` (buttons, outcome) always stay."""
    if len(blocks) <= MESSAGE_BLOCKS:
        return blocks
    return blocks[: MESSAGE_BLOCKS - keep_last] + blocks[len(blocks) - keep_last:]


def fallback(text: str) -> str:
    """Notification text (what a screen reader and the notification say): one line, clipped.
    Slack parses it as mrkdwn: its pieces from people or bookings are `esc`aped by the caller."""
    return clip(" ".join(text.split()), FALLBACK_TEXT)


def archive_link(channel: str, ts: str) -> str:
    """A link to one Slack message, as Slack's "Copy link" makes it."""
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


# How the shared sentences (`bot.text`: outcome and digest lines) are written in mrkdwn.
MARKUP = Markup(escape=esc, bold=lambda text: f"*{text}*", code=lambda text: f"`{text}`",
                who=who, when=date_token,
                icons={"approved": ":white_check_mark:", "denied": ":no_entry:",
                       "skipped": ":heavy_minus_sign:", "refunding": ":hourglass_flowing_sand:",
                       "stripe": ":money_with_wings:", "failed": ":x:", "waiting": ":hourglass:",
                       "warning": ":warning:", "resolved": ":white_check_mark:",
                       "alarm": ":rotating_light:", "paused": ":double_vertical_bar:",
                       "running": ":arrow_forward:"})
