"""One reader of Checkfront status codes serves the client, the snapshot and the webhook
worker: each caller's keys, order, fallback and blank handling stay what they were."""

from __future__ import annotations

from itertools import product
from typing import Any

import pytest

from services.clients.checkfront_bodies import checkfront_status

VALUES: list[Any] = [None, "", " ", "stop", " Void ", "PAID", "part_paid", 7]


def records() -> list[dict[str, Any]]:
    """Every pairing of `status` and `status_id` from VALUES, each key also left out."""
    found = []
    for status, status_id in product([*VALUES, "absent"], repeat=2):
        record = {}
        if status != "absent":
            record["status"] = status
        if status_id != "absent":
            record["status_id"] = status_id
        found.append(record)
    return found


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


# The expressions each caller used before they shared one reader.
BEFORE = {
    "api booking": (lambda r: _text(r.get("status_id") or r.get("status")).upper(),
                    lambda r: checkfront_status(r, "status_id", "status")),
    "api item": (lambda r: _text(r.get("status_id") or r.get("status") or "STOP").upper(),
                 lambda r: checkfront_status(r, "status_id", "status", default="STOP")),
    "api transaction": (lambda r: _text(r.get("status")).upper(),
                        lambda r: checkfront_status(r, "status")),
    "snapshot booking": (
        lambda r: str(r.get("status") or r.get("status_id") or "").strip().upper(),
        lambda r: checkfront_status(r, "status", "status_id")),
    "snapshot line": (lambda r: str(r.get("status") or "").upper(),
                      lambda r: checkfront_status(r, "status", strip=False)),
    "snapshot transaction": (lambda r: str(r.get("status") or "").strip().upper(),
                             lambda r: checkfront_status(r, "status")),
    "webhook cancellation": (
        lambda r: str(r.get("status") or r.get("status_id") or "").upper(),
        lambda r: checkfront_status(r, "status", "status_id", strip=False)),
}


@pytest.mark.parametrize("caller", sorted(BEFORE))
def test_each_caller_reads_statuses_as_it_did(caller: str) -> None:
    before, now = BEFORE[caller]
    for record in records():
        assert now(record) == before(record), record


def test_first_non_empty_key_wins_in_the_order_given() -> None:
    record = {"status": "stop", "status_id": "VOID"}
    assert checkfront_status(record, "status", "status_id") == "STOP"
    assert checkfront_status(record, "status_id", "status") == "VOID"
    assert checkfront_status({"status": "", "status_id": "void"}, "status", "status_id") == "VOID"


def test_default_and_blanks() -> None:
    assert checkfront_status({}, "status") == ""
    assert checkfront_status({"status": None}, "status", default="PAID") == "PAID"
    assert checkfront_status({"status": " void "}, "status") == "VOID"
    assert checkfront_status({"status": " void "}, "status", strip=False) == " VOID "
