"""Text rules every chat platform shares: clipping, masking contact and card data in free text,
reading a stored time, and showing the bare amounts inside a service's text as money. Each
platform escapes for its own markup on top (Slack: `bot.slack.ui.kit.esc`, Teams:
`bot.teams.cards.text.md`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from services.money import MoneyError, display, exponent, to_minor

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")  # lookbehind: linear time
_PHONE = re.compile(r"\+\d[\d\s().-]{6,}\d")
# card numbers: 13-19 digits together, in groups of four, or Amex's 4-6-5 (not date ranges)
_CARD = re.compile(r"\b(?:\d{13,19}|(?:\d{4}[ -]){3}\d{1,7}|\d{4}[ -]\d{6}[ -]\d{5})\b")


def clip(text: str, limit: int) -> str:
    """At most `limit` characters; a cut ends with an ellipsis."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def scrub(text: str) -> str:
    """Mask what looks like contact or card data in free text."""
    if "@" in text:
        text = _EMAIL.sub("[email hidden]", text)
    text = _CARD.sub("[number hidden]", text)
    return _PHONE.sub("[phone hidden]", text)


def parse_time(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_BARE_AMOUNT = re.compile(r"(?<![\w.,])(\d+)\.(\d+)(?![\w.,%]| ?[A-Z]{3}\b)")


def amounts_in(text: str, currency: str) -> str:
    """A service text ("refund 1525.00 is over the escalation limit 1500.00") with each bare
    decimal amount in the currency's exponent shown as `money` ("1,525.00 USD"); anything else,
    and currencies without decimals, as it was."""
    try:
        places = exponent(currency)
    except MoneyError:
        return text
    if not places or "." not in text:
        return text

    def shown(match: re.Match[str]) -> str:
        if len(match.group(2)) != places:
            return match.group(0)
        return display(to_minor(match.group(0), currency), currency)

    return _BARE_AMOUNT.sub(shown, text)


