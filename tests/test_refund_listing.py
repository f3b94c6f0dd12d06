"""Refund listings read as plain JSON: the gateway's pages against the Stripe stand-in.

The official client still makes every call (`raw_request_async`); the pages are read straight
into `StripeRefund` records, no client object per refund, one page fetched ahead of the reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import stripe

from sandbox.http import serving
from sandbox.stripe_server import StripeSandbox
from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_gateway import StripeGateway
from services.clients.stripe_records import StripeRefund, refund_from, refunds_page

KEY = "sk_test_listing"
T0 = 1_700_000_000


class Env:
    def __init__(self, sandbox: StripeSandbox, url: str, now: list[int]) -> None:
        self.sandbox, self.url, self.now = sandbox, url, now
        self.gateways: list[StripeGateway] = []

    def gateway(self, **options: Any) -> StripeGateway:
        gateway = StripeGateway(KEY, api_base=self.url, timeout=2.0, backoff_base=0.01,
                                **options)
        self.gateways.append(gateway)
        return gateway

    def listings(self) -> int:
        return sum(1 for r in self.sandbox.requests
                   if r.method == "GET" and r.path == "/v1/refunds")

    async def refunds(self, count: int) -> list[StripeRefund]:
        """`count` refunds of one payment, one a minute from T0."""
        gateway = self.gateway()
        pi = self.sandbox.add_payment(1_000_000, "usd")
        made = []
        for i in range(count):
            self.now[0] = T0 + i * 60
            made.append(await gateway.create_refund(
                payment_ref=pi.id, amount=100 + i, currency="USD",
                idempotency_key=f"k-{i}", metadata={"case_id": str(i)}))
        return made


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    now = [T0]
    sandbox = StripeSandbox(clock=lambda: float(now[0]))
    async with serving(sandbox.app()) as server:
        env = Env(sandbox, server.url, now)
        yield env
        for gateway in env.gateways:
            await gateway.close()


def window(gateway: StripeGateway, page_size: int = 2) -> AsyncIterator[StripeRefund]:
    return gateway.iter_refunds(created_gte=T0, created_lt=T0 + 3600, page_size=page_size)


async def test_pages_are_read_without_building_client_objects(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    made = await env.refunds(5)
    gateway = env.gateway()
    built: list[str] = []
    original = stripe.StripeObject.__init__

    def counting(self: stripe.StripeObject, *args: Any, **kwargs: Any) -> None:
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(stripe.StripeObject, "__init__", counting)
    listed = [r async for r in window(gateway)]
    by_payment = await gateway.refunds_for(str(made[0].payment_intent))

    assert built == []
    assert listed == by_payment == made[::-1]  # newest first, same records as when made


async def test_records_read_from_json_equal_the_client_objects_read(env: Env) -> None:
    made = await env.refunds(3)
    env.sandbox.settle_refund(made[1].id, "failed", failure_reason="expired_or_canceled_card")
    by_charge = env.sandbox.add_payment(5000, "eur")
    env.now[0] = T0 + 600
    gateway = env.gateway()
    made.append(await gateway.create_refund(
        payment_ref=str(by_charge.latest_charge), amount=2500, currency="EUR",
        idempotency_key="k-charge", metadata={}))
    http = stripe.HTTPXClient(timeout=2.0)
    client = stripe.StripeClient(KEY, http_client=http, base_addresses={"api": env.url})
    try:
        objects = [refund_from(await client.v1.refunds.retrieve_async(r.id)) for r in made]
    finally:
        await http.close_async()

    listed = [r async for r in window(gateway, page_size=100)]
    assert listed == objects[::-1]
    assert listed[2].status == "failed"
    assert listed[2].failure_reason == "expired_or_canceled_card"
    assert (listed[0].currency, listed[0].payment_intent, listed[0].metadata) == \
        ("EUR", by_charge.id, {})


async def test_the_next_page_is_fetched_ahead_and_never_more(env: Env) -> None:
    await env.refunds(9)
    gateway = env.gateway()
    before = env.listings()
    stream = window(gateway)

    first = await anext(stream)
    for _ in range(100):  # the next page is on its way while the reader works on this one
        if env.listings() - before == 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert env.listings() - before == 2  # one page ahead, no more
    assert first.amount == 108

    second = await anext(stream)
    assert second.amount == 107
    await asyncio.sleep(0.1)
    assert env.listings() - before == 2  # still inside the first page

    await stream.aclose()  # a reader that stops early leaves nothing running
    await asyncio.sleep(0.1)
    assert env.listings() - before <= 3
    pending = [t for t in asyncio.all_tasks() if "_refund_page" in repr(t.get_coro())]
    assert pending == []


async def test_a_page_fetched_ahead_that_fails_fails_when_it_is_reached(env: Env) -> None:
    await env.refunds(4)
    gateway = env.gateway(max_network_retries=0)
    stream = window(gateway)
    first = await anext(stream)  # page 1 read; page 2 not sent yet (the loop has not run)
    env.sandbox.inject("500", method="GET", path="/v1/refunds")

    second = await anext(stream)  # the rest of page 1 is still served
    with pytest.raises(StripeGatewayError) as failed:
        await anext(stream)
    assert [first.amount, second.amount] == [103, 102]
    assert (failed.value.kind, failed.value.http_status) == ("unavailable", 500)


async def test_a_rate_limited_page_is_retried(env: Env) -> None:
    made = await env.refunds(5)
    gateway = env.gateway()
    env.sandbox.inject("429", method="GET", path="/v1/refunds", retry_after=0.01, times=2)

    assert [r async for r in window(gateway)] == made[::-1]


def test_an_answer_that_is_not_a_list_page_is_refused() -> None:
    with pytest.raises(StripeGatewayError) as refused:
        refunds_page({"object": "refund", "id": "re_1"})
    assert refused.value.kind == "unavailable"
    assert refunds_page({"object": "list", "data": [], "has_more": False}) == ([], False)


async def test_a_reader_that_never_awaits_still_gets_the_next_page_fetched(env: Env) -> None:
    made = await env.refunds(41)
    gateway = env.gateway()
    before = env.listings()
    stream = window(gateway, page_size=40)

    first_page = []
    for _ in range(40):  # nothing awaited between refunds but the listing itself
        first_page.append(await anext(stream))
    asked_while_reading = env.listings() - before
    rest = [r async for r in stream]

    assert asked_while_reading == 2  # page 2 was asked for while page 1 was being read
    assert first_page + rest == made[::-1]


def test_a_page_reads_as_each_refund_read_alone() -> None:
    items: list[dict[str, Any]] = [
        {"id": "re_1", "amount": 12_300, "currency": "isk", "status": "succeeded",
         "payment_intent": {"id": "pi_1"}, "charge": "ch_1", "metadata": {"case_id": 7},
         "created": T0},
        {"id": "re_2", "amount": 1_234, "currency": "usd", "status": None,
         "payment_intent": None, "charge": "ch_2", "metadata": None, "created": T0 + 1},
        {"id": "re_3", "amount": 12_340, "currency": "kwd", "status": "failed",
         "payment_intent": "pi_3", "charge": "", "failure_reason": "declined",
         "metadata": {}, "created": T0 + 2},
        {"id": "re_4", "amount": 99, "currency": "usd", "status": "pending",
         "payment_intent": "pi_4", "charge": None, "metadata": {"booking_code": "BK-1"},
         "created": T0 + 3},
    ]
    listed, more = refunds_page({"object": "list", "data": items, "has_more": True})
    assert listed == [refund_from(item) for item in items]
    assert [r.amount for r in listed] == [123, 1_234, 12_340, 99]  # ISK: 100 = 1 krona
    assert more is True
    with pytest.raises(StripeGatewayError):
        refunds_page({"object": "list", "data": [dict(items[0], currency="us")]})
