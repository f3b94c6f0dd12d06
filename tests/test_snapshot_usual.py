"""The snapshot's one-pass reader against the validating path it stands in for.

`parse_snapshot` reads a snapshot of the usual shape in one pass and hands anything else to
`parse_checked`, which validates field by field. Over generated snapshots (the property
tests' bookings), and over the same snapshots with a few values swapped for odd ones (None,
blanks, numbers, booleans, floats, lists, signed or spaced amounts, other digits, missing
keys), both must give the same snapshot, to the type of every value (compared by `repr`), or
the same refusal.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.quoting import booking_read as booking_module
from services.quoting.booking import SnapshotError
from services.quoting.booking_checked import parse_checked
from services.quoting.booking_read import parse_snapshot
from tests.quote_fixtures import booking, item, paid
from tests.test_quote_properties import cases

REPO = Path(__file__).resolve().parent.parent
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

ODD = st.one_of(
    st.sampled_from([None, "", " ", 0, 1, -1, True, False, 1.5, 2.0, [], {}, ["x"],
                     {"item": []}, "0", "-5.00", " 12.30 ", "12.3", "12.345", "1e3", "٣.٠٠",
                     "+1.00", "1_000.00", "12.", ".50", "1795705200", " 1795705200",
                     "1795705200.0", 1795705200, 1795705200.0, "99999999999999999999",
                     "usd", "US", "JPY", " STOP ", "pi_x", "abc"]),
    st.text(max_size=6),
    st.integers(-(10**12), 10**12),
)
DELETE = object()  # a mutation that removes the key


def places(data: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(container, key) pairs of a snapshot a mutation may change."""
    spots: list[tuple[dict[str, Any], str]] = [(data, "booking"), (data, "transactions")]
    b = data["booking"]
    spots += [(b, k) for k in ("@attributes", "status", "status_id", "code", "id",
                               "booking_id", "created_date", "customer", "order")]
    if isinstance(b.get("@attributes"), dict):
        spots.append((b["@attributes"], "booking_id"))
    if isinstance(b.get("customer"), dict):
        spots += [(b["customer"], k) for k in ("name", "email")]
    order = b["order"]
    spots += [(order, k) for k in ("@attributes", "total", "paid_total", "items")]
    if isinstance(order.get("@attributes"), dict):
        spots.append((order["@attributes"], "currency_id"))
    items = order["items"]["item"]
    spots.append((order["items"], "item"))
    for it in items:
        spots += [(it, k) for k in ("@attributes", "start_date", "sku", "name", "status",
                                    "total", "tax_total", "qty", "line_id", "item_id")]
        spots += [(it["@attributes"], k) for k in ("line_id", "item_id")]
    for t in data.get("transactions") or ():
        spots += [(t, k) for k in ("transaction_id", "date", "status", "amount", "gateway_id",
                                   "original_transaction_id")]
    return spots


def walkable(data: dict[str, Any]) -> bool:
    """Whether `places` can still walk the snapshot (the shape it describes is intact)."""
    b = data.get("booking")
    order = b.get("order") if isinstance(b, dict) else None
    items = order.get("items") if isinstance(order, dict) else None
    listed = items.get("item") if isinstance(items, dict) else None
    transactions = data.get("transactions")
    return (isinstance(listed, list)
            and all(isinstance(it, dict) and isinstance(it.get("@attributes"), dict)
                    for it in listed)
            and (transactions is None or (isinstance(transactions, list)
                                          and all(isinstance(t, dict) for t in transactions))))


def outcome(read: Any, data: Any, currency: str | None) -> tuple[str, str]:
    try:
        snapshot = read(data, default_currency=currency)
    except SnapshotError as exc:
        return "refused", str(exc)
    moments = [(ln.start_iso, ln.start.isoformat()) for ln in snapshot.lines]
    return "read", repr((snapshot, moments, snapshot.created_at))


@SETTINGS
@given(cases(), st.sampled_from([None, "USD", "JPY"]))
def test_usual_snapshots_read_as_the_validating_path_reads_them(
    case: tuple[dict, dict, str | None], currency: str | None
) -> None:
    snapshot = case[0]
    want = outcome(parse_checked, snapshot, currency)
    assert want[0] == "read"
    assert outcome(parse_snapshot, snapshot, currency) == want


@SETTINGS
@given(cases(), st.data())
def test_odd_values_read_or_are_refused_as_the_validating_path_does(
    case: tuple[dict, dict, str | None], data: st.DataObject
) -> None:
    snapshot = copy.deepcopy(case[0])
    for _ in range(data.draw(st.integers(1, 3))):
        spots = places(snapshot)
        container, key = data.draw(st.sampled_from(spots))
        value = data.draw(st.one_of(ODD, st.just(DELETE)))
        if value is DELETE:
            container.pop(key, None)
        else:
            container[key] = value
        if not walkable(snapshot):
            break  # further mutations would need a shape the spots no longer describe
    currency = data.draw(st.sampled_from([None, "USD"]))
    assert outcome(parse_snapshot, snapshot, currency) == outcome(parse_checked, snapshot,
                                                                  currency)


def test_the_example_reads_in_one_pass() -> None:
    raw = json.loads((REPO / "examples" / "booking.json").read_text(encoding="utf-8"))
    assert booking_module._read_usual(raw, "USD") is not None
    assert outcome(parse_snapshot, raw, "USD") == outcome(parse_checked, raw, "USD")


@pytest.mark.parametrize("odd", [True, 1.0, 1795705200.0, "1795705200.5"])
def test_kept_moments_are_found_by_exact_type_only(odd: Any) -> None:
    """A moment kept for unix second 1 (or 1795705200) must not answer True or 1.0, which
    compare equal to it; each is read (or refused) as the validating path reads it."""
    for seconds in (1, 1795705200, "1795705200"):
        parse_snapshot(booking([item("kayak", "10.00")], transactions=[
            {**paid("pi_1", "10.00"), "date": seconds}]))
    data = booking([item("kayak", "10.00")], transactions=[{**paid("pi_1", "10.00"),
                                                            "date": odd}])
    assert outcome(parse_snapshot, data, None) == outcome(parse_checked, data, None)


def test_the_kept_moments_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(booking_module, "_MAX_MOMENTS", 8)
    booking_module._MOMENTS.clear()
    for day in range(20):
        parse_snapshot(booking([item("kayak", "10.00")], transactions=[
            {**paid("pi_1", "10.00"), "date": 1795705200 + day}]))
        assert len(booking_module._MOMENTS) <= 8
