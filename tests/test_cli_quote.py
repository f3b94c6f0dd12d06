"""`python -m bot quote`: the table, the --json contract and every bad-input path (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.quote_fixtures import booking, item, paid, policies, policy

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_BOOKING = ROOT / "examples" / "booking.json"
EXAMPLE_POLICIES = ROOT / "examples" / "policies.yml"
CANCELLED = "2026-11-24T10:00:00Z"


def run_quote(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "quote", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )


def quote_json(*args: str | Path) -> dict[str, Any]:
    result = run_quote(*args, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_table_itemises_the_example_quote() -> None:
    result = run_quote("--booking", EXAMPLE_BOOKING, "--policies", EXAMPLE_POLICIES,
                       "--cancelled-at", CANCELLED)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("KMVQ-261124", "Sunset kayak tour", "Photo package", "Booking fee",
                 "non-refundable", "48h+ notice tier", "[standard-48h]", "[default]",
                 "Decision: auto_approve", "pi_3QxKayak0002"):
        assert text in out
    total_line = next(line for line in out.splitlines() if line.startswith("TOTAL REFUND"))
    assert total_line.split()[-2:] == ["200.00", "USD"]
    assert result.stderr == ""


def test_json_has_the_contract_fields_with_decimal_string_amounts() -> None:
    data = quote_json("--booking", EXAMPLE_BOOKING, "--policies", EXAMPLE_POLICIES,
                      "--cancelled-at", CANCELLED)
    assert {"booking_id", "currency", "total_refund", "decision", "lines", "fee",
            "entitlement", "net_paid", "retained", "allocations", "policy_ids"} <= set(data)
    assert (data["booking_id"], data["currency"]) == ("157", "USD")
    assert (data["total_refund"], data["decision"]) == ("200.00", "auto_approve")
    assert (data["fee"], data["entitlement"], data["net_paid"], data["retained"]) == (
        "10.00", "200.00", "252.00", "52.00")
    assert data["policy_ids"] == ["standard-48h", "default"]
    assert data["allocations"] == [
        {"payment": "pi_3QxKayak0002", "amount": "152.00", "method": "stripe"},
        {"payment": "pi_3QxKayak0001", "amount": "48.00", "method": "stripe"},
    ]
    assert [line["refund"] for line in data["lines"]] == ["200.00", "0.00", "0.00"]
    assert [line["percent"] for line in data["lines"]] == ["100", "0", "0"]


def test_waiver_option_refunds_everything_without_the_fee() -> None:
    data = quote_json("--booking", EXAMPLE_BOOKING, "--policies", EXAMPLE_POLICIES,
                      "--cancelled-at", CANCELLED, "--waiver", "weather")
    assert (data["fee"], data["total_refund"]) == ("0.00", "252.00")
    assert data["decision"] == "needs_approval"  # over auto_approve_max 200.00
    assert {line["reason"] for line in data["lines"]} == {"waiver WEATHER"}


def test_cancellation_time_in_another_offset_is_the_same_instant() -> None:
    utc = quote_json("--booking", EXAMPLE_BOOKING, "--policies", EXAMPLE_POLICIES,
                     "--cancelled-at", CANCELLED)
    offset = quote_json("--booking", EXAMPLE_BOOKING, "--policies", EXAMPLE_POLICIES,
                        "--cancelled-at", "2026-11-24T05:00:00-05:00")
    assert [ln["notice_hours"] for ln in utc["lines"]] == [
        ln["notice_hours"] for ln in offset["lines"]]
    assert utc["total_refund"] == offset["total_refund"]


def test_jpy_json_amounts_have_no_decimals(tmp_path: Path) -> None:
    snapshot = write_json(tmp_path / "b.json", booking(
        [item("kayak", "15000", hours=30)], currency="JPY",
        transactions=[paid("pi_jpy", "15000")]))
    book = write_yaml(tmp_path / "p.yml", policies(
        policy("kayak", skus=["kayak"]), currency="JPY",
        auto_approve_max="10000", escalate_over="50000"))
    data = quote_json("--booking", snapshot, "--policies", book, "--cancelled-at", CANCELLED)
    assert (data["currency"], data["total_refund"], data["decision"]) == (
        "JPY", "7500", "auto_approve")
    assert data["allocations"] == [{"payment": "pi_jpy", "amount": "7500", "method": "stripe"}]


def test_kwd_json_amounts_have_three_decimals(tmp_path: Path) -> None:
    snapshot = write_json(tmp_path / "b.json", booking(
        [item("kayak", "10.005", "0.005", hours=30)], currency="KWD", transactions=None))
    book = write_yaml(tmp_path / "p.yml", policies(
        policy("kayak", skus=["kayak"]), currency="KWD",
        auto_approve_max="100.000", escalate_over="500.000"))
    data = quote_json("--booking", snapshot, "--policies", book, "--cancelled-at", CANCELLED)
    assert data["total_refund"] == "5.003"
    assert data["allocations"] == [{"payment": "manual", "amount": "5.003", "method": "manual"}]
    assert data["decision"] == "needs_approval"


def bad_inputs(tmp_path: Path) -> dict[str, list[str | Path]]:
    good_booking: list[str | Path] = ["--booking", EXAMPLE_BOOKING]
    good_policies: list[str | Path] = ["--policies", EXAMPLE_POLICIES]
    good_time: list[str | Path] = ["--cancelled-at", CANCELLED]
    not_json = tmp_path / "not.json"
    not_json.write_text('{"booking": {', encoding="utf-8")
    not_utf8 = tmp_path / "latin1.json"
    not_utf8.write_bytes(b"\xff\xfe{}")
    bad_policy = write_yaml(tmp_path / "bad.yml", {
        **yaml.safe_load(EXAMPLE_POLICIES.read_text(encoding="utf-8")), "colour": "red"})
    no_default = write_yaml(tmp_path / "nodefault.yml", policies(
        policy("kayak", skus=["kayak-tour"])))
    no_order = write_json(tmp_path / "noorder.json", {"booking": {"code": "X-1"}})
    far_future = json.loads(EXAMPLE_BOOKING.read_text(encoding="utf-8"))
    far_future["booking"]["order"]["items"]["item"][0]["start_date"] = "1e20"
    return {
        "missing booking file": ["--booking", tmp_path / "absent.json", *good_policies,
                                 *good_time],
        "missing policy file": [*good_booking, "--policies", tmp_path / "absent.yml",
                                *good_time],
        "booking not JSON": ["--booking", not_json, *good_policies, *good_time],
        "booking not UTF-8": ["--booking", not_utf8, *good_policies, *good_time],
        "policy with unknown key": [*good_booking, "--policies", bad_policy, *good_time],
        "unparsable time": [*good_booking, *good_policies, "--cancelled-at", "next tuesday"],
        "time without timezone": [*good_booking, *good_policies,
                                  "--cancelled-at", "2026-11-24T10:00:00"],
        "line without a policy": [*good_booking, "--policies", no_default, *good_time],
        "booking without an order": ["--booking", no_order, *good_policies, *good_time],
        "timestamp out of range": ["--booking", write_json(tmp_path / "far.json", far_future),
                                   *good_policies, *good_time],
    }


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing booking file", "absent.json: cannot read booking file"),
        ("missing policy file", "absent.yml: cannot read policy file"),
        ("booking not JSON", "not.json: not valid JSON"),
        ("booking not UTF-8", "latin1.json: not a UTF-8 text file"),
        ("policy with unknown key", "bad.yml: colour: unknown key"),
        ("unparsable time", "not an ISO-8601 time"),
        ("time without timezone", "needs a timezone"),
        ("line without a policy", "no policy applies to line 2"),
        ("booking without an order", "booking.order is missing"),
        ("timestamp out of range", "start_date: unix timestamp out of range"),
    ],
)
def test_bad_input_exits_2_with_one_error_line(tmp_path: Path, case: str, expected: str) -> None:
    result = run_quote(*bad_inputs(tmp_path)[case])
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert expected in lines[0]


def test_missing_required_option_is_a_usage_error() -> None:
    result = run_quote("--booking", EXAMPLE_BOOKING)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--policies" in result.stderr
