"""The official Stripe client with its request log formatted only when shown, and list pages
read by orjson: the same lines when logging is on, the same pages and errors as its own
`raw_request_async`."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import stripe
from stripe import _util

from sandbox.http import serving
from sandbox.stripe_server import StripeSandbox
from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_gateway import StripeGateway
from services.clients.stripe_sdk import get_json, request_json

KEY = "sk_test_sandbox"


@pytest.fixture
def formatted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    lines: list[str] = []
    real = _util.logfmt

    def counting(props: dict[str, object]) -> str:
        lines.append(str(props.get("message")))
        return real(props)

    monkeypatch.setattr(_util, "logfmt", counting)
    yield lines


async def test_the_request_log_is_not_formatted_when_nobody_shows_it(
        formatted: list[str], caplog: pytest.LogCaptureFixture) -> None:
    sandbox = StripeSandbox()
    pi = sandbox.add_payment(5000, "usd")
    async with serving(sandbox.app()) as server:
        gateway = StripeGateway(KEY, api_base=server.url, timeout=2.0)
        await gateway.unrefunded_amount(pi.id)
        assert formatted == []
        with caplog.at_level(logging.DEBUG, logger="stripe"):
            await gateway.unrefunded_amount(pi.id)
        await gateway.close()
    assert "API response body" in formatted and "Request to Stripe api" in formatted
    assert any("API response body" in r.getMessage() for r in caplog.records)


async def test_a_page_read_by_orjson_is_the_clients_page_and_errors_are_its_errors() -> None:
    sandbox = StripeSandbox()
    pi = sandbox.add_payment(100_000, "usd")
    async with serving(sandbox.app()) as server:
        gateway = StripeGateway(KEY, api_base=server.url, timeout=2.0)
        for i in range(3):
            await gateway.create_refund(payment_ref=pi.id, amount=100 + i, currency="USD",
                                        idempotency_key=f"k-{i}", metadata={"case_id": "7"})
        client = gateway._client
        params = {"limit": 2, "payment_intent": pi.id}
        ours = await get_json(client, "/v1/refunds", dict(params))
        theirs = await client.raw_request_async("get", "/v1/refunds", **params)
        assert ours == theirs.data and type(ours["data"][0]) is dict
        with pytest.raises(stripe.InvalidRequestError):
            await get_json(client, "/v1/refunds/re_nope", {})
        sandbox.inject("429", method="GET", retry_after=0.01)
        listed = [r.amount async for r in gateway.iter_refunds(created_gte=0,
                                                               created_lt=2**40)]
        assert sorted(listed) == [100, 101, 102]   # the 429 retried as before
        assert sandbox.faults.take("GET", "/v1/refunds") is None   # it was met
        once = StripeGateway(KEY, api_base=server.url, timeout=2.0, max_network_retries=0)
        sandbox.inject("500", method="GET")
        with pytest.raises(StripeGatewayError):
            await anext(once.iter_refunds(created_gte=0, created_lt=2**40))
        await once.close()
        await gateway.close()


async def test_a_call_read_by_orjson_is_the_clients_answer_with_its_key_and_its_errors() -> None:
    sandbox = StripeSandbox()
    pi = sandbox.add_payment(100_000, "usd")
    async with serving(sandbox.app()) as server:
        gateway = StripeGateway(KEY, api_base=server.url, timeout=2.0)
        client = gateway._client
        path, expand = f"/v1/payment_intents/{pi.id}", {"expand": ["latest_charge"]}
        ours = await request_json(client, "get", path, dict(expand))
        theirs = await client.raw_request_async("get", path, **expand)
        assert ours == theirs.data and type(ours["latest_charge"]) is dict
        refund = {"payment_intent": pi.id, "amount": 700, "metadata": {"case_id": "7"}}
        first = await request_json(client, "post", "/v1/refunds", dict(refund),
                                   idempotency_key="case-7")
        again = await client.raw_request_async("post", "/v1/refunds", **refund,
                                               idempotency_key="case-7")
        assert first == again.data and len(sandbox.refunds) == 1   # the key was sent
        other = await request_json(client, "post", "/v1/refunds", dict(refund),
                                   idempotency_key="case-8")
        assert other["id"] != first["id"] and len(sandbox.refunds) == 2
        with pytest.raises(stripe.InvalidRequestError):
            await request_json(client, "post", "/v1/refunds",
                               {"payment_intent": pi.id, "amount": 10**9},
                               idempotency_key="case-9")
        assert len(sandbox.refunds) == 2
        await gateway.close()
