"""Block Kit limits as Slack enforces them, for the Slack stand-in: what Slack would refuse.

`message_errors(blocks)` checks a message's blocks (chat.postMessage, chat.update,
chat.postEphemeral, a response_url post); `view_errors(view)` checks a modal or a Home tab
(views.open, views.push, views.update, views.publish). Each returns Slack's own style of
complaint, one string per problem, with a JSON pointer to the offending field:

    must be less than 3001 characters [json-pointer:/blocks/0/text/text]

Slack answers a message with `{"ok": false, "error": "invalid_blocks", "errors": [...],
"response_metadata": {"messages": ["[ERROR] ...", ...]}}` and a view with the same messages
under `invalid_arguments`. The limits are the ones the Block Kit reference documents (blocks,
block elements, composition objects, view objects); only the fields the stand-in can judge
without Slack's renderer are checked. A message's `text` over 40,000 characters is not refused:
Slack truncates it (`MESSAGE_TEXT_LIMIT`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MESSAGE_BLOCKS = 50          # blocks in one message
VIEW_BLOCKS = 100            # blocks in a modal or a Home tab
MESSAGE_TEXT_LIMIT = 40_000  # a message's `text` is truncated past this, not refused
ID_LENGTH = 255              # block_id, action_id, callback_id, external_id

TEXT_TYPES = ("plain_text", "mrkdwn")
BLOCK_TYPES = {"section", "header", "actions", "context", "divider", "image", "input",
               "rich_text", "file", "video", "markdown"}
# Elements that carry a single text object (their label) and the longest text it may have.
ELEMENT_TEXT = {"button": 75}
ELEMENT_PLACEHOLDER = 150
OPTION_TEXT, OPTION_VALUE, OPTION_DESCRIPTION = 75, 150, 75
OPTIONS_MAX = {"static_select": 100, "multi_static_select": 100, "overflow": 5,
               "radio_buttons": 10, "checkboxes": 10}
OPTIONS_MIN = {"overflow": 1}
CONFIRM_LIMITS = {"title": 100, "text": 300, "confirm": 30, "deny": 30}


def message_errors(blocks: Any) -> list[str]:
    """What Slack would say about a message's `blocks` (empty: it would accept them)."""
    if blocks is None:
        return []
    return list(_blocks(blocks, "/blocks", MESSAGE_BLOCKS, in_view=False))


def view_errors(view: Any) -> list[str]:
    """What Slack would say about a view object (empty: it would accept it)."""
    if not isinstance(view, dict):
        return ["must be an object [json-pointer:/view]"]
    return list(_view(view))


def slack_messages(errors: list[str]) -> dict[str, Any]:
    """The `errors` and `response_metadata.messages` parts of Slack's refusal."""
    return {"errors": list(errors),
            "response_metadata": {"messages": [f"[ERROR] {e}" for e in errors]}}


def truncate_text(text: Any) -> Any:
    """A message's `text` as Slack keeps it: cut at 40,000 characters."""
    if isinstance(text, str) and len(text) > MESSAGE_TEXT_LIMIT:
        return text[:MESSAGE_TEXT_LIMIT]
    return text


# ---- views ---------------------------------------------------------------------------------

def _view(view: dict[str, Any]) -> Iterator[str]:
    kind = view.get("type")
    if kind not in ("modal", "home"):
        yield _at("must be one of modal, home", "/view/type")
        return
    if kind == "modal":
        if "title" not in view:
            yield _at("must provide a title", "/view/title")
        for key in ("title", "submit", "close"):
            if key in view:
                yield from _text(view[key], f"/view/{key}", 24, plain_only=True)
        has_input = any(isinstance(b, dict) and b.get("type") == "input"
                        for b in view.get("blocks") or [])
        if has_input and "submit" not in view:
            yield _at("must provide a submit when an input block is present", "/view/submit")
    for key in ("callback_id", "external_id"):
        yield from _string(view.get(key), f"/view/{key}", ID_LENGTH)
    yield from _string(view.get("private_metadata"), "/view/private_metadata", 3000)
    if "blocks" not in view:
        yield _at("must provide blocks", "/view/blocks")
        return
    yield from _blocks(view["blocks"], "/view/blocks", VIEW_BLOCKS, in_view=True)


# ---- blocks --------------------------------------------------------------------------------

def _blocks(blocks: Any, at: str, most: int, *, in_view: bool) -> Iterator[str]:
    if not isinstance(blocks, list):
        yield _at("must be an array", at)
        return
    if len(blocks) > most:
        yield _at(f"no more than {most} items allowed", at)
    seen_ids: set[str] = set()
    for n, block in enumerate(blocks):
        where = f"{at}/{n}"
        if not isinstance(block, dict):
            yield _at("must be an object", where)
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            yield from _string(block_id, f"{where}/block_id", ID_LENGTH)
            if block_id in seen_ids:
                yield _at(f"duplicate block_id {block_id!r}", f"{where}/block_id")
            seen_ids.add(block_id)
        yield from _block(block, where, in_view=in_view)


