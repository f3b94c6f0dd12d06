"""What intake's cheaper paths must not change: the depth answer read off the raw JSON's
brackets is the walked answer, and the scrubbed copy is the one the plain recursive walk makes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.http.bodies import json_too_deep, too_deep
from services import privacy
from services.privacy import scrub

KEYS = st.sampled_from(["id", "code", "customer", "email", "name", "object", "card",
                        "fields", "items", "total", "receipt_email", "phone", "first_name",
                        "email_hash", "billing_details", "x"])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(
    max_size=5) | st.sampled_from(["card", "customer", "{[", "]}"])
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(KEYS | st.text(max_size=3), inner, max_size=5),
                    max_leaves=40)


def nested(depth: int) -> Any:
    value: Any = 1
    for n in range(depth):
        value = [value] if n % 2 else {"a": value}
    return value


@settings(max_examples=400, deadline=None)
@given(JSON, st.integers(min_value=0, max_value=8))
def test_the_depth_read_off_the_brackets_is_the_walked_depth(value: Any, limit: int) -> None:
    raw = json.dumps(value).encode()
    assert json_too_deep(raw, value, limit) == too_deep(value, limit)


def test_a_body_of_few_brackets_is_not_walked_and_a_deep_one_is_refused() -> None:
    assert not json_too_deep(b'{"a": [1, {"b": 2}]}', {"a": [1, {"b": 2}]}, 3)
    deep = nested(65)
    assert json_too_deep(json.dumps(deep).encode(), deep, 64)
    assert not json_too_deep(json.dumps(nested(64)).encode(), nested(64), 64)
    # brackets inside strings make the count larger, never smaller: the walk decides
    wide = {"note": "[" * 100, "a": {"b": 1}}
    assert not json_too_deep(json.dumps(wide).encode(), wide, 2)


def reference_scrub(data: Mapping[str, Any], salt: str | None) -> dict[str, Any]:
    """The plain recursive walk `scrub` was first written as (every value through one
    function), the answer its faster loop must give."""

    def value_of(value: Any) -> Any:
        if isinstance(value, Mapping):
            return mapping(value)
        if isinstance(value, list | tuple):
            return [value_of(v) for v in value]
        return value

    def mapping(data: Mapping[str, Any]) -> dict[str, Any]:
        person = str(data.get("object") or "") in privacy._PERSON_OBJECTS
        kept: dict[str, Any] = {}
        for key, value in data.items():
            if key == "customer" and isinstance(value, Mapping):
                kept[key] = customer(value)
            elif not (privacy._dropped(key) or (person and key == "name")):
                kept[key] = value_of(value)
        return kept

    def customer(c: Mapping[str, Any]) -> dict[str, Any]:
        kept = {key: value_of(value) for key, value in c.items()
                if key not in ("name", "first_name", privacy.EMAIL_HASH)
                and not privacy._dropped(key)}
        kept["name"] = privacy.first_name(c.get("name") or c.get("first_name"))
        email = str(c.get("email") or "")
        hashed = c.get(privacy.EMAIL_HASH) or (privacy.customer_hash(email, salt)
                                               if salt is not None else None)
        if hashed:
            kept[privacy.EMAIL_HASH] = str(hashed)
        return kept

    return mapping(data)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, JSON, max_size=6), st.none() | st.just("salt"))
def test_scrub_gives_what_the_plain_walk_gives(data: dict[str, Any], salt: str | None) -> None:
    expected = reference_scrub(data, salt)
    got = scrub(data, salt)
    assert got == expected
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_the_canonical_text_is_what_json_dumps_writes(value: Any) -> None:
    from services.store.db import dumps
    assert dumps(value) == json.dumps(value, sort_keys=True, separators=(",", ":"),
                                      ensure_ascii=False, default=str)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.timezones() | st.just(UTC)))
def test_the_stored_time_text_is_iso_utcs(moment: datetime) -> None:
    from services.intake.events import utc_text
    from services.store.db import iso_utc
    assert utc_text(moment) == iso_utc(moment)
    assert utc_text(moment.astimezone(UTC)) == iso_utc(moment)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.just(UTC)))
def test_now_iso_writes_the_stored_time_text(moment: datetime) -> None:
    from services.store import db

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:   # type: ignore[override]
            return moment

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(db, "datetime", Frozen)
        assert db.now_iso() == moment.isoformat(timespec="microseconds") == db.iso_utc(moment)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(), st.integers(min_value=0, max_value=1 << 62))
def test_the_received_audit_detail_is_the_canonical_text(event_id: str, kind: str,
                                                         row: int) -> None:
    from services.intake.events import received_detail
    from services.store.db import dumps
    assert received_detail(event_id, kind, row) == dumps(
        {"event_id": event_id, "kind": kind, "row": row})


def canonical_row_hash(prev: str, at: str, actor: str, action: str, case_id: int | None,
                       detail: str) -> str:
    """The chain's hash as it was first written: SHA-256 of the canonical JSON list."""
    import hashlib

    from services.store.db import dumps
    return hashlib.sha256(dumps([prev, at, actor, action, case_id, detail]).encode()).hexdigest()


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(), st.text(), st.text(),
       st.none() | st.integers(min_value=-(1 << 63), max_value=1 << 63), st.text())
def test_the_row_hash_is_the_hash_of_the_canonical_list(prev: str, at: str, actor: str,
                                                        action: str, case_id: int | None,
                                                        detail: str) -> None:
    from services.store.audit import row_hash
    try:
        expected = canonical_row_hash(prev, at, actor, action, case_id, detail)
    except UnicodeEncodeError:   # a lone surrogate: no text to hash, either way
        with pytest.raises(UnicodeEncodeError):
            row_hash(prev, at, actor, action, case_id, detail)
        return
    assert row_hash(prev, at, actor, action, case_id, detail) == expected
