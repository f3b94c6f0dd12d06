"""The quote engine's integer and template paths against the exact forms they stand for.

A quote line's tier, notice and percentages are worked in integers when that is exact, and
the version and the fingerprint are hashed from a template of the canonical JSON. Each is
compared here with the Decimal rule or the `json.dumps` call it replaces: over generated
policies with fractional hours and percents (the property tests use whole ones), over
generated quotes with risk flags of any text, and on the example booking, whose versions are
pinned to what the engine said before these paths existed (a stored version must not change).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import FrozenInstanceError, fields, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services import money
from services.clients.checkfront_bodies import _text, checkfront_status
from services.money import (
    CENTS_TEXT,
    _percent_of_exact,
    cents_text,
    exponent,
    format_places,
    percent_of,
)
from services.quoting.booking import BookingLine
from services.quoting.booking_read import parse_snapshot
from services.quoting.canonical import fingerprint as _fingerprint
from services.quoting.canonical import quote_text
from services.quoting.engine import build_quote
from services.quoting.frozen import frozen_new
from services.quoting.plans import plain, plan_of
from services.quoting.policy import Policy, load_policies, parse_policies
from services.quoting.quote import Quote, RiskFlag
from services.quoting.rules import _hours, _notice_text, _quote_line
from tests.quote_fixtures import CANCELLED_AT, policies, policy, quote
from tests.test_quote_properties import cases

REPO = Path(__file__).resolve().parent.parent
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def canonical_reference(q: Quote) -> str:
    material = q.to_dict()
    material.pop("version")
    return json.dumps(material, sort_keys=True, separators=(",", ":"))


# Versions of the example booking as the engine gave them before the integer and template
# paths (waiver, hours of notice, with a risk flag): stored quotes carry these.
EXAMPLE_VERSIONS = {
    (None, 53, False): "4b135b461d63", (None, 53, True): "4e34326b6996",
    (None, 30, False): "2ba14fad434c", (None, 30, True): "9b87a45d5d1e",
    (None, 10, False): "922bcfbde61c", (None, 10, True): "2bcc140dc913",
    ("WEATHER", 10, False): "863b41a26cc9", ("WEATHER", 10, True): "f8af1fb4e826",
    (None, -2, False): "b343a3eb46da", (None, -2, True): "37536ea9aafc",
    ("operator", 30, False): "834aa21d9def", ("operator", 30, True): "7feec5be36ea",
}


@pytest.mark.parametrize(("waiver", "hours", "flagged"), list(EXAMPLE_VERSIONS))
def test_example_versions_are_the_ones_stored_before(waiver: str | None, hours: int,
                                                     flagged: bool) -> None:
    raw = json.loads((REPO / "examples" / "booking.json").read_text(encoding="utf-8"))
    book = load_policies(REPO / "examples" / "policies.yml")
    snapshot = parse_snapshot(raw, default_currency=book.currency)
    assert snapshot.fingerprint == "72ed67eb81695e32"
    flags = (RiskFlag("value_outlier", "worth 3x the usual"),) if flagged else ()
    q = build_quote(snapshot, book, snapshot.lines[0].start - timedelta(hours=hours),
                    waiver=waiver, risk_flags=flags)
    assert q.version == EXAMPLE_VERSIONS[(waiver, hours, flagged)]
    assert quote_text(q._serialised) == canonical_reference(q)


@SETTINGS
@given(cases(), st.integers(-300 * 3600, 300 * 3600),
       st.lists(st.tuples(st.text(max_size=8), st.text(max_size=30)), max_size=3),
       st.text(max_size=12))
def test_version_is_the_hash_of_the_canonical_json(
    case: tuple[dict, dict, str | None], offset: int, flags: list[tuple[str, str]], name: str
) -> None:
    snapshot, book, waiver = case
    snapshot["booking"]["order"]["items"]["item"][0]["name"] = name or "x"  # any text
    snapshot["booking"]["code"] = f"{name}-CODE"
    risk = tuple(RiskFlag(code, reason) for code, reason in flags)
    q = quote(snapshot, book, CANCELLED_AT + timedelta(seconds=offset), waiver=waiver,
              risk_flags=risk)
    blob = canonical_reference(q)
    assert quote_text(q._serialised) == blob
    assert q.version == hashlib.sha256(blob.encode()).hexdigest()[:12]


def test_a_value_the_template_cannot_write_is_written_by_the_encoder() -> None:
    raw = json.loads((REPO / "examples" / "booking.json").read_text(encoding="utf-8"))
    book = load_policies(REPO / "examples" / "policies.yml")
    snapshot = parse_snapshot(raw, default_currency=book.currency)
    odd = (RiskFlag(7, "a code that is not text"),)  # type: ignore[arg-type]
    q = build_quote(snapshot, book, snapshot.lines[0].start - timedelta(hours=30),
                    risk_flags=odd)
    assert q.version == hashlib.sha256(canonical_reference(q).encode()).hexdigest()[:12]


def test_to_dict_hands_out_copies() -> None:
    raw = json.loads((REPO / "examples" / "booking.json").read_text(encoding="utf-8"))
    book = load_policies(REPO / "examples" / "policies.yml")
    snapshot = parse_snapshot(raw, default_currency=book.currency)
    q = build_quote(snapshot, book, snapshot.lines[0].start - timedelta(hours=30))
    first = q.to_dict()
    want = json.dumps(first)
    first["lines"][0]["refund"] = "0.00"
    first["reasons"].append("changed")
    first["clauses"].clear()
    first["policy_ids"].append("x")
    first["allocations"][0]["amount"] = "1.00"
    assert json.dumps(q.to_dict()) == want


# A quote line: the integer path against the Decimal rule

def reference_line(line: BookingLine, p: Policy, cancelled_at: datetime,
                   waiver: str | None) -> tuple[Any, ...]:
    """Rules 2 to 5 in Decimal, as the engine wrote them before its integer path."""
    notice = _hours(line.start - cancelled_at)
    if waiver and waiver in p.waivers:
        percent, reason = p.waivers[waiver], f"waiver {waiver}"
    elif line.sku and line.sku in p.non_refundable_skus:
        percent, reason = Decimal(0), "non-refundable"
    elif line.start <= cancelled_at:
        percent, reason = Decimal(0), "already started"
    else:
        tier = p.tier_for(notice)
        percent = tier.refund_percent
        reason = f"{plain(tier.min_notice_hours)}h+ notice tier"
    refund = _percent_of_exact(line.amount_excl_tax, percent)
    tax_refund = _percent_of_exact(line.tax, percent) if p.refund_tax else 0
    return (str(notice.quantize(Decimal("0.01"), rounding=ROUND_FLOOR)), plain(percent),
            refund, tax_refund, reason, line.start.isoformat())


HOURS = st.one_of(st.integers(1, 400).map(Decimal),
                  st.decimals(Decimal("0.000000001"), Decimal(400), places=10),
                  st.sampled_from([Decimal("0.5"), Decimal("47.99"), Decimal("1e-12"),
                                   Decimal("0.0000000001"), Decimal("1") / Decimal(3)]))
PERCENT = st.one_of(st.integers(0, 100).map(Decimal),
                    st.decimals(Decimal(0), Decimal(100), places=2),
                    st.sampled_from([Decimal("33.333333"), Decimal("12.5"), Decimal("1E+1")]))


@st.composite
def tiered_policies(draw: st.DrawFn) -> Policy:
    hours = sorted(draw(st.sets(HOURS, min_size=0, max_size=3)))
    percents = sorted(draw(st.lists(PERCENT, min_size=len(hours) + 1,
                                    max_size=len(hours) + 1)))
    tiers = list(zip([Decimal(0), *hours], percents, strict=True))
    waiver = draw(PERCENT)
    book = parse_policies(policies(policy(
        "p", default=True, tiers=[(str(h), str(p)) for h, p in tiers],
        non_refundable=["fee"], refund_tax=draw(st.booleans()),
        waivers={"WEATHER": str(waiver)})))
    return book.policies[0]


@SETTINGS
@given(tiered_policies(), st.integers(-500 * 3_600_000_000, 500 * 3_600_000_000),
       st.integers(0, 10**22), st.integers(0, 10**6), st.sampled_from(["kayak", "fee"]),
       st.sampled_from([None, "WEATHER", "STRIKE"]))
def test_a_line_is_quoted_as_the_decimal_rules_say(
    p: Policy, notice_us: int, total: int, tax: int, sku: str, waiver: str | None
) -> None:
    start = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    cancelled_at = start - timedelta(microseconds=notice_us)
    line = BookingLine(line_id="1", item_id="", sku=sku, name="n", start=start,
                       total=total + tax, tax=tax, qty=1, status="")
    got = _quote_line(line, p, plan_of(p), cancelled_at, waiver)
    assert (got.notice_hours, got.percent, got.refund, got.tax_refund, got.reason,
            got.start) == reference_line(line, p, cancelled_at, waiver)


def test_tiers_in_fractions_of_a_microsecond_are_chosen_by_decimal() -> None:
    book = parse_policies(policies(policy("p", default=True, tiers=[
        ("0", "0"), ("0.0000000001", "50"), ("24", "100")])))
    assert plan_of(book.policies[0]).tiers is None
    start = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    line = BookingLine(line_id="1", item_id="", sku="kayak", name="n", start=start,
                       total=1000, tax=0, qty=1, status="")
    got = _quote_line(line, book.policies[0], plan_of(book.policies[0]),
                      start - timedelta(microseconds=1), None)
    assert (got.percent, got.refund, got.reason) == (
        "50", 500, f"{plain(Decimal('0.0000000001'))}h+ notice tier")


@settings(max_examples=500, deadline=None)
@given(st.integers(-(10**18), 10**18))
def test_notice_text_is_the_floored_decimal(microseconds: int) -> None:
    exact = Decimal(microseconds) / Decimal(3_600_000_000)
    assert _notice_text(microseconds) == str(exact.quantize(Decimal("0.01"),
                                                            rounding=ROUND_FLOOR))


@settings(max_examples=500, deadline=None)
@given(st.integers(-(10**21), 10**21), st.one_of(st.integers(-5, 105), st.booleans()))
def test_percent_of_in_integers_is_the_decimal_rounding(minor: int, percent: int) -> None:
    assert percent_of(minor, percent) == _percent_of_exact(minor, percent)


@pytest.mark.parametrize(("minor", "percent", "share"), [
    (5, 50, 3), (-5, 50, -3), (1, 49, 0), (1, 50, 1), (-1, 50, -1), (10**20 + 1, 50, None)])
def test_percent_of_rounds_halves_away_from_zero(minor: int, percent: int,
                                                 share: int | None) -> None:
    assert percent_of(minor, percent) == (share if share is not None
                                          else _percent_of_exact(minor, percent))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["status", "status_id", "other"]),
                       st.one_of(st.none(), st.text(max_size=6), st.integers(), st.booleans(),
                                 st.decimals(allow_nan=False, places=2)), max_size=3),
       st.booleans(), st.sampled_from(["", "PAID"]))
def test_checkfront_status_reads_the_first_value_given(record: dict[str, Any], strip: bool,
                                                       default: str) -> None:
    """Its loop against the definition it replaced: the first truthy value of the keys."""
    keys = ("status_id", "status")
    value = next((v for v in (record.get(k) for k in keys) if v), default)
    want = (_text(value) if strip else str(value)).upper()
    assert checkfront_status(record, *keys, default=default, strip=strip) == want


def test_frozen_new_builds_what_the_constructor_builds() -> None:
    raw = json.loads((REPO / "examples" / "booking.json").read_text(encoding="utf-8"))
    book = load_policies(REPO / "examples" / "policies.yml")
    snapshot = parse_snapshot(raw, default_currency=book.currency)
    q = build_quote(snapshot, book, snapshot.lines[0].start - timedelta(hours=30))
    for made in (snapshot, *snapshot.lines, *(snapshot.transactions or ()),
                 *snapshot.payments(), q, *q.lines, *q.allocations):
        kind = type(made)
        again = kind(**{f.name: getattr(made, f.name) for f in fields(kind)})
        assert made == again
        assert [f.name for f in fields(kind)] == [k for k in vars(made) if not k.startswith("_")
                                                  and k != "start_iso"]
        with pytest.raises(FrozenInstanceError):
            made.__setattr__(fields(kind)[0].name, None)
    assert frozen_new(RiskFlag, code="c", reason="r") == RiskFlag("c", "r")


def test_a_fingerprint_the_template_cannot_write_is_written_by_the_encoder() -> None:
    raw = json.loads((REPO / "examples" / "booking.json").read_text(encoding="utf-8"))
    snapshot = parse_snapshot(raw)
    odd = (replace(snapshot.lines[0], total=True, line_id=3), *snapshot.lines[1:])
    booking, order = raw["booking"], raw["booking"]["order"]
    material = {
        "status": str(booking.get("status") or ""), "total": str(order.get("total")),
        "paid_total": str(order.get("paid_total")),
        "lines": [(ln.line_id, ln.sku, ln.item_id, ln.start.isoformat(), ln.total, ln.tax)
                  for ln in odd],
        "transactions": sorted((t.id, t.status, t.amount, t.original_id or "")
                               for t in snapshot.transactions or ()),
    }
    want = hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()[:16]
    assert _fingerprint(booking, order, odd, snapshot.transactions) == want


# build_quote's one-step lines, allocations and amounts against the pieces they stand for

@SETTINGS
@given(cases(), st.integers(-300 * 3600, 300 * 3600),
       st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7))]))
def test_lines_are_the_ones_quote_line_makes(case: tuple[dict, dict, str | None], offset: int,
                                            zone: timezone) -> None:
    """Each line build_quote makes in one step is `_quote_line`'s, its row is `to_row`'s, and
    a cancellation time in any zone quotes as the same instant in UTC (but for its text)."""
    snapshot, book_data, waiver = case
    book = parse_policies(book_data, "test-policies.yml")
    parsed = parse_snapshot(snapshot, default_currency=book.currency)
    cancelled_at = (CANCELLED_AT + timedelta(seconds=offset)).astimezone(zone)
    q = build_quote(parsed, book, cancelled_at, waiver=waiver)
    rows = q.to_dict()["lines"]
    code = waiver.strip().upper() if waiver else None
    for line, got, row in zip(parsed.lines, q.lines, rows, strict=True):
        p = book.policy_for(line.sku, line.item_id)
        want = _quote_line(line, p, plan_of(p), cancelled_at, code)
        assert got == want
        assert row == want.to_row(exponent(parsed.currency))
    utc = build_quote(parsed, book, cancelled_at.astimezone(UTC), waiver=waiver)
    assert replace(q, cancelled_at="", version="") == replace(utc, cancelled_at="", version="")
    assert q.cancelled_at == cancelled_at.isoformat()


@settings(max_examples=500, deadline=None)
@given(st.integers(-(10**22), 10**22))
def test_kept_cents_texts_are_format_places(minor: int) -> None:
    assert cents_text(minor) == format_places(minor, 2)
    assert CENTS_TEXT[minor] == format_places(minor, 2)


def test_kept_cents_texts_are_bounded_and_exact_ints_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(money, "_MAX_CENTS_TEXT", 8)
    CENTS_TEXT.clear()
    for minor in range(20):
        cents_text(minor)
        assert len(CENTS_TEXT) <= 8
    CENTS_TEXT.clear()
    assert cents_text(True) == format_places(True, 2)
    assert True not in CENTS_TEXT


def test_a_float_amount_is_not_written_as_the_int_it_equals() -> None:
    """A snapshot built by hand with a float amount (never read from JSON) must not find the
    text kept for the int it equals: format_places refuses it, and so does the quote."""
    raw = json.loads((REPO / "examples" / "booking.json").read_text(encoding="utf-8"))
    book = load_policies(REPO / "examples" / "policies.yml")
    snapshot = parse_snapshot(raw, default_currency=book.currency)
    cents_text(25200)  # the example's order total, as an int
    odd = replace(snapshot, order_total=25200.0)
    with pytest.raises(TypeError):
        format_places(25200.0, 2)
    with pytest.raises(TypeError):
        build_quote(odd, book, snapshot.lines[0].start - timedelta(hours=30))