def _block(block: dict[str, Any], at: str, *, in_view: bool) -> Iterator[str]:
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        yield _at(f"unknown block type {kind!r}", f"{at}/type")
        return
    if kind == "section":
        if "text" not in block and "fields" not in block:
            yield _at("must provide either text or fields", at)
        if "text" in block:
            yield from _text(block["text"], f"{at}/text", 3000)
        if "fields" in block:
            fields = block["fields"]
            if not isinstance(fields, list) or not fields:
                yield _at("must be a non-empty array", f"{at}/fields")
            else:
                if len(fields) > 10:
                    yield _at("no more than 10 items allowed", f"{at}/fields")
                for n, item in enumerate(fields):
                    yield from _text(item, f"{at}/fields/{n}", 2000)
        if "accessory" in block:
            yield from _element(block["accessory"], f"{at}/accessory")
    elif kind == "header":
        yield from _text(block.get("text"), f"{at}/text", 150, plain_only=True)
    elif kind in ("actions", "context"):
        yield from _elements(block, at, 25 if kind == "actions" else 10,
                             context=kind == "context")
    elif kind == "image":
        yield from _string(block.get("alt_text"), f"{at}/alt_text", 2000, required=True)
        if "title" in block:
            yield from _text(block["title"], f"{at}/title", 2000, plain_only=True)
    elif kind == "input":
        if not in_view:
            yield _at("input blocks are only allowed in views", f"{at}/type")
        yield from _text(block.get("label"), f"{at}/label", 2000, plain_only=True)
        if "hint" in block:
            yield from _text(block["hint"], f"{at}/hint", 2000, plain_only=True)
        if not isinstance(block.get("element"), dict):
            yield _at("must provide an element", f"{at}/element")
        else:
            yield from _element(block["element"], f"{at}/element")


def _elements(block: dict[str, Any], at: str, most: int, *, context: bool) -> Iterator[str]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        yield _at("must be a non-empty array", f"{at}/elements")
        return
    if len(elements) > most:
        yield _at(f"no more than {most} items allowed", f"{at}/elements")
    action_ids: set[str] = set()
    for n, element in enumerate(elements):
        where = f"{at}/elements/{n}"
        if context and isinstance(element, dict) and element.get("type") in TEXT_TYPES:
            yield from _text(element, where, 3000)
            continue
        if context and isinstance(element, dict) and element.get("type") == "image":
            yield from _string(element.get("alt_text"), f"{where}/alt_text", 2000, required=True)
            continue
        yield from _element(element, where)
        action_id = element.get("action_id") if isinstance(element, dict) else None
        if isinstance(action_id, str):
            if action_id in action_ids:
                yield _at(f"duplicate action_id {action_id!r}", f"{where}/action_id")
            action_ids.add(action_id)


def _element(element: Any, at: str) -> Iterator[str]:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        yield _at("must be an object with a type", at)
        return
    kind = element["type"]
    yield from _string(element.get("action_id"), f"{at}/action_id", ID_LENGTH)
    if kind == "button":
        yield from _text(element.get("text"), f"{at}/text", ELEMENT_TEXT["button"],
                         plain_only=True)
        yield from _string(element.get("value"), f"{at}/value", 2000)
        yield from _string(element.get("url"), f"{at}/url", 3000)
        if element.get("style") not in (None, "primary", "danger"):
            yield _at("must be one of primary, danger", f"{at}/style")
    if "placeholder" in element:
        yield from _text(element["placeholder"], f"{at}/placeholder", ELEMENT_PLACEHOLDER,
                         plain_only=True)
    if kind == "plain_text_input" and "max_length" in element:
        most = element["max_length"]
        if not isinstance(most, int) or not 1 <= most <= 3000:
            yield _at("must be between 1 and 3000", f"{at}/max_length")
    if kind in OPTIONS_MAX and "options" in element:
        yield from _options(element["options"], f"{at}/options", kind)
    if "confirm" in element:
        yield from _confirm(element["confirm"], f"{at}/confirm")


def _options(options: Any, at: str, kind: str) -> Iterator[str]:
    if not isinstance(options, list):
        yield _at("must be an array", at)
        return
    if len(options) > OPTIONS_MAX[kind]:
        yield _at(f"no more than {OPTIONS_MAX[kind]} items allowed", at)
    if len(options) < OPTIONS_MIN.get(kind, 1):
        yield _at(f"must have at least {OPTIONS_MIN.get(kind, 1)} items", at)
    for n, option in enumerate(options):
        where = f"{at}/{n}"
        if not isinstance(option, dict):
            yield _at("must be an object", where)
            continue
        yield from _text(option.get("text"), f"{where}/text", OPTION_TEXT)
        yield from _string(option.get("value"), f"{where}/value", OPTION_VALUE, required=True)
        if "description" in option:
            yield from _text(option["description"], f"{where}/description", OPTION_DESCRIPTION)


def _confirm(confirm: Any, at: str) -> Iterator[str]:
    if not isinstance(confirm, dict):
        yield _at("must be an object", at)
        return
    for key, most in CONFIRM_LIMITS.items():  # all four are required
        yield from _text(confirm.get(key), f"{at}/{key}", most, plain_only=key != "text")


# ---- text and strings ----------------------------------------------------------------------

def _text(obj: Any, at: str, most: int, *, plain_only: bool = False) -> Iterator[str]:
    if not isinstance(obj, dict):
        yield _at("must be a text object", at)
        return
    allowed = ("plain_text",) if plain_only else TEXT_TYPES
    if obj.get("type") not in allowed:
        yield _at(f"must be one of {', '.join(allowed)}", f"{at}/type")
    text = obj.get("text")
    if not isinstance(text, str):
        yield _at("must be a string", f"{at}/text")
    elif not text:
        yield _at("must be more than 0 characters", f"{at}/text")
    elif len(text) > most:
        yield _at(f"must be less than {most + 1} characters", f"{at}/text")


def _string(value: Any, at: str, most: int, *, required: bool = False) -> Iterator[str]:
    if value is None:
        if required:
            yield _at("must be provided", at)
        return
    if not isinstance(value, str):
        yield _at("must be a string", at)
    elif len(value) > most:
        yield _at(f"must be less than {most + 1} characters", at)


def _at(problem: str, pointer: str) -> str:
    return f"{problem} [json-pointer:{pointer}]"
