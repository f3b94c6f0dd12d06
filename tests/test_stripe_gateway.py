"""The Stripe gateway over real HTTP against the Stripe stand-in on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from sandbox.http import serving
from sandbox.stripe_server import StripeSandbox
from sandbox.stripe_webhooks import sign
from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_events import InvalidStripeSignature, verify_event
from services.clients.stripe_gateway import StripeGateway
from services.clients.stripe_money import from_stripe_amount, to_stripe_amount

KEY = "sk_test_sandbox"
SECRET = "whsec_sandbox"


@dataclass
class StandIn:
    sandbox: StripeSandbox
    url: str
    gateways: list[StripeGateway] = field(default_factory=list)

    def gateway(self, **options: object) -> StripeGateway:
        settings: dict[str, object] = {"timeout": 2.0, "backoff_base": 0.01, **options}
        gateway = StripeGateway(KEY, api_base=self.url, **settings)  # type: ignore[arg-type]
        self.gateways.append(gateway)
        return gateway

    def posts(self) -> list[tuple[str | None, int | None, bool]]:
        return [(r.idempotency_key, r.status, r.replayed)
                for r in self.sandbox.requests if r.method == "POST"]


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    sandbox = StripeSandbox(timeout_delay=0.6)
    async with serving(sandbox.app()) as server:
        env = StandIn(sandbox, server.url)
        yield env
        for gateway in env.gateways:
            await gateway.close()


async def refund(gateway: StripeGateway, pi: str, amount: int, key: str, currency: str = "USD"):
    return await gateway.create_refund(payment_ref=pi, amount=amount, currency=currency,
                                       idempotency_key=key, metadata={"case_id": "42"})


# ---- happy path and answers --------------------------------------------------------------------


async def test_partial_refund_and_what_is_left(stand_in: StandIn) -> None:
    gateway = stand_in.gateway()
    pi = stand_in.sandbox.add_payment(5000, "usd")
    assert await gateway.unrefunded_amount(pi.id) == (5000, "USD")

    made = await refund(gateway, pi.id, 1500, "case-42-1")
    assert made.id.startswith("re_")
    assert (made.amount, made.currency, made.status) == (1500, "USD", "succeeded")
    assert (made.payment_intent, made.charge) == (pi.id, pi.latest_charge)
    assert made.metadata == {"case_id": "42"} and made.failure_reason is None
    assert stand_in.sandbox.refund(made.id).reason == "requested_by_customer"
    assert await gateway.unrefunded_amount(pi.id) == (3500, "USD")
    assert await gateway.unrefunded_amount(str(pi.latest_charge)) == (3500, "USD")
    assert await gateway.get_refund(made.id) == made


async def test_a_refund_after_reading_what_is_left_costs_two_calls(stand_in: StandIn) -> None:
    """One PaymentIntent retrieve (its charge expanded) and the create: the currency check
    before the create uses the currency that retrieve gave, and still refuses another one."""
    gateway = stand_in.gateway()
    pi = stand_in.sandbox.add_payment(5000, "eur")
    assert await gateway.unrefunded_amount(pi.id) == (5000, "EUR")
    with pytest.raises(StripeGatewayError) as wrong:
        await refund(gateway, pi.id, 1000, "k-usd", currency="USD")
    assert (wrong.value.kind, wrong.value.message) == \
        ("invalid", f"payment {pi.id} is in EUR, not USD")
    await refund(gateway, pi.id, 1000, "k-eur", currency="EUR")
    calls = [(r.method, r.path) for r in stand_in.sandbox.requests]
    assert calls == [("GET", f"/v1/payment_intents/{pi.id}"), ("POST", "/v1/refunds")]


async def test_a_refund_builds_no_client_objects_and_sends_its_key(
    stand_in: StandIn, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What is left and the refund are read as plain JSON through the official client (its
    auth, retries and errors): no `StripeObject` is built for them, the key and the metadata
    still go with the create, and a refusal is still the client's error, mapped as before."""
    import stripe._util

    def no_objects(*args: object, **kwargs: object) -> object:
        raise AssertionError("a client object was built")

    monkeypatch.setattr(stripe._util, "_convert_to_stripe_object", no_objects)
    gateway = stand_in.gateway()
    pi = stand_in.sandbox.add_payment(4000, "usd")
    assert await gateway.unrefunded_amount(pi.id) == (4000, "USD")
    fresh = stand_in.gateway()   # knows no currency yet: it retrieves the PaymentIntent
    made = await gateway.create_refund(payment_ref=pi.id, amount=1500, currency="USD",
                                       idempotency_key="k-raw", metadata={"case_id": "7",
                                                                          "plan": "1"})
    assert (made.amount, made.currency, made.payment_intent) == (1500, "USD", pi.id)
    assert made.metadata == {"case_id": "7", "plan": "1"}
    assert stand_in.posts() == [("k-raw", 200, False)]
    monkeypatch.undo()   # the client's own error carries its error object, as before
    with pytest.raises(StripeGatewayError) as over:
        await fresh.create_refund(payment_ref=pi.id, amount=3000, currency="USD",
                                  idempotency_key="k-over", metadata={})
    assert over.value.kind == "over_refund" and over.value.maybe_applied is False
    assert stand_in.posts()[-1] == ("k-over", 400, False)


