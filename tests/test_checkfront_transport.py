"""The Checkfront client over aiohttp (`bot.checkfront_transport`): the same answers as over
httpx's own transport, and a request that may have reached Checkfront is never taken for one
that was not (a note is not written twice)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.checkfront_transport import CheckfrontTransport
from sandbox.checkfront_server import CheckfrontSandbox
from sandbox.http import start
from services.clients.checkfront import CheckfrontClient
from services.clients.checkfront_errors import CheckfrontUnavailable

KEY, SECRET = "key-t", "secret-t"


def client(url: str, **kw: object) -> CheckfrontClient:
    return CheckfrontClient(url, KEY, SECRET, timeout=2.0, retries=2, backoff_base=0.001,
                            max_backoff=0.01, transport=CheckfrontTransport(), **kw)


async def test_the_same_snapshot_and_writes_as_over_httpx_own_transport() -> None:
    sandbox = CheckfrontSandbox(KEY, SECRET)
    sandbox.add_booking(code="TR-1", status="PAID", currency="USD", customer_name="A B",
                        customer_email="a@example.test", created_date=1_700_000_000,
                        items=[{"sku": "kayak", "name": "kayak", "item_id": "1",
                                "start": 1_800_000_000, "end": 1_800_007_200,
                                "total": "120.00", "tax": "0.00", "qty": 1}],
                        transactions=[], paid_total="0")
    sandbox.add_transaction("TR-1", amount="120.00", transaction_id="pi_1",
                            gateway_id="Stripe", date=1_700_000_100)
    server = await start(sandbox.app())
    try:
        async with CheckfrontClient(server.url, KEY, SECRET) as plain, client(server.url) as aio:
            assert await aio.get_booking_snapshot("TR-1") == \
                await plain.get_booking_snapshot("TR-1")
            await aio.update_status("TR-1", "VOID")
            await aio.add_note("TR-1", "Refund 120.00 via Stripe.")
            assert (await plain.get_booking("TR-1"))["status"] == "VOID"
    finally:
        await server.stop()


@pytest.fixture
async def hangs_up() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that reads each request whole, then closes the connection without an answer."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        seen.append(head.split(b"\r\n", 1)[0])
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


async def test_a_note_whose_connection_was_lost_after_sending_is_not_sent_again(
        hangs_up: tuple[str, list[bytes]]) -> None:
    url, seen = hangs_up
    async with client(url) as c:
        with pytest.raises(CheckfrontUnavailable):
            await c.add_note("TR-1", "Refund 120.00 via Stripe.")
    assert len(seen) == 1, seen   # received once, and not resent: it may have been taken


async def test_a_read_whose_connection_was_lost_is_retried(
        hangs_up: tuple[str, list[bytes]]) -> None:
    url, seen = hangs_up
    async with client(url) as c:
        with pytest.raises(CheckfrontUnavailable):
            await c.get_booking("TR-1")
    assert len(seen) >= 3, seen   # idempotent: the first try and two retries (at least)


async def test_a_refused_connection_is_never_sent_and_retried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with client(f"http://127.0.0.1:{port}") as c:
        with pytest.raises(CheckfrontUnavailable, match="Could not connect"):
            await c.add_note("TR-1", "a note")


async def test_a_given_transport_gets_the_request_httpx_would_send_and_the_hooks_run(
        caplog: pytest.LogCaptureFixture) -> None:
    """Called without `AsyncClient.send`: the same Basic auth header as httpx's `BasicAuth`,
    the client's headers and timeout, each hook once a request, httpx's log line for each
    call, and no cookie kept."""
    seen: list[httpx.Request] = []
    hooked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"request": {}, "booking": {}},
                              headers={"Set-Cookie": "session=abc; Path=/"})

    async def on_request(request: httpx.Request) -> None:
        hooked.append(f"request {request.method}")

    async def on_response(response: httpx.Response) -> None:
        hooked.append(f"response {response.status_code} {response.request.method}")

    caplog.set_level(logging.INFO, logger="httpx")
    expected = httpx.Request("GET", "http://127.0.0.1/")
    next(httpx.BasicAuth(KEY, SECRET).auth_flow(expected))
    async with CheckfrontClient("http://127.0.0.1:1", KEY, SECRET, timeout=3.0,
                                transport=httpx.MockTransport(answer),
                                event_hooks={"request": [on_request],
                                             "response": [on_response]}) as c:
        await c.ping()
        await c.add_note("TR-1", "Refund 120.00 via Stripe.")
    assert hooked == ["request GET", "response 200 GET", "request POST", "response 200 POST"]
    first, second = seen
    assert first.headers["Authorization"] == expected.headers["Authorization"]
    assert second.headers["Authorization"] == expected.headers["Authorization"]
    assert first.headers["Accept"] == "application/json"
    assert first.headers["User-Agent"] == "refund-bot/0.1"
    assert first.extensions["timeout"] == httpx.Timeout(3.0).as_dict()
    assert "Cookie" not in second.headers
    assert [r.getMessage() for r in caplog.records if r.name == "httpx"] == [
        'HTTP Request: GET http://127.0.0.1:1/api/3.0/ping "HTTP/1.1 200 OK"',
        'HTTP Request: POST http://127.0.0.1:1/api/3.0/booking/TR-1/note "HTTP/1.1 200 OK"']
    assert second.url.path == "/api/3.0/booking/TR-1/note"
    assert second.content == b"body=Refund+120.00+via+Stripe."
