"""CheckfrontClient against the Checkfront stand-in over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.checkfront_transport import CheckfrontTransport
from sandbox.checkfront_server import CheckfrontSandbox
from sandbox.http import RunningServer, start
from services.clients.checkfront import CheckfrontClient
from services.clients.checkfront_errors import (
    BookingNotFound,
    CheckfrontAuthError,
    CheckfrontError,
    CheckfrontUnavailable,
)
from services.quoting.booking_read import parse_snapshot

KEY = "cf_test_key"
SECRET = "cf_test_secret_do_not_log"
EMAIL = "ana.silva@example.test"

FIXTURE: dict[str, Any] = {
    "booking": {
        "@attributes": {"booking_id": "157"},
        "status": "STOP",
        "code": "KMVQ-060314",
        "created_date": "1394156618",
        "customer": {"name": "Ana Silva", "email": EMAIL},
        "order": {
            "@attributes": {"currency_id": "CAD"},
            "sub_total": "46.00",
            "tax_total": "2.30",
            "paid_total": "48.30",
            "total": "48.30",
            "discount": "0.00",
            "items": {
                "item": [
                    {
                        "@attributes": {"line_id": "1", "item_id": "6"},
                        "start_date": "1394128800",
                        "end_date": "1394128800",
                        "sku": "paddle",
                        "name": "Paddle rental",
                        "status": "STOP",
                        "total": "6.30",
                        "tax_total": "0.30",
                        "qty": "2",
                    },
                    {
                        "@attributes": {"line_id": "2", "item_id": "8"},
                        "start_date": "1394092800",
                        "end_date": "1394092800",
                        "sku": "paddleboard",
                        "name": "Paddleboard tour",
                        "status": "STOP",
                        "total": "42.00",
                        "tax_total": "2.00",
                        "qty": "2",
                    },
                ]
            },
        },
    },
    "transactions": [
        {
            "transaction_id": "pi_3Abc",
            "date": 1394156700,
            "status": "PAID",
            "amount": "48.30",
            "gateway_id": "Stripe",
            "booking_id": "KMVQ-060314",
        },
        {
            "transaction_id": "re_3Def",
            "date": 1394160000,
            "status": "REFUND",
            "amount": "6.30",
            "gateway_id": "Stripe",
            "booking_id": "KMVQ-060314",
            "original_transaction_id": "pi_3Abc",
        },
    ],
}


TRANSPORTS: dict[str, Any] = {"httpx": None, "aiohttp": CheckfrontTransport}
_transport: list[Any] = [None]


@pytest.fixture(params=sorted(TRANSPORTS), autouse=True)
def over(request: pytest.FixtureRequest) -> Any:
    """Every test here twice: through httpx's own `AsyncClient.send`, and straight through
    the transport the bot gives (`bot.checkfront_transport`, called without httpx's send)."""
    _transport[0] = TRANSPORTS[request.param]
    yield request.param
    _transport[0] = None


def make_client(url: str, secret: str = SECRET, **kw: Any) -> CheckfrontClient:
    opts: dict[str, Any] = {"retries": 2, "backoff_base": 0.001, "max_backoff": 0.01}
    if _transport[0] is not None:
        opts["transport"] = _transport[0]()
    opts.update(kw)
    return CheckfrontClient(url, KEY, secret, timeout=2.0, **opts)


@pytest.fixture
async def cf() -> AsyncIterator[tuple[CheckfrontSandbox, RunningServer]]:
    sandbox = CheckfrontSandbox(KEY, SECRET, currency="CAD")
    sandbox.add_booking(FIXTURE)
    server = await start(sandbox.app())
    try:
        yield sandbox, server
    finally:
        await server.stop()


@pytest.fixture
async def client(cf: tuple[CheckfrontSandbox, RunningServer]) -> AsyncIterator[CheckfrontClient]:
    async with make_client(cf[1].url) as c:
        yield c


async def raw(method: str, url: str, **kw: Any) -> httpx.Response:
    """A direct API call, without the client under test."""
    async with httpx.AsyncClient(auth=(KEY, SECRET)) as http:
        return await http.request(method, url, **kw)


def project(full: Any, like: Any) -> Any:
    """`full` cut down to the keys present in `like` (recursively)."""
    if isinstance(like, dict) and isinstance(full, dict):
        return {k: project(full[k], v) for k, v in like.items() if k in full}
    if isinstance(like, list) and isinstance(full, list):
        return [project(f, v) for f, v in zip(full, like, strict=True)]
    return full


async def test_snapshot_by_id_matches_fixture(client: CheckfrontClient) -> None:
    snap = await client.get_booking_snapshot("157")
    b = snap["booking"]
    assert b["@attributes"] == {"booking_id": "157"}
    assert (b["status"], b["code"], b["created_date"]) == ("STOP", "KMVQ-060314", "1394156618")
    assert b["customer"] == {"name": "Ana Silva", "email": EMAIL}
    order = b["order"]
    assert order["@attributes"] == {"currency_id": "CAD"}
    amounts = [order[k] for k in ("sub_total", "tax_total", "paid_total", "total", "discount")]
    assert amounts == ["46.00", "2.30", "48.30", "48.30", "0.00"]
    items = order["items"]["item"]
    assert [i["sku"] for i in items] == ["paddle", "paddleboard"]
    assert items[0] == FIXTURE["booking"]["order"]["items"]["item"][0]
    assert snap["transactions"] == FIXTURE["transactions"]


async def test_snapshot_by_code_equals_by_id_and_webhook(
    cf: tuple[CheckfrontSandbox, RunningServer], client: CheckfrontClient
) -> None:
    sandbox, _ = cf
    by_code = await client.get_booking_snapshot("kmvq-060314")
    assert by_code == await client.get_booking_snapshot("157")
    # Everything the client reports agrees with the webhook body Checkfront would send.
    assert project(sandbox.snapshot("157"), by_code) == by_code


@pytest.mark.parametrize("style", ["keyed", "webhook"])
async def test_engine_reads_client_snapshot_like_the_fixture(style: str) -> None:
    sandbox = CheckfrontSandbox(KEY, SECRET, items_style=style)  # type: ignore[arg-type]
    sandbox.add_booking(FIXTURE)
    server = await start(sandbox.app())
    try:
        async with make_client(server.url) as c:
            snap = await c.get_booking_snapshot("KMVQ-060314")
    finally:
        await server.stop()
    assert parse_snapshot(snap) == parse_snapshot(FIXTURE)


@pytest.mark.parametrize("style", ["keyed", "webhook"])
async def test_single_item_booking(style: str) -> None:
    sandbox = CheckfrontSandbox(KEY, SECRET, items_style=style)  # type: ignore[arg-type]
    bid = sandbox.add_booking(
        code="SOLO-010126",
        currency="JPY",
        items=[{"sku": "kayak", "name": "Kayak", "item_id": "9", "total": "7500", "tax": "500"}],
        transactions=[{"transaction_id": "pi_solo", "amount": "7500", "status": "PAID"}],
    )
    webhook_items = sandbox.webhook_body(bid)["booking"]["order"]["items"]["item"]
    assert isinstance(webhook_items, dict)  # one item: an object, as Checkfront sends it
    server = await start(sandbox.app())
    try:
        async with make_client(server.url) as c:
            snap = await c.get_booking_snapshot("SOLO-010126")
    finally:
        await server.stop()
    order = snap["booking"]["order"]
    assert order["items"]["item"] == [
        {
            "@attributes": {"line_id": "1", "item_id": "9"},
            "start_date": webhook_items["start_date"],
            "end_date": webhook_items["end_date"],
            "sku": "kayak",
            "name": "Kayak",
            "status": "PAID",
            "total": "7500",
            "tax_total": "500",
            "qty": "1",
        }
    ]
    assert (order["sub_total"], order["total"], order["paid_total"]) == ("7000", "7500", "7500")


async def test_transactions_key_absent_when_not_exposed() -> None:
    sandbox = CheckfrontSandbox(KEY, SECRET, expose_transactions=False)
    sandbox.add_booking(FIXTURE)
    server = await start(sandbox.app())
    try:
        async with make_client(server.url) as c:
            snap = await c.get_booking_snapshot("157")
    finally:
        await server.stop()
    assert "transactions" not in snap
    assert snap["booking"]["order"]["paid_total"] == "48.30"


async def test_wrong_secret_is_auth_error(cf: tuple[CheckfrontSandbox, RunningServer]) -> None:
    async with make_client(cf[1].url, secret="wrong") as c:
        with pytest.raises(CheckfrontAuthError) as info:
            await c.get_booking_snapshot("157")
    assert "wrong" not in str(info.value)
    assert len(cf[0].requests) == 1  # 401 is not retried


async def test_unknown_booking(cf: tuple[CheckfrontSandbox, RunningServer]) -> None:
    async with make_client(cf[1].url) as c:
        with pytest.raises(BookingNotFound):
            await c.get_booking_snapshot("NOPE-000000")
        with pytest.raises(BookingNotFound):
            await c.get_booking_snapshot("../index")  # never sent
    answer = await raw("GET", f"{cf[1].url}/api/3.0/booking/999")
    assert answer.status_code == 404
    assert set(answer.json()) == {"error", "error_description"}


async def test_429_retry_after_is_honoured_and_capped(
    cf: tuple[CheckfrontSandbox, RunningServer],
) -> None:
    sandbox, server = cf
    sandbox.inject(429, times=1, retry_after=30, path_prefix="booking/157")
    async with make_client(server.url, max_backoff=0.2) as c:
        began = time.monotonic()
        snap = await c.get_booking_snapshot("157")
        waited = time.monotonic() - began
    assert snap["booking"]["code"] == "KMVQ-060314"
    assert 0.18 <= waited < 1.5  # Retry-After 30 s, capped at max_backoff
    assert len(sandbox.requests_to("booking/157", "GET")) == 3  # 429, booking, transact


async def test_500_beyond_retries_is_unavailable(
    cf: tuple[CheckfrontSandbox, RunningServer],
) -> None:
    sandbox, server = cf
    sandbox.inject(500, times=10)
    async with make_client(server.url, retries=2) as c:
        with pytest.raises(CheckfrontUnavailable):
            await c.get_booking_snapshot("157")
    assert len(sandbox.requests) == 3  # first try + 2 retries


async def test_500_then_success(cf: tuple[CheckfrontSandbox, RunningServer]) -> None:
    sandbox, server = cf
    sandbox.inject(502, times=2)
    async with make_client(server.url, retries=2) as c:
        assert (await c.get_booking_snapshot("157"))["booking"]["status"] == "STOP"


async def test_down_and_up(cf: tuple[CheckfrontSandbox, RunningServer]) -> None:
    sandbox, server = cf
    sandbox.down()
    async with make_client(server.url) as c:
        with pytest.raises(CheckfrontUnavailable):
            await c.get_booking_snapshot("157")
        sandbox.up()
        assert (await c.get_booking_snapshot("157"))["booking"]["code"] == "KMVQ-060314"


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with make_client(f"http://127.0.0.1:{port}", retries=1) as c:
        with pytest.raises(CheckfrontUnavailable):
            await c.get_booking_snapshot("157")


async def test_timeout_is_unavailable(cf: tuple[CheckfrontSandbox, RunningServer]) -> None:
    sandbox, server = cf
    sandbox.stall(0.4, times=2)
    async with CheckfrontClient(server.url, KEY, SECRET, timeout=0.1, retries=1) as c:
        with pytest.raises(CheckfrontUnavailable, match="in time"):
            await c.get_booking_snapshot("157")


async def test_update_status_recorded(
    cf: tuple[CheckfrontSandbox, RunningServer], client: CheckfrontClient
) -> None:
    sandbox, _ = cf
    await client.update_status("KMVQ-060314", "void")
    assert sandbox.status_of(157) == "VOID"
    [change] = sandbox.status_history("157")
    assert (change.status_id, change.notify) == ("VOID", False)
    [req] = sandbox.requests_to("booking/KMVQ-060314/update", "POST")
    assert req.form == {"status_id": "VOID", "notify": "0"}
    snap = await client.get_booking_snapshot("157")
    assert snap["booking"]["status"] == "VOID"
    assert sandbox.webhook_body("157")["booking"]["status"] == "VOID"


async def test_unknown_status_rejected_and_not_retried(
    cf: tuple[CheckfrontSandbox, RunningServer], client: CheckfrontClient
) -> None:
    sandbox, server = cf
    with pytest.raises(CheckfrontError) as info:
        await client.update_status("157", "BOGUS")
    assert not isinstance(info.value, CheckfrontUnavailable)
    assert info.value.status == 400
    assert len(sandbox.requests) == 1
    assert sandbox.status_of(157) == "STOP"
    url = f"{server.url}/api/3.0/booking/157/update"
    missing = await raw("POST", url, data={"notify": "0"})
    assert missing.status_code == 400
    assert "status_id" in missing.json()["error_description"]


async def test_notes_and_truncation(
    cf: tuple[CheckfrontSandbox, RunningServer], client: CheckfrontClient
) -> None:
    sandbox, server = cf
    await client.add_note("157", "Refund of 6.30 CAD approved")
    await client.add_note("157", "x" * 3001)
    bodies = [n.body for n in sandbox.notes(157)]
    assert bodies[0] == "Refund of 6.30 CAD approved"
    assert len(bodies[1]) == 3000 and bodies[1].endswith("…")
    listing = (await raw("GET", f"{server.url}/api/3.0/booking/157/notes")).json()
    assert listing["request"]["records"] == 2
    assert listing["notes"][0]["booking_id"] == "KMVQ-060314"
    too_long = await raw(
        "POST", f"{server.url}/api/3.0/booking/157/note", data={"body": "y" * 3001}
    )
    assert too_long.status_code == 400
    assert len(sandbox.notes(157)) == 2


async def test_note_not_resent_after_ambiguous_500(
    cf: tuple[CheckfrontSandbox, RunningServer], client: CheckfrontClient
) -> None:
    sandbox, _ = cf
    sandbox.inject(500, path_prefix="booking/157/note")
    with pytest.raises(CheckfrontUnavailable):
        await client.add_note("157", "only once")
    assert len(sandbox.requests) == 1
    sandbox.inject(429, retry_after=0, path_prefix="booking/157/note")
    await client.add_note("157", "after rate limit")  # 429: refused, safe to resend
    assert [n.body for n in sandbox.notes(157)] == ["after rate limit"]


async def test_permanent_redirect_keeps_credentials(
    cf: tuple[CheckfrontSandbox, RunningServer],
) -> None:
    new_sandbox, new_server = cf
    old = CheckfrontSandbox(KEY, SECRET)
    old.moved_to = new_server.url
    old_server = await start(old.app())
    try:
        async with make_client(old_server.url) as c:
            snap = await c.get_booking_snapshot("157")
            await c.update_status("157", "VOID")
            assert c.base_url == new_server.url
    finally:
        await old_server.stop()
    assert snap["booking"]["code"] == "KMVQ-060314"
    assert len(old.requests) == 1  # later calls went straight to the new host
    assert all(r.authorized for r in new_sandbox.requests)
    assert new_sandbox.status_of(157) == "VOID"


async def test_booking_index_shape(cf: tuple[CheckfrontSandbox, RunningServer]) -> None:
    sandbox, server = cf
    for n in range(4):
        sandbox.add_booking(code=f"IDX{n}-010126", status="PAID" if n % 2 else "PEND")
    url = f"{server.url}/api/3.0/booking/index"
    body = (await raw("GET", url, params={"status_id": "PEND", "limit": 1})).json()
    assert body["version"] == "3.0"
    req = body["request"]
    assert (req["status"], req["records"], req["total_records"], req["pages"]) == ("OK", 1, 2, 2)
    [row] = body["booking/index"].values()
    assert row["status_id"] == "PEND" and row["status_name"] == "Pending"
    page2 = (await raw("GET", url, params={"limit": 2, "page": 3})).json()
    assert page2["request"]["pages"] == 3 and len(page2["booking/index"]) == 1


async def test_webhook_bodies(cf: tuple[CheckfrontSandbox, RunningServer]) -> None:
    sandbox, _ = cf
    body = sandbox.webhook_body("KMVQ-060314")
    assert body["@attributes"]["version"] == "3.0"
    assert body["booking"]["order"]["paid_total"] == "48.30"
    assert sandbox.snapshot(157)["transactions"] == FIXTURE["transactions"]
    refund = sandbox.add_transaction(157, amount="10.00", status="REFUND", transaction_id="re_2")
    assert refund["amount"] == "10.00"
    assert sandbox.webhook_body(157)["booking"]["order"]["paid_total"] == "38.30"
    hook = sandbox.transaction_webhook_body(157)
    assert (hook["type"], hook["action"]) == ("transaction", "insert")
    assert hook["transaction"]["status"] == "REFUND"
    assert hook["transaction"]["booking_id"] == "KMVQ-060314"


async def test_no_secret_or_pii_in_logs(
    cf: tuple[CheckfrontSandbox, RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    sandbox, server = cf
    caplog.set_level(logging.DEBUG)
    sandbox.inject(503, times=1)
    async with make_client(server.url) as c:
        await c.get_booking_snapshot("157")
        await c.add_note("157", f"customer {EMAIL} called")
        with pytest.raises(CheckfrontError) as info:
            await c.update_status("157", "NOPE")
    assert "retry 1/2" in caplog.text
    for secret in (SECRET, EMAIL, "Ana Silva"):
        assert secret not in caplog.text
        assert secret not in str(info.value)
        assert secret not in repr(c)
