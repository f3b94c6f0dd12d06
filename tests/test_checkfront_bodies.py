"""Checkfront's bodies: one reader of status codes serves the client, the snapshot and the
webhook worker (each caller's keys, order, fallback and blank handling stay what they were);
a `GET booking` body is read into the snapshot without inventing amounts or losing its code."""

from __future__ import annotations

import copy
from itertools import product
from typing import Any

import pytest

from sandbox.checkfront_server import CheckfrontSandbox
from sandbox.http import serving
from services.clients.checkfront import CheckfrontClient
from services.clients.checkfront_bodies import booking_from_body, checkfront_status
from services.quoting.booking import SnapshotError
from services.quoting.booking_read import parse_snapshot

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


def api_body() -> dict[str, Any]:
    """A `GET booking/{id}` body as the stand-in serves it (items keyed by line id)."""
    sandbox = CheckfrontSandbox()
    sandbox.add_booking(code="BODY-1", items=[
        {"sku": "kayak", "name": "Kayak", "item_id": "9", "total": "75.00", "tax": "5.00"},
        {"sku": "paddle", "name": "Paddle", "item_id": "3", "total": "10.00"}])
    b = sandbox.booking("BODY-1")
    return {"locale": {"currency": "USD"}, "booking": sandbox._booking_body(b)}


def test_a_line_without_a_total_is_refused_naming_the_line() -> None:
    body = api_body()
    del body["booking"]["items"]["2"]["total"]
    shaped = booking_from_body(body)
    assert "total" not in shaped["order"]["items"]["item"][1]  # not read as 0.00

    with pytest.raises(SnapshotError, match=r"booking\.order\.items\[1\]\.total is missing"):
        parse_snapshot({"booking": shaped})
    # a blank total is as missing as an absent one
    body = api_body()
    body["booking"]["items"]["2"]["total"] = " "
    with pytest.raises(SnapshotError, match=r"items\[1\]\.total is missing"):
        parse_snapshot({"booking": booking_from_body(body)})


def test_a_line_with_a_zero_total_is_still_read() -> None:
    body = api_body()
    body["booking"]["items"]["2"]["total"] = "0.00"
    snapshot = parse_snapshot({"booking": booking_from_body(body)})
    assert [line.total for line in snapshot.lines] == [7500, 0]


def test_a_body_whose_code_is_in_id_keeps_the_code() -> None:
    body = api_body()
    as_code = copy.deepcopy(body)
    as_code["booking"]["id"] = as_code["booking"].pop("code")
    shaped = booking_from_body(as_code)
    assert shaped["code"] == "BODY-1"
    assert shaped == booking_from_body(body)
    snapshot = parse_snapshot({"booking": shaped})
    assert (snapshot.code, snapshot.booking_id) == ("BODY-1", str(body["booking"]["booking_id"]))


def test_a_snapshot_whose_code_is_in_id_keeps_the_code() -> None:
    body = api_body()
    shaped = booking_from_body(body)
    shaped["id"] = shaped.pop("code")
    del shaped["@attributes"]
    snapshot = parse_snapshot({"booking": shaped})
    assert (snapshot.code, snapshot.booking_id) == ("BODY-1", "BODY-1")


async def test_the_client_reads_the_code_from_id_and_labels_the_payments_with_it() -> None:
    class IdBodies(CheckfrontSandbox):
        def _booking_body(self, b: Any) -> dict[str, Any]:
            body = super()._booking_body(b)
            body["id"] = body.pop("code")
            return body

        @staticmethod
        def _tx_record(b: Any, tx: Any) -> dict[str, Any]:
            record = CheckfrontSandbox._tx_record(b, tx)
            del record["booking_id"]  # the payment names no booking: the client labels it
            return record

    sandbox = IdBodies()
    sandbox.add_booking(code="IDC-1", items=[{"sku": "kayak", "total": "75.00"}],
                        transactions=[{"transaction_id": "pi_idc", "amount": "75.00",
                                       "status": "PAID"}])
    async with serving(sandbox.app()) as server, CheckfrontClient(
            server.url, sandbox.api_key, sandbox.api_secret, timeout=2.0) as client:
        snap = await client.get_booking_snapshot("IDC-1")
    assert snap["booking"]["code"] == "IDC-1"
    assert [t["booking_id"] for t in snap["transactions"]] == ["IDC-1"]
    assert parse_snapshot(snap).code == "IDC-1"