async def test_a_charge_is_read_in_one_call_and_a_failed_one_is_not_remembered(
    stand_in: StandIn,
) -> None:
    gateway = stand_in.gateway()
    pi = stand_in.sandbox.add_payment(3000, "usd")
    assert await gateway.unrefunded_amount(str(pi.latest_charge)) == (3000, "USD")
    await refund(gateway, str(pi.latest_charge), 500, "k-ch")
    assert [r.path for r in stand_in.sandbox.requests] == \
        [f"/v1/charges/{pi.latest_charge}", "/v1/refunds"]

    failed = stand_in.sandbox.fail_payment(2000, "usd")
    with pytest.raises(StripeGatewayError):
        await gateway.unrefunded_amount(failed.id)
    before = len(stand_in.sandbox.requests)
    with pytest.raises(StripeGatewayError):
        await refund(gateway, failed.id, 100, "k-failed", currency="EUR")
    # not remembered from the failed read: the currency was asked again before refusing
    assert [r.method for r in stand_in.sandbox.requests[before:]] == ["GET"]


async def test_same_key_is_replayed_and_refunds_once(stand_in: StandIn) -> None:
    gateway = stand_in.gateway()
    pi = stand_in.sandbox.add_payment(5000, "usd")
    first = await refund(gateway, pi.id, 1500, "case-42-1")
    second = await refund(gateway, pi.id, 1500, "case-42-1")
    assert second.id == first.id
    assert len(stand_in.sandbox.refunds) == 1
    assert stand_in.posts() == [("case-42-1", 200, False), ("case-42-1", 200, True)]


async def test_same_key_with_other_parameters_is_an_idempotency_error(stand_in: StandIn) -> None:
    gateway = stand_in.gateway()
    pi = stand_in.sandbox.add_payment(5000, "usd")
    await refund(gateway, pi.id, 1500, "case-42-1")
    with pytest.raises(StripeGatewayError) as error:
        await refund(gateway, pi.id, 1600, "case-42-1")
    assert error.value.kind == "idempotency"
    assert len(stand_in.sandbox.refunds) == 1


async def test_over_refund_is_rejected(stand_in: StandIn) -> None:
    gateway = stand_in.gateway()
    pi = stand_in.sandbox.add_payment(5000, "usd")
    with pytest.raises(StripeGatewayError) as over:
        await refund(gateway, pi.id, 5001, "k-1")
    assert over.value.kind == "over_refund"
    assert "greater than" in over.value.message
    await refund(gateway, pi.id, 5000, "k-2")
    with pytest.raises(StripeGatewayError) as done:
        await refund(gateway, pi.id, 1, "k-3")
    assert (done.value.kind, done.value.code) == ("over_refund", "charge_already_refunded")
    assert await gateway.unrefunded_amount(pi.id) == (0, "USD")


async def test_wrong_currency_and_bad_references_never_reach_stripe(stand_in: StandIn) -> None:
    gateway = stand_in.gateway()
    pi = stand_in.sandbox.add_payment(5000, "usd")
    with pytest.raises(StripeGatewayError) as wrong:
        await refund(gateway, pi.id, 1000, "k-1", currency="EUR")
    assert wrong.value.kind == "invalid"
    with pytest.raises(StripeGatewayError) as bad_ref:
        await refund(gateway, "cs_test_123", 1000, "k-2")
    assert bad_ref.value.kind == "invalid"
    with pytest.raises(StripeGatewayError) as kwd:
        await refund(gateway, pi.id, 1005, "k-3", currency="KWD")
    assert kwd.value.kind == "invalid"
    assert stand_in.posts() == []


