"""Request parameters, errors and list pages of the Stripe stand-in, in Stripe's terms."""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Collection
from typing import Any, Protocol


class ApiError(Exception):
    """A Stripe error answer. `stored=False` marks validation errors (not kept for replay)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        stored: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.stored = stored
        self.extra = extra or {}

    def payload(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code, stored=False)


def missing(kind: str, object_id: str, param: str) -> ApiError:
    return ApiError(
        404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


class Listable(Protocol):
    id: str
    created: int
    seq: int

    def to_json(self) -> dict[str, Any]: ...


def allow(params: dict[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise invalid(f"Received unknown parameter: {name}", name, "parameter_unknown")


def opt_str(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {value!r}", name)
    return value


def opt_int(params: dict[str, Any], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
        raise invalid(f"Invalid integer: {raw}", name)
    value = int(raw)
    if value < 1:
        raise invalid("This value must be greater than or equal to 1.", name)
    return value


def required_int(params: dict[str, Any], name: str) -> int:
    value = opt_int(params, name)
    if value is None:
        raise invalid(f"Missing required param: {name}.", name, "parameter_missing")
    return value


def flag(params: dict[str, Any], name: str) -> bool:
    raw = params.get(name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise invalid(f"Invalid boolean: {raw}", name)
    return raw == "true"


def metadata_param(params: dict[str, Any]) -> dict[str, str]:
    raw = params.get("metadata")
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise invalid("Invalid object", "metadata")
    if len(raw) > 50:
        raise invalid("Metadata can have at most 50 keys.", "metadata")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise invalid(f"Invalid value for metadata[{key}]", f"metadata[{key}]")
        if len(key) > 40:
            raise invalid("Metadata keys can have at most 40 characters.", f"metadata[{key}]")
        if len(value) > 500:
            raise invalid("Metadata values can have at most 500 characters.",
                           f"metadata[{key}]")
        if value != "":
            out[key] = value
    return out


def _created_range(params: dict[str, Any]) -> tuple[int | None, int | None]:
    """`created` (an integer, or gt/gte/lt/lte/eq bounds) as an inclusive [low, high] range."""
    raw = params.get("created")
    if raw is None:
        return None, None
    if isinstance(raw, str):
        raw = {"eq": raw}
    if not isinstance(raw, dict):
        raise invalid("Invalid created filter", "created")
    low: int | None = None
    high: int | None = None
    for op, value in raw.items():
        if op not in ("gt", "gte", "lt", "lte", "eq"):
            raise invalid(f"Received unknown parameter: created[{op}]", f"created[{op}]")
        if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
            param = "created" if op == "eq" else f"created[{op}]"
            raise invalid(f"Invalid integer: {value}", param)
        v = int(value)
        if op in ("gt", "gte", "eq"):
            floor = v + 1 if op == "gt" else v
            low = floor if low is None else max(low, floor)
        if op in ("lt", "lte", "eq"):
            ceiling = v - 1 if op == "lt" else v
            high = ceiling if high is None else min(high, ceiling)
    return low, high


def _limit(params: dict[str, Any]) -> int:
    raw = params.get("limit")
    if raw is None:
        return 10
    if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
        raise invalid(f"Invalid integer: {raw}", "limit")
    value = int(raw)
    if value < 1:
        raise invalid("This value must be greater than or equal to 1.", "limit")
    if value > 100:
        raise invalid("This value must be less than or equal to 100.", "limit")
    return value


class Ordered:
    """Items oldest first by (created, seq), sorted again only when the set changed: its size,
    or a `generation` the owner bumps when it moves an item in time."""

    def __init__(self) -> None:
        self._stamp: tuple[int, int] | None = None
        self.rows: list[Listable] = []
        self.keys: list[tuple[int, int]] = []

    def of(self, items: Collection[Listable], generation: int = 0) -> Ordered:
        stamp = (len(items), generation)
        if stamp != self._stamp:
            self.rows = sorted(items, key=lambda i: (i.created, i.seq))
            self.keys = [(i.created, i.seq) for i in self.rows]
            self._stamp = stamp
        return self

    @classmethod
    def fresh(cls, items: Collection[Listable]) -> Ordered:
        return cls().of(items)


def list_page(
    ordered: Ordered,
    everything: dict[str, Any],
    params: dict[str, Any],
    url: str,
    kind: str,
) -> dict[str, Any]:
    """One page, newest first, cursor-paginated like Stripe's list endpoints: a few binary
    searches over the ordered items, so walking all pages of a large list stays linear."""
    limit = _limit(params)
    low, high = _created_range(params)
    after = opt_str(params, "starting_after")
    before = opt_str(params, "ending_before")
    if after and before:
        raise invalid(
            "You may only specify one of these parameters: ending_before, starting_after."
        )
    keys, rows = ordered.keys, ordered.rows
    start = 0 if low is None else bisect.bisect_left(keys, (low, -math.inf))
    end = len(keys) if high is None else bisect.bisect_right(keys, (high, math.inf))
    cursor_id = after or before
    if cursor_id:
        cursor = everything.get(cursor_id)
        if cursor is None:
            raise ApiError(
                400, f"No such {kind}: '{cursor_id}'", code="resource_missing",
                param="starting_after" if after else "ending_before", stored=False,
            )
        mark = (cursor.created, cursor.seq)
        if after:   # older than the cursor: the newest `limit` of those
            end = min(end, bisect.bisect_left(keys, mark))
        else:       # newer than the cursor: the `limit` closest to it
            start = max(start, bisect.bisect_right(keys, mark))
    count = max(0, end - start)
    page = rows[start:min(end, start + limit)] if before else rows[max(start, end - limit):end]
    return {
        "object": "list",
        "data": [r.to_json() for r in reversed(page)],
        "has_more": count > limit,
        "url": url,
    }
