"""The gateway's happy path against localstripe, a third-party Stripe emulator, in-process.

localstripe 1.15 works with the official client for payment methods, confirmed PaymentIntents,
partial refunds, retrieval and listing by payment. Known gaps, which is why our own stand-in
exists: it rejects parameters it does not know (`reason` included, hence
`StripeGateway(send_reason=False)`), ignores idempotency keys, accepts over-refunds, answers 500
to `refunds.list(created=...)`, and has no refund events or disputes. Its command line binds
every interface and pickles its store to a fixed file after each write; here its aiohttp app
is served on 127.0.0.1 only and the pickling is switched off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import stripe

localstripe_resources = pytest.importorskip("localstripe.resources")
localstripe_server = pytest.importorskip("localstripe.server")

from sandbox.http import serving  # noqa: E402
from services.clients.stripe_errors import StripeGatewayError  # noqa: E402
from services.clients.stripe_gateway import StripeGateway  # noqa: E402

KEY = "sk_test_localstripe"
# localstripe builds one aiohttp app at import time, and an app is bound to the first event loop
# that serves it: both tests share one loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def localstripe_url(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    monkeypatch.setattr(localstripe_resources.Store, "dump_to_disk", lambda self: None)
    localstripe_resources.store.clear()
    async with serving(localstripe_server.app) as server:
        yield server.url
    localstripe_resources.store.clear()


async def paid_intent(url: str, amount: int, currency: str) -> str:
    """A confirmed, succeeded PaymentIntent made through the official client."""
    http = stripe.HTTPXClient(timeout=5)
    client = stripe.StripeClient(KEY, http_client=http, base_addresses={"api": url})
    try:
        method = await client.v1.payment_methods.create_async(
            {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                      "exp_year": 2034, "cvc": "123"}}
        )
        intent = await client.v1.payment_intents.create_async(
            {"amount": amount, "currency": currency, "payment_method": method.id}
        )
        intent = await client.v1.payment_intents.confirm_async(intent.id)
        assert intent.status == "succeeded"
        return intent.id
    finally:
        await http.close_async()


async def test_gateway_happy_path_on_localstripe(localstripe_url: str) -> None:
    pi = await paid_intent(localstripe_url, 5000, "usd")
    gateway = StripeGateway(KEY, api_base=localstripe_url, timeout=5.0, send_reason=False)
    try:
        assert await gateway.unrefunded_amount(pi) == (5000, "USD")
        made = await gateway.create_refund(payment_ref=pi, amount=1500, currency="USD",
                                           idempotency_key="case-1-pay-1",
                                           metadata={"case_id": "1"})
        assert (made.amount, made.currency, made.status) == (1500, "USD", "succeeded")
        assert made.payment_intent == pi and made.metadata == {"case_id": "1"}
        assert await gateway.unrefunded_amount(pi) == (3500, "USD")
        assert await gateway.get_refund(made.id) == made
        assert [r.id for r in await gateway.refunds_for(pi)] == [made.id]
    finally:
        await gateway.close()


async def test_localstripe_rejects_the_reason_parameter(localstripe_url: str) -> None:
    pi = await paid_intent(localstripe_url, 2000, "eur")
    gateway = StripeGateway(KEY, api_base=localstripe_url, timeout=5.0)  # sends reason
    try:
        with pytest.raises(StripeGatewayError) as refused:
            await gateway.create_refund(payment_ref=pi, amount=500, currency="EUR",
                                        idempotency_key="k", metadata={})
        assert refused.value.kind == "invalid"
        assert "reason" in refused.value.message
        assert await gateway.unrefunded_amount(pi) == (2000, "EUR")
    finally:
        await gateway.close()
