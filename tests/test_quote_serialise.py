"""The hand-written serialisers against what they replaced, so they cannot drift apart.

`Quote.to_dict` and the booking fingerprint used to be `dataclasses.asdict` and a
`json.dumps` call; both stay defined here as the reference and are compared over generated
quotes (the property tests' bookings, payments, policies and waivers, plus risk flags), the
example booking and quotes read back from storage. Money reading and formatting have fast
paths for the usual inputs; they are compared with the general Decimal path the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.money import MoneyError, _to_minor_exact, exponent, format_minor, to_minor
from services.quoting.booking_read import parse_snapshot
from services.quoting.canonical import fingerprint as _fingerprint
from services.quoting.engine import build_quote
from services.quoting.policy import load_policies
from services.quoting.quote import Quote, QuoteLine, RiskFlag
from tests.quote_fixtures import CANCELLED_AT, quote
from tests.test_quote_properties import CURRENCIES, cases

REPO = Path(__file__).resolve().parent.parent
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
MONEY = ("fee", "entitlement", "order_total", "paid", "already_refunded", "net_paid",
         "retained", "total_refund")


def asdict_reference(q: Quote) -> dict[str, Any]:
    """`Quote.to_dict` as it was: `dataclasses.asdict`, then the JSON conversions."""
    data = asdict(q)
    for name in MONEY:
        data[name] = q.amount(data[name])
    for line in data["lines"]:
        for name in ("amount", "tax", "refund", "tax_refund"):
            line[name] = q.amount(line[name])
    for allocation in data["allocations"]:
        allocation["amount"] = q.amount(allocation["amount"])
    data["decision"] = q.decision.value
    data["policy_ids"] = list(q.policy_ids)
    data["reasons"] = list(q.reasons)
    return data


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Equal, key order and container types included (a tuple never equals a list)."""
    assert got == want
    assert list(got) == list(want)
    for name in ("lines", "allocations", "risk_flags"):
        assert type(got[name]) is type(want[name])
        assert [list(row) for row in got[name]] == [list(row) for row in want[name]]
    assert json.dumps(got) == json.dumps(want)


def test_every_field_is_serialised() -> None:
    """A field added to a dataclass must be added to its to_dict (and this reference)."""
    q = quote_example()
    assert list(q.to_dict()) == [f.name for f in fields(Quote)]
    assert list(q.lines[0].to_dict(q.currency)) == [f.name for f in fields(QuoteLine)]


def quote_example(waiver: str | None = None, hours: int = 53) -> Quote:
    raw = json.loads((REPO / "examples" / "booking.json").read_text(encoding="utf-8"))
    book = load_policies(REPO / "examples" / "policies.yml")
    start = parse_snapshot(raw).lines[0].start
    snapshot = parse_snapshot(raw, default_currency=book.currency)
    return build_quote(snapshot, book, start - timedelta(hours=hours), waiver=waiver,
                       risk_flags=(RiskFlag("value_outlier", "worth 3x the usual"),))


@pytest.mark.parametrize(("waiver", "hours"), [(None, 53), (None, 30), (None, 10),
                                               ("WEATHER", 10), (None, -2)])
def test_example_booking_serialises_as_asdict_did(waiver: str | None, hours: int) -> None:
    q = quote_example(waiver, hours)
    assert_same(q.to_dict(), asdict_reference(q))


@SETTINGS
@given(cases(), st.integers(-300 * 3600, 300 * 3600),
       st.lists(st.tuples(st.text(max_size=8), st.text(max_size=30)), max_size=3))
def test_generated_quotes_serialise_as_asdict_did(
    case: tuple[dict, dict, str | None], offset: int, flags: list[tuple[str, str]]
) -> None:
    snapshot, book, waiver = case
    risk = tuple(RiskFlag(code, reason) for code, reason in flags)
    q = quote(snapshot, book, CANCELLED_AT + timedelta(seconds=offset), waiver=waiver,
              risk_flags=risk)
    assert_same(q.to_dict(), asdict_reference(q))
    stored = Quote.from_dict(json.loads(json.dumps(q.to_dict())))  # read back from the store
    assert_same(stored.to_dict(), asdict_reference(stored))
    other = replace(q, version="")
    assert_same(other.to_dict(), asdict_reference(other))


@SETTINGS
@given(cases())
def test_fingerprint_is_the_canonical_json_it_was(case: tuple[dict, dict, str | None]) -> None:
    snapshot = case[0]
    parsed = parse_snapshot(snapshot)
    booking = snapshot["booking"]
    order = booking["order"]
    material = {
        "status": str(booking.get("status") or ""),
        "total": str(order.get("total")),
        "paid_total": str(order.get("paid_total")),
        "lines": [(ln.line_id, ln.sku, ln.item_id, ln.start.isoformat(), ln.total, ln.tax)
                  for ln in parsed.lines],
        "transactions": None if parsed.transactions is None else sorted(
            (t.id, t.status, t.amount, t.original_id or "") for t in parsed.transactions),
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"))
    want = hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert parsed.fingerprint == want
    assert _fingerprint(booking, order, parsed.lines, parsed.transactions) == want


# Money: the fast paths against the general one

AMOUNT_TEXT = st.one_of(
    st.from_regex(r"\A\s?-?[0-9]{1,26}(\.[0-9]{0,6})?\s?\Z"),
    st.from_regex(r"\A[-+]?[0-9_]{0,4}\.?[0-9eE+\-_]{0,5}\Z"),
    st.text(alphabet="0123456789.-+eE _٣", max_size=8),
)


def outcome(read: Any, value: Any, currency: str) -> tuple[str, Any]:
    try:
        return "ok", read(value, currency)
    except MoneyError as exc:
        return "refused", str(exc)


@settings(max_examples=600, deadline=None)
@given(AMOUNT_TEXT, st.sampled_from(CURRENCIES))
def test_to_minor_reads_text_as_the_decimal_path_does(text: str, currency: str) -> None:
    assert outcome(to_minor, text, currency) == outcome(_to_minor_exact, text, currency)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(-(10**26), 10**26), st.booleans(),
                 st.floats(allow_nan=True, allow_infinity=True), st.decimals()),
       st.sampled_from(CURRENCIES))
def test_to_minor_reads_numbers_as_the_decimal_path_does(value: Any, currency: str) -> None:
    assert outcome(to_minor, value, currency) == outcome(_to_minor_exact, value, currency)


@settings(max_examples=300, deadline=None)
@given(st.integers(-(10**30), 10**30), st.sampled_from(CURRENCIES))
def test_format_minor_is_the_divmod_form(minor: int, currency: str) -> None:
    places = exponent(currency)
    whole, frac = divmod(abs(minor), 10**places)
    want = str(minor) if places == 0 else f"{'-' if minor < 0 else ''}{whole}.{frac:0{places}d}"
    assert format_minor(minor, currency) == want