async def test_missing_objects_and_bad_keys(stand_in: StandIn) -> None:
    gateway = stand_in.gateway()
    with pytest.raises(StripeGatewayError) as missing:
        await gateway.get_refund("re_missing")
    assert missing.value.kind == "not_found"
    with pytest.raises(StripeGatewayError) as no_payment:
        await refund(gateway, "pi_missing", 100, "k-1")
    assert no_payment.value.kind == "not_found"
    intruder = StripeGateway("sk_live_not_accepted", api_base=stand_in.url)
    with pytest.raises(StripeGatewayError) as auth:
        await intruder.get_refund("re_x")
    await intruder.close()
    assert auth.value.kind == "auth"


async def test_reason_can_be_left_out(stand_in: StandIn) -> None:
    gateway = stand_in.gateway(send_reason=False)
    pi = stand_in.sandbox.add_payment(5000, "usd")
    made = await refund(gateway, pi.id, 100, "k-1")
    assert stand_in.sandbox.refund(made.id).reason is None


# ---- faults: every retry carries the same key, and one refund is made ---------------------------


async def test_500_before_processing_is_retried_by_the_client(stand_in: StandIn) -> None:
    gateway = stand_in.gateway(max_network_retries=1)
    pi = stand_in.sandbox.add_payment(5000, "usd")
    stand_in.sandbox.inject("500")
    made = await refund(gateway, pi.id, 1000, "k-500")
    assert [r.id for r in stand_in.sandbox.refunds] == [made.id]
    assert stand_in.posts() == [("k-500", 500, False), ("k-500", 200, False)]


async def test_500_after_processing_then_retry_makes_exactly_one_refund(
    stand_in: StandIn,
) -> None:
    gateway = stand_in.gateway(max_network_retries=1)
    pi = stand_in.sandbox.add_payment(5000, "usd")
    stand_in.sandbox.inject("500", after_processing=True)
    with pytest.raises(StripeGatewayError) as lost:
        await refund(gateway, pi.id, 1000, "k-lost")
    assert (lost.value.kind, lost.value.maybe_applied) == ("unavailable", True)
    # Stripe keeps the first answer, even a 500: the client's retry got it replayed.
    assert stand_in.posts() == [("k-lost", 500, False), ("k-lost", 500, True)]
    assert len(stand_in.sandbox.refunds) == 1
    # The refund is there to be found by its metadata, which is how a caller settles the doubt.
    found = [r for r in await gateway.refunds_for(pi.id) if r.metadata == {"case_id": "42"}]
    assert [r.id for r in found] == [stand_in.sandbox.refunds[0].id]
    assert await gateway.unrefunded_amount(pi.id) == (4000, "USD")


async def test_429_is_retried_after_retry_after_with_the_same_key(stand_in: StandIn) -> None:
    gateway = stand_in.gateway(max_network_retries=0)
    pi = stand_in.sandbox.add_payment(5000, "usd")
    stand_in.sandbox.inject("429", retry_after=0.2)
    started = time.monotonic()
    made = await refund(gateway, pi.id, 1000, "k-429")
    assert time.monotonic() - started >= 0.2
    assert [r.id for r in stand_in.sandbox.refunds] == [made.id]
    assert stand_in.posts() == [("k-429", 429, False), ("k-429", 200, False)]


async def test_429_gives_up_after_the_configured_retries(stand_in: StandIn) -> None:
    gateway = stand_in.gateway(rate_limit_retries=1)
    pi = stand_in.sandbox.add_payment(5000, "usd")
    stand_in.sandbox.inject("429", retry_after=0.01, times=2)
    with pytest.raises(StripeGatewayError) as limited:
        await refund(gateway, pi.id, 1000, "k-429")
    assert limited.value.kind == "rate_limited"
    assert stand_in.sandbox.refunds == []


