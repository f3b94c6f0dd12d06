"""Reading a request body within bounds: JSON parsed without a RecursionError, and no deeper
than the depth limit, so nothing downstream (storing, hashing, routing) walks an unbounded tree.

`BadBody` is a ValueError whose message is the reason a 400 answer gives. `parse_json` is
the webhooks' parse: orjson's, with the standard library's for whatever orjson refuses, so
what is accepted, the values read and the errors raised are exactly `json.loads`'s.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

MAX_DEPTH = 64  # real Checkfront, Stripe and Slack bodies are under 20 deep


class BadBody(ValueError):
    """A body that cannot be read; the message says why (safe to send back). `too_deep` tells
    a body refused for its depth from one that is not JSON."""

    def __init__(self, why: str, *, too_deep: bool = False) -> None:
        super().__init__(why)
        self.too_deep = too_deep


def loads(text: str, *, max_depth: int = MAX_DEPTH, what: str = "body") -> Any:
    """`json.loads`, with every way it can fail as a `BadBody`, and the depth bounded."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadBody(f"{what} is nested deeper than {max_depth} levels",
                      too_deep=True) from None
    except json.JSONDecodeError as exc:
        raise BadBody(f"{what} is not JSON (line {exc.lineno} column {exc.colno})") from None
    except ValueError:  # an integer of more digits than Python converts
        raise BadBody(f"{what} is not JSON") from None
    check_depth(value, max_depth, what=what)
    return value


def parse_json(raw: bytes) -> Any:
    """`json.loads(raw)`, faster: orjson parses what it accepts (standard JSON, UTF-8 without
    lone surrogates, nesting under 1,024 levels), to the same values; a text with a run of 19
    digits or more (where an integer may be past 64 bits, which orjson would read as a float)
    and anything orjson refuses (NaN and Infinity, a BOM, invalid text) goes to
    `json.loads` of the text decoded as UTF-8, which accepts it as before or raises its own
    error: UnicodeDecodeError, JSONDecodeError with its line and column, RecursionError for
    a deep body."""
    if _DIGIT_RUN not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw.decode("utf-8"))


# the text with every digit as "0" and every other byte as "x": a run of 19 digits is a run of
# 19 zeros (found in C at a fraction of a regular expression's cost)
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x78 for byte in range(256))
_DIGIT_RUN = b"0" * 19


def check_depth(value: Any, max_depth: int = MAX_DEPTH, *, what: str = "body") -> None:
    """Refuse a parsed body whose lists and objects nest deeper than `max_depth`."""
    if too_deep(value, max_depth):
        raise BadBody(f"{what} is nested deeper than {max_depth} levels", too_deep=True)


def too_deep(value: Any, max_depth: int) -> bool:
    """Whether lists and objects in `value` nest deeper than `max_depth` (walked without
    recursion, containers only; `{}` is 1 deep, a scalar 0)."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def json_too_deep(raw: bytes, value: Any, max_depth: int = MAX_DEPTH) -> bool:
    """`too_deep` for `value` parsed from the JSON text `raw`, mostly without the walk: every
    level of nesting opens with a bracket, so a text of no more than `max_depth` brackets
    (counted in C, strings' brackets included, which only makes the count larger) cannot
    nest deeper; only a body with more is walked."""
    if raw.count(b"{") + raw.count(b"[") <= max_depth:
        return False
    return too_deep(value, max_depth)
