"""Request parameters, errors and list pages of the Stripe stand-in, in Stripe's terms."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
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


def _created_filter(params: dict[str, Any]) -> Callable[[int], bool]:
    raw = params.get("created")
    if raw is None:
        return lambda _created: True
    if isinstance(raw, str):
        raw = {"eq": raw}
    if not isinstance(raw, dict):
        raise invalid("Invalid created filter", "created")
    bounds: dict[str, int] = {}
    for op, value in raw.items():
        if op not in ("gt", "gte", "lt", "lte", "eq"):
            raise invalid(f"Received unknown parameter: created[{op}]", f"created[{op}]")
        if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
            param = "created" if op == "eq" else f"created[{op}]"
            raise invalid(f"Invalid integer: {value}", param)
        bounds[op] = int(value)
    checks = {
        "gt": lambda c, v: c > v,
        "gte": lambda c, v: c >= v,
        "lt": lambda c, v: c < v,
        "lte": lambda c, v: c <= v,
        "eq": lambda c, v: c == v,
    }
    return lambda created: all(checks[op](created, v) for op, v in bounds.items())


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


def list_page(
    items: Sequence[Listable],
    everything: dict[str, Any],
    params: dict[str, Any],
    url: str,
    kind: str,
) -> dict[str, Any]:
    """One page, newest first, cursor-paginated like Stripe's list endpoints."""
    limit = _limit(params)
    keep = _created_filter(params)
    after = opt_str(params, "starting_after")
    before = opt_str(params, "ending_before")
    if after and before:
        raise invalid(
            "You may only specify one of these parameters: ending_before, starting_after."
        )
    rows = sorted((i for i in items if keep(i.created)), key=lambda i: (i.created, i.seq),
                  reverse=True)
    cursor_id = after or before
    if cursor_id:
        cursor = everything.get(cursor_id)
        if cursor is None:
            raise ApiError(
                400, f"No such {kind}: '{cursor_id}'", code="resource_missing",
                param="starting_after" if after else "ending_before", stored=False,
            )
        mark = (cursor.created, cursor.seq)
        if after:
            rows = [r for r in rows if (r.created, r.seq) < mark]
            data, has_more = rows[:limit], len(rows) > limit
        else:
            rows = [r for r in rows if (r.created, r.seq) > mark]
            data, has_more = rows[-limit:], len(rows) > limit
    else:
        data, has_more = rows[:limit], len(rows) > limit
    return {
        "object": "list",
        "data": [r.to_json() for r in data],
        "has_more": has_more,
        "url": url,
    }