async def test_timeout_is_retried_with_the_same_key(stand_in: StandIn) -> None:
    gateway = stand_in.gateway(timeout=0.3, max_network_retries=1)
    pi = stand_in.sandbox.add_payment(5000, "usd")
    stand_in.sandbox.inject("timeout")  # executes, then holds the answer 0.6 s
    made = await refund(gateway, pi.id, 1000, "k-slow")
    assert [r.id for r in stand_in.sandbox.refunds] == [made.id]
    keys = [(key, replayed) for key, _, replayed in stand_in.posts()]
    assert keys == [("k-slow", False), ("k-slow", True)]


async def test_connection_reset_is_retried(stand_in: StandIn) -> None:
    gateway = stand_in.gateway(max_network_retries=1)
    pi = stand_in.sandbox.add_payment(5000, "usd")
    stand_in.sandbox.inject("reset")
    made = await refund(gateway, pi.id, 1000, "k-reset")
    assert [r.id for r in stand_in.sandbox.refunds] == [made.id]
    assert stand_in.posts() == [("k-reset", None, False), ("k-reset", 200, True)]


async def test_network_failure_without_retries_is_unavailable(stand_in: StandIn) -> None:
    gateway = stand_in.gateway(max_network_retries=0)
    pi = stand_in.sandbox.add_payment(5000, "usd")
    stand_in.sandbox.inject("reset")
    with pytest.raises(StripeGatewayError) as lost:
        await refund(gateway, pi.id, 1000, "k-reset")
    assert (lost.value.kind, lost.value.maybe_applied) == ("unavailable", True)


# ---- listing -----------------------------------------------------------------------------------


async def test_iter_refunds_filters_by_created_and_streams_pages() -> None:
    now = [1_700_000_000]
    sandbox = StripeSandbox(clock=lambda: float(now[0]))
    async with serving(sandbox.app()) as server:
        gateway = StripeGateway(KEY, api_base=server.url, timeout=2.0)
        pi = sandbox.add_payment(100_000, "usd")
        for i in range(9):
            now[0] = 1_700_000_000 + i * 60
            await refund(gateway, pi.id, 100 + i, f"k-{i}")

        stream = gateway.iter_refunds(created_gte=1_700_000_060, created_lt=1_700_000_480,
                                      page_size=2)
        first = await anext(stream)
        assert first.amount == 107  # newest first
        listed = [r for r in sandbox.requests if r.method == "GET" and r.path == "/v1/refunds"]
        assert len(listed) == 1  # pages are fetched as they are consumed
        rest = [r.amount async for r in stream]
        await gateway.close()

    assert [first.amount, *rest] == [107, 106, 105, 104, 103, 102, 101]
    listed = [r for r in sandbox.requests if r.method == "GET" and r.path == "/v1/refunds"]
    assert len(listed) == 4


async def test_refunds_for_follows_pages_past_one_hundred(stand_in: StandIn) -> None:
    gateway = stand_in.gateway()
    # the 102 refunds are made unpaced (at the test key's 25/s they took 4 s); the listing is
    # read through the paced gateway, as the bot reads it
    maker = stand_in.gateway(max_requests_per_second=0)
    pi = stand_in.sandbox.add_payment(100_000, "usd")
    other = stand_in.sandbox.add_payment(5000, "usd")
    made = [await refund(maker, pi.id, 100 + i, f"k-many-{i}") for i in range(101)]
    await refund(maker, other.id, 500, "k-other")

    found = await gateway.refunds_for(pi.id)
    assert sorted(r.id for r in found) == sorted(r.id for r in made)
    assert [r.created for r in found] == sorted((r.created for r in found), reverse=True)
    listed = [r for r in stand_in.sandbox.requests
              if r.method == "GET" and r.path == "/v1/refunds"]
    assert len(listed) == 2  # 100 on the first page, the last one after its cursor


# ---- webhooks ----------------------------------------------------------------------------------


