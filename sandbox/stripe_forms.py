"""Stripe's form encoding: `metadata[k]=v`, `created[gte]=1`, `expand[0]=x` to nested values.

The official client sends v1 parameters as `application/x-www-form-urlencoded` pairs with
bracket notation (lists as `key[0]`, `key[1]`); query strings of GET requests use the same form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A key that cannot be read as Stripe bracket notation."""


def parse_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nest flat pairs: [("metadata[a]", "1")] -> {"metadata": {"a": "1"}}."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise FormError(f"Invalid parameter name: {key}")
        path = [match.group(1), *_PART.findall(match.group(2))]
        node = root
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            if part == "":  # `expand[]=x`: append
                part = str(sum(1 for k in node if k.isdigit()))
            if last:
                if part in node:
                    raise FormError(f"Invalid array or duplicate parameter: {key}")
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise FormError(f"Invalid hash or array: {key}")
                node = child
    return _listify(root)


def _listify(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        out[key] = _as_list_or_dict(value) if isinstance(value, dict) else value
    return out


def _as_list_or_dict(node: dict[str, Any]) -> dict[str, Any] | list[Any]:
    inner = _listify(node)
    if inner and all(k.isdigit() for k in inner):
        return [inner[k] for k in sorted(inner, key=int)]
    return inner
