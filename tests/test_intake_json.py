"""Intake's faster JSON must read and write what the standard library does: `parse_json` the
values (or the error) of `json.loads`, `payload_json` text that reads back as `dumps`'s does
(and is `dumps`'s byte for byte where no float is in it), `ok` the answer `json_response`
gives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.http.bodies import parse_json
from handlers.http.context import DUPLICATE_TEXT, ok
from services.intake.events import payload_json
from services.store.db import dumps

SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 2)
           | st.integers(max_value=-(2**63) - 2) | st.floats() | st.text(max_size=6))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=4), max_leaves=30)


def outcome(read: Any, raw: bytes) -> tuple[str, str]:
    try:
        return "value", repr(read(raw))   # repr: tells 1 from 1.0 and compares NaN
    except RecursionError:
        return "error", "RecursionError"
    except ValueError as exc:             # JSONDecodeError, UnicodeDecodeError
        return "error", type(exc).__name__


def standard(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"))


@settings(max_examples=500, deadline=None)
@given(JSON, st.booleans(), st.sampled_from(["", " ", "\n", "\ufeff", "x", "\x00"]))
def test_parse_json_reads_what_json_loads_reads(value: Any, ascii_only: bool, edge: str) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    for raw in (text.encode("utf-8", "surrogatepass"), (edge + text).encode(),
                (text + edge).encode()):
        assert outcome(parse_json, raw) == outcome(standard, raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_parse_json_refuses_what_json_loads_refuses(raw: bytes) -> None:
    assert outcome(parse_json, raw) == outcome(standard, raw)


@pytest.mark.parametrize("raw", [
    b'{"amount": 123456789012345678901234}',    # past 64 bits: an int, not a float
    b'{"a": NaN, "b": -Infinity}', b'{"a": 1e400}', b'"\\ud800"', b'{"a": 1, "a": 2}',
    b'\xef\xbb\xbf{}', '{"a": 1}'.encode("utf-16"), b"[" * 2000 + b"]" * 2000, b"-0",
])
def test_parse_json_on_what_orjson_reads_otherwise_or_not_at_all(raw: bytes) -> None:
    assert outcome(parse_json, raw) == outcome(standard, raw)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(max_size=4), JSON, max_size=5))
def test_payload_json_reads_back_as_dumps_does(value: dict[str, Any]) -> None:
    text = payload_json(value)
    assert repr(json.loads(text)) == repr(json.loads(dumps(value)))
    if not has_float(value):   # no float to spell otherwise: the very same text
        assert text == dumps(value)


def has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(has_float(v) for v in value.values())
    return isinstance(value, list) and any(has_float(v) for v in value)


def test_payload_json_writes_dumps_text_for_what_orjson_cannot() -> None:
    for value in ({"a": float("nan")}, {"a": float("-inf")}, {"a": 2**64}, {"a": "\ud800"},
                  {"a": None, "b": "é"}):
        assert payload_json(value) == dumps(value)
    assert payload_json({"b": [1, {"z": True, "a": "é"}], "a": ""}) == dumps(
        {"b": [1, {"z": True, "a": "é"}], "a": ""})


@pytest.mark.parametrize("data, text", [({"ok": True}, None),
                                        ({"ok": True, "duplicate": True}, DUPLICATE_TEXT)])
def test_ok_is_the_json_response_for_the_same_dict(data: dict[str, Any], text: str | None) -> None:
    mine = ok() if text is None else ok(text)
    theirs = web.json_response(data)
    assert (mine.status, mine.text, mine.content_type, mine.charset) == (
        theirs.status, theirs.text, theirs.content_type, theirs.charset)