@dataclass
class Receiver:
    seen: list[tuple[bytes, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            signature = request.headers.get("Stripe-Signature", "")
            self.seen.append((body, signature))
            try:
                verify_event(body, signature, SECRET)
            except InvalidStripeSignature:
                return web.Response(status=400)
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/stripe", hook)
        return app


async def test_pending_refund_settles_and_the_signed_event_verifies(stand_in: StandIn) -> None:
    receiver = Receiver()
    async with serving(receiver.app()) as hooks:
        stand_in.sandbox.configure_webhook(hooks.url + "/stripe", SECRET)
        stand_in.sandbox.set_refund_mode("pending")
        gateway = stand_in.gateway()
        pi = stand_in.sandbox.add_payment(5000, "usd")
        made = await refund(gateway, pi.id, 2000, "k-pending")
        assert made.status == "pending"
        stand_in.sandbox.settle_refund(made.id)
        await stand_in.sandbox.drain_webhooks()
        assert (await gateway.get_refund(made.id)).status == "succeeded"

    assert all(d.ok for d in stand_in.sandbox.deliveries)
    events = [verify_event(body, sig, SECRET) for body, sig in receiver.seen]
    types = [e["type"] for e in events]
    assert types == ["refund.created", "charge.refunded", "refund.updated",
                     "charge.refund.updated"]
    updated = events[2]
    assert updated["data"]["object"]["id"] == made.id
    assert updated["data"]["object"]["status"] == "succeeded"
    assert updated["data"]["previous_attributes"] == {"status": "pending"}
    assert events[0]["request"]["idempotency_key"] == "k-pending"

    body, signature = receiver.seen[2]
    tampered = body.replace(b'"succeeded"', b'"failed"')
    with pytest.raises(InvalidStripeSignature):
        verify_event(tampered, signature, SECRET)
    with pytest.raises(InvalidStripeSignature):
        verify_event(body, signature, "whsec_other")
    with pytest.raises(InvalidStripeSignature):
        verify_event(body, "", SECRET)
    stale = sign(body, SECRET, int(time.time()) - 301)
    with pytest.raises(InvalidStripeSignature):
        verify_event(body, stale, SECRET)
    assert verify_event(body, sign(body, SECRET, int(time.time()) - 60), SECRET)["id"]


async def test_failed_refund_arrives_as_refund_failed(stand_in: StandIn) -> None:
    receiver = Receiver()
    async with serving(receiver.app()) as hooks:
        stand_in.sandbox.configure_webhook(hooks.url + "/stripe", SECRET,
                                           events=["refund.failed"])
        stand_in.sandbox.set_refund_mode("pending")
        gateway = stand_in.gateway()
        pi = stand_in.sandbox.add_payment(5000, "usd")
        made = await refund(gateway, pi.id, 5000, "k-fail")
        stand_in.sandbox.settle_refund(made.id, "failed", "insufficient_funds")
        await stand_in.sandbox.drain_webhooks()
        fetched = await gateway.get_refund(made.id)
        assert (fetched.status, fetched.failure_reason) == ("failed", "insufficient_funds")
        assert await gateway.unrefunded_amount(pi.id) == (5000, "USD")

    [(body, signature)] = receiver.seen
    event = verify_event(body, signature, SECRET)
    assert event["type"] == "refund.failed"
    assert json.loads(body)["data"]["object"]["failure_reason"] == "insufficient_funds"


# ---- amounts -----------------------------------------------------------------------------------


def test_to_stripe_amount_keeps_stripe_currency_rules() -> None:
    assert to_stripe_amount(7500, "usd") == 7500
    assert to_stripe_amount(500, "JPY") == 500
    assert to_stripe_amount(1010, "KWD") == 1010
    assert to_stripe_amount(5, "ISK") == 500  # two-decimal at Stripe
    assert from_stripe_amount(500, "ISK") == 5
    assert from_stripe_amount(1010, "KWD") == 1010
    for minor, currency in [(1005, "KWD"), (1, "BHD"), (0, "USD"), (-5, "USD")]:
        with pytest.raises(StripeGatewayError) as error:
            to_stripe_amount(minor, currency)
        assert error.value.kind == "invalid"
    with pytest.raises(StripeGatewayError):
        to_stripe_amount(True, "USD")
    with pytest.raises(StripeGatewayError):
        to_stripe_amount(100, "dollars")


async def test_three_decimal_refund_round_trip(stand_in: StandIn) -> None:
    gateway = stand_in.gateway()
    pi = stand_in.sandbox.add_payment(12_340, "kwd")
    made = await refund(gateway, pi.id, 2_500 - 500, "k-kwd", currency="KWD")
    assert (made.amount, made.currency) == (2_000, "KWD")
    assert await gateway.unrefunded_amount(pi.id) == (10_340, "KWD")
