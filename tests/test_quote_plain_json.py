"""orjson's canonical JSON against the json module's, and the payments' no-refund shortcut.

The version and the fingerprint are hashed from orjson's bytes when every text is a plain
`str` and the result is ASCII without DEL (`canonical.plain_json`); anything else is written
as before. Compared here over generated material with text of any kind (control characters,
DEL, non-ASCII, lone surrogates), over generated quotes and snapshots whose names, skus and
ids carry such text, and over snapshots built by hand with values only the encoder writes
(or refuses). `BookingSnapshot.unrefunded` returns early when nothing was refunded; it is
compared with the full allocation, duplicate transaction ids included.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.quoting.booking import BookingSnapshot, Transaction
from services.quoting.booking_checked import parse_checked
from services.quoting.booking_read import parse_snapshot
from services.quoting.canonical import fingerprint as _fingerprint
from services.quoting.canonical import plain_json
from services.quoting.engine import build_quote
from services.quoting.policy import load_policies
from services.quoting.quote import RiskFlag
from tests.quote_fixtures import CANCELLED_AT, quote
from tests.test_quote_properties import cases

REPO = Path(__file__).resolve().parent.parent
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Text of every kind the two writers might treat differently: ASCII controls, DEL, quotes,
# backslashes, slashes, Latin-1, the line separators JavaScript minds, astral characters and
# lone surrogates (which orjson refuses).
TRICKY = st.text(st.one_of(st.characters(min_codepoint=0, max_codepoint=0x7F),
                           st.sampled_from(["é", "\u2028", "\u2029", "\ufeff", "😀", "\udc80",
                                            "\ud800", '"', "\\", "/"])), max_size=12)
PLAIN = st.recursive(
    st.one_of(st.none(), TRICKY, st.integers(-(2**70), 2**70), st.booleans()),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.lists(inner, max_size=4).map(tuple),
                            st.dictionaries(TRICKY, inner, max_size=4)),
    max_leaves=20)


def canonical(material: Any, sort_keys: bool = True) -> bytes:
    return json.dumps(material, sort_keys=sort_keys, separators=(",", ":")).encode()


@settings(max_examples=500, deadline=None)
@given(PLAIN, st.booleans())
def test_plain_json_is_the_json_modules_or_nothing(material: Any, sort_keys: bool) -> None:
    got = plain_json(material, sort_keys)
    if got is not None:
        assert got == canonical(material, sort_keys)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(st.characters(max_codepoint=0x7E), max_size=6),
                       st.lists(st.text(st.characters(max_codepoint=0x7E), max_size=12),
                                max_size=3), max_size=4))
def test_ascii_text_without_delete_is_written_by_orjson(material: dict[str, Any]) -> None:
    """The fast path is taken where it may be (a check that never takes it would pass the
    test above): ASCII text with controls, quotes and backslashes, but no DEL."""
    assert plain_json(material, True) == canonical(material)


@pytest.mark.parametrize("text", ["\x7f", "é", "\u2028", "😀", "\udc80"])
def test_delete_and_beyond_ascii_are_left_to_the_json_module(text: str) -> None:
    assert plain_json({"name": f"a{text}b"}, True) is None


def canonical_reference(q: Any) -> str:
    material = q.to_dict()
    material.pop("version")
    return json.dumps(material, sort_keys=True, separators=(",", ":"))


@SETTINGS
@given(cases(), st.integers(-300 * 3600, 300 * 3600), TRICKY, TRICKY, TRICKY,
       st.lists(st.tuples(TRICKY, TRICKY), max_size=2))
def test_versions_and_fingerprints_of_any_text_are_the_json_modules(
    case: tuple[dict, dict, str | None], offset: int, name: str, sku: str, payment: str,
    flags: list[tuple[str, str]]
) -> None:
    snapshot, book, waiver = case
    first = snapshot["booking"]["order"]["items"]["item"][0]
    first["name"], first["sku"] = name or "x", sku
    first["@attributes"]["line_id"] = f"{name}-1"
    snapshot["booking"]["code"] = f"{name}-CODE"
    for t in snapshot.get("transactions") or ():
        t["transaction_id"] = f"pi_{payment}"
    risk = tuple(RiskFlag(code, reason) for code, reason in flags)
    try:
        q = quote(snapshot, book, CANCELLED_AT + timedelta(seconds=offset), waiver=waiver,
                  risk_flags=risk)
    except ValueError:  # a sku or id that blank-strips away or matches no policy
        return
    blob = canonical_reference(q)
    assert q.version == hashlib.sha256(blob.encode()).hexdigest()[:12]
    read = parse_snapshot(snapshot, default_currency="USD")
    assert read.fingerprint == parse_checked(snapshot, default_currency="USD").fingerprint
    assert read.fingerprint == _fingerprint(snapshot["booking"], snapshot["booking"]["order"],
                                            read.lines, read.transactions)


def example() -> tuple[BookingSnapshot, Any]:
    raw = json.loads((REPO / "examples" / "booking.json").read_text(encoding="utf-8"))
    book = load_policies(REPO / "examples" / "policies.yml")
    return parse_snapshot(raw, default_currency=book.currency), book


class Text(str):
    """A str subclass: the json module writes its text; orjson is not trusted with it."""


def test_texts_that_are_not_plain_str_are_written_by_the_json_module() -> None:
    snapshot, book = example()
    at = snapshot.lines[0].start - timedelta(hours=30)
    assert snapshot._plain
    for odd in (replace(snapshot.lines[0], name=1.5),  # the encoder writes 1.5
                replace(snapshot.lines[0], name=Text("Sunset")),
                replace(snapshot.lines[0], sku=Text("kayak-tour"))):
        hand = replace(snapshot, lines=(odd, *snapshot.lines[1:]))
        assert not hand._plain
        q = build_quote(hand, book, at)
        assert q.version == hashlib.sha256(canonical_reference(q).encode()).hexdigest()[:12]
    # a value the json module refuses (orjson would write a UUID): refused still
    hand = replace(snapshot, lines=(replace(snapshot.lines[0], name=uuid.uuid4()),
                                    *snapshot.lines[1:]))
    with pytest.raises(TypeError):
        build_quote(hand, book, at)
    odd_flag = (RiskFlag(Text("value_outlier"), "worth 3x"),)
    q = build_quote(snapshot, book, at, risk_flags=odd_flag)
    assert q.version == hashlib.sha256(canonical_reference(q).encode()).hexdigest()[:12]


def test_a_snapshot_built_by_hand_of_plain_text_is_plain() -> None:
    snapshot, _ = example()
    again = replace(snapshot)
    assert "_plain" not in vars(again)
    assert again._plain
    assert not replace(snapshot, booking_id=uuid.uuid4())._plain
    assert not replace(snapshot, transactions=(
        replace(snapshot.transactions[0], id=Text("pi_1")),))._plain


# BookingSnapshot.unrefunded: the early return against the full allocation

def allocated(snapshot: BookingSnapshot) -> tuple[list[tuple[Transaction, int]], int, int]:
    """`unrefunded` as it was before its early return: every refund attributed, then the
    unattributed rest taken from the newest payments."""
    transactions = snapshot.transactions or ()
    paid = sorted([t for t in transactions if t.status == "PAID"],
                  key=lambda t: (t.date, t.id), reverse=True)
    refunds = [t for t in transactions if t.status == "REFUND"]
    left = {t.id: t.amount for t in paid}
    unattributed = 0
    for refund in refunds:
        if refund.original_id in left:
            taken = min(left[refund.original_id], refund.amount)
            left[refund.original_id] -= taken
            unattributed += refund.amount - taken
        else:
            unattributed += refund.amount
    pairs = []
    for t in paid:
        taken = min(left[t.id], unattributed)
        left[t.id] -= taken
        unattributed -= taken
        pairs.append((t, left[t.id]))
    return pairs, sum(t.amount for t in paid), sum(t.amount for t in refunds)


TRANSACTIONS = st.lists(st.builds(
    lambda tid, day, status, amount, original: Transaction(
        id=tid, date=datetime(2026, 11, day, tzinfo=UTC), status=status, amount=amount,
        gateway="stripe", original_id=original),
    st.sampled_from(["pi_a", "pi_b", "pi_c", "ch_d"]), st.integers(1, 3),
    st.sampled_from(["PAID", "PAID", "REFUND", "VOID"]), st.integers(0, 10_000),
    st.sampled_from([None, "pi_a", "pi_b"])), max_size=5)


EXAMPLE = example()[0]


@settings(max_examples=500, deadline=None)
@given(TRANSACTIONS)
def test_unrefunded_is_the_full_allocation(transactions: list[Transaction]) -> None:
    hand = replace(EXAMPLE, transactions=tuple(transactions))
    assert hand.unrefunded() == allocated(hand)


def test_a_payment_id_twice_without_refunds_shares_one_balance() -> None:
    """The allocation keys balances by id: two payments under one id both show the balance
    of the one sorted last (as before the early return, which is not taken then)."""
    snapshot, _ = example()
    one, two = snapshot.transactions
    twice = (one, replace(two, id=one.id))
    hand = replace(snapshot, transactions=twice)
    pairs, paid, refunded = hand.unrefunded()
    assert (pairs, paid, refunded) == allocated(hand)
    assert [left for _, left in pairs] == [one.amount, one.amount]
