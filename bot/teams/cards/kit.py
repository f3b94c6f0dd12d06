"""The Adaptive Card elements the Teams cards are built from (schema 1.5), as content dicts.

Each builder writes only properties the 1.5 schema defines (tests validate every card against
it). `card` makes the AdaptiveCard itself: the body, the card-level actions, an optional
`refresh` (Universal Actions: Teams runs it for the listed users when they view the card, so
each approver sees the card as it is now) and the fallback text for notifications.
"""

from __future__ import annotations

from typing import Any

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"
REFRESH_USERS = 60      # Teams runs a refresh automatically for at most 60 listed users
FALLBACK_TEXT = 300
FACTS = 6               # a card's key facts: four to six
TITLE = 60              # a button's title (Teams shows about this much)


def text(body: str, *, size: str | None = None, weight: str | None = None,
         color: str | None = None, subtle: bool = False, spacing: str | None = None,
         separator: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "TextBlock", "text": body, "wrap": True}
    if size:
        block["size"] = size
    if weight:
        block["weight"] = weight
    if color:
        block["color"] = color
    if subtle:
        block["isSubtle"] = True
    if spacing:
        block["spacing"] = spacing
    if separator:
        block["separator"] = True
    return block


def heading(body: str) -> dict[str, Any]:
    return text(body, size="Medium", weight="Bolder")


def section(title: str, lines: list[str], *, limit: int = 12) -> list[dict[str, Any]]:
    """A bold title and its lines as a Markdown list (cut after `limit`, saying how many)."""
    if not lines:
        return []
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"…and {len(lines) - limit} more")
    return [text(f"**{title}**", spacing="Medium"),
            text("\n".join(f"- {line}" for line in shown), spacing="Small")]


def facts(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"type": "FactSet",
            "facts": [{"title": title, "value": value or "—"} for title, value in pairs[:FACTS]]}


def execute(title: str, verb: str, data: dict[str, Any], *, style: str | None = None,
            inputs: str | None = None) -> dict[str, Any]:
    """A Universal Action: Teams sends an `adaptiveCard/action` invoke with `verb` and `data`
    merged with the card's inputs (`inputs="none"`: send none and validate none)."""
    action: dict[str, Any] = {"type": "Action.Execute", "title": title[:TITLE], "verb": verb,
                              "data": data}
    if style:
        action["style"] = style
    if inputs:
        action["associatedInputs"] = inputs
    return action


def open_url(title: str, url: str) -> dict[str, Any]:
    return {"type": "Action.OpenUrl", "title": title[:TITLE], "url": url}


def show_card(title: str, body: list[dict[str, Any]],
              actions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "Action.ShowCard", "title": title[:TITLE],
            "card": {"type": "AdaptiveCard", "body": body, "actions": actions}}


def text_input(input_id: str, label: str, *, placeholder: str | None = None,
               value: str | None = None, multiline: bool = False, max_length: int | None = None,
               error: str | None = None, regex: str | None = None) -> dict[str, Any]:
    """A required text input; `error` is the message Teams shows under it when the value
    fails `regex` or is missing on submit."""
    field: dict[str, Any] = {"type": "Input.Text", "id": input_id, "label": label,
                             "isRequired": True, "isMultiline": multiline}
    if placeholder:
        field["placeholder"] = placeholder
    if value is not None:
        field["value"] = value
    if max_length:
        field["maxLength"] = max_length
    if error:
        field["errorMessage"] = error
    if regex:
        field["regex"] = regex
    return field


def image(url: str, alt: str) -> dict[str, Any]:
    return {"type": "Image", "url": url, "altText": alt, "size": "Stretch"}


def refresh(data: dict[str, Any], user_ids: list[str]) -> dict[str, Any]:
    """Run the `refresh` verb for these users when they view the card (at most 60)."""
    return {"action": {"type": "Action.Execute", "title": "Refresh", "verb": "refresh",
                       "data": data},
            "userIds": list(dict.fromkeys(user_ids))[:REFRESH_USERS]}


def card(body: list[dict[str, Any]], actions: list[dict[str, Any]] | None = None, *,
         fallback: str, refreshed: dict[str, Any] | None = None) -> dict[str, Any]:
    made: dict[str, Any] = {"type": "AdaptiveCard", "$schema": SCHEMA, "version": VERSION,
                            "body": body,
                            "fallbackText": " ".join(fallback.split())[:FALLBACK_TEXT]}
    if actions:
        made["actions"] = actions
    if refreshed is not None:
        made["refresh"] = refreshed
    return made
