"""Owns the link buttons on a refund card: "Open in Checkfront" and "View in Stripe".

Both are Block Kit url buttons: Slack opens the page in the browser and still sends the bot a
`block_actions` request, which `handlers.slack.card_actions` acks and nothing more. Where the
links point (the same for every platform) is `bot.card_links`.
"""

from __future__ import annotations

from typing import Any

from bot.card_links import (
    NO_LINKS,
    STRIPE_DASHBOARD,
    CardLinks,
    card_urls,
    checkfront_booking_url,
    stripe_payment,
    stripe_payment_url,
)
from bot.slack.ui import ids
from bot.slack.ui.kit import BUTTON_TEXT, plain_text
from services.quoting.quote import Quote

__all__ = ["NO_LINKS", "STRIPE_DASHBOARD", "URL_MAX", "CardLinks", "checkfront_booking_url",
           "link_buttons", "stripe_payment", "stripe_payment_url", "url_button"]

URL_MAX = 3000   # Block Kit: a button's url
_BUTTONS = {"checkfront": ("Open in Checkfront", ids.OPEN_CHECKFRONT),
            "stripe": ("View in Stripe", ids.VIEW_STRIPE)}


def url_button(text: str, action_id: str, url: str) -> dict[str, Any]:
    return {"type": "button", "text": plain_text(text, BUTTON_TEXT), "action_id": action_id,
            "url": url}


def link_buttons(links: CardLinks, booking_code: str, quote_: Quote) -> list[dict[str, Any]]:
    """The card's link buttons, those that can be made (a URL within Slack's limit)."""
    return [url_button(*_BUTTONS[which], url)
            for which, url in card_urls(links, booking_code, quote_, URL_MAX)]
