"""Text on a Teams card: the one escaping rule for anything a person, a booking, Stripe or
Checkfront wrote, times, amounts and people.

Teams renders a subset of Markdown in a TextBlock's `text` and in a FactSet's titles and values:
`**bold**`, `_italic_`, `[label](url)` links, `- ` and `1. ` lists, and it renders a backslash
escape differently from one client to the next (desktop, web, iOS, Android). So `md` does not
rely on backslashes: it gives every character that could start markup a look-alike that is
inert on every client (`*` ∗, `_` in a run ＿, `[` `]` ［ ］, `` ` `` ˋ, `<` `>` ‹ ›, `\\` ∖, a
leading `#`, `-`, `+`, `>` or `1.`), joins the text to one line (a list or paragraph needs a
line break), and breaks a bare `://` so a booking code or a reason cannot become a link. It also
masks anything shaped like an email, phone or card number (`bot.text.scrub`) and clips. The
card's own markup (bold labels, its links) is added around escaped text, never inside it.

Times in a TextBlock are Adaptive Card date functions (`{{DATE(…, SHORT)}} {{TIME(…)}}`), which
each reader sees in their own timezone; where the functions are not rendered (FactSet values,
fallback text) times are "2026-11-24 14:05 UTC". Amounts are `services.money.display`
("1,525.00 USD"), as on Slack.
"""

from __future__ import annotations

import re
from datetime import UTC

from bot.text import Markup, amounts_in, clip, parse_time, scrub
from services.money import display

# Markup a user string could form, with the look-alike that shows instead.
_ALWAYS = str.maketrans({"*": "\u2217", "[": "\uff3b", "]": "\uff3d", "`": "\u02cb",
                         "<": "\u2039", ">": "\u203a", "\\": "\u2216", "~": "\u223c"})
# an underscore run (`_italic_`) is markup; one inside a word (a SKU like kayak_tour_2) is not
_UNDERSCORE_RUN = re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])")
_LEADING = re.compile(r"^(\s*)(#+|[-+>]|\d+[.)])(?=\s|$)")
_LEAD_LOOKALIKE = {"#": "\uff03", "-": "\u2010", "+": "\uff0b", ">": "\u203a"}


def _lead(match: re.Match[str]) -> str:
    mark = match.group(2)
    if mark[0].isdigit():
        return match.group(1) + mark[:-1] + ("\uff0e" if mark[-1] == "." else "\uff09")
    return match.group(1) + "".join(_LEAD_LOOKALIKE[c] for c in mark)


def md(text: object, limit: int = 500) -> str:
    """Free text made inert for a card's Markdown: one line, scrubbed, clipped, no markup of
    its own (see the module's docstring). None and "" give ""."""
    if text is None:
        return ""
    line = clip(scrub(clip(" ".join(str(text).split()), 2 * limit + 100)), limit)
    line = line.translate(_ALWAYS).replace("://", ":/\u2060/")
    if "_" in line:
        line = _UNDERSCORE_RUN.sub(lambda m: f"\uff3f{m.group(1)}\uff3f", line)
    return _LEADING.sub(_lead, line, count=1)


def money(minor: int, currency: str) -> str:
    """"1,525.00 USD"."""
    return display(minor, currency)


def amounts(text: str, currency: str | None) -> str:
    """A service text with its bare amounts shown as money (`bot.text.amounts_in`)."""
    return amounts_in(text, currency) if currency else text


def when(iso: str | None, unknown: str = "unknown") -> str:
    """A time for a TextBlock, in each reader's own timezone (Adaptive Card date functions)."""
    moment = parse_time(iso)
    if moment is None:
        return md(iso, 40) if iso else unknown
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{{{{DATE({stamp}, SHORT)}}}} {{{{TIME({stamp})}}}}"


def utc(iso: str | None, unknown: str = "unknown") -> str:
    """"2026-11-24 14:05 UTC", for facts and fallback text (no date functions there)."""
    moment = parse_time(iso)
    if moment is None:
        return md(iso, 40) if iso else unknown
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def who(actor: str | None) -> str:
    """Who acted, as the store records it (a display name, "policy"), escaped."""
    return md(actor, 80) if actor else "someone"


def first_name(name: str) -> str:
    words = name.split()
    return md(words[0], 40) if words else ""


# How the shared sentences (`bot.text`: outcome and digest lines) are written on a card.
MARKUP = Markup(escape=md, bold=lambda text: f"**{text}**", code=lambda text: text,
                who=who, when=when,
                icons={"approved": "✅", "denied": "⛔", "skipped": "➖", "refunding": "⏳",
                       "stripe": "💸", "failed": "❌", "waiting": "⏳", "warning": "⚠️",
                       "resolved": "✅", "alarm": "🚨", "paused": "⏸️", "running": "▶️"})
