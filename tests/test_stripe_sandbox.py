"""The Stripe stand-in, driven over HTTP by the official client and by raw requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import stripe
from aiohttp import web

from sandbox.http import serving
from sandbox.stripe_forms import FormError, parse_form
from sandbox.stripe_server import StripeSandbox

KEY = "sk_test_sandbox"


@dataclass
class Env:
    sandbox: StripeSandbox
    url: str
    client: stripe.StripeClient
    raw: httpx.AsyncClient

    async def post(self, path: str, data: dict[str, str], key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {KEY}"}
        if key:
            headers["Idempotency-Key"] = key
        return await self.raw.post(self.url + path, data=data, headers=headers)

    async def get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {KEY}"}
        return await self.raw.get(self.url + path, params=params, headers=headers)


class Clock:
    def __init__(self, start: int = 1_700_000_000) -> None:
        self.now = start

    def __call__(self) -> float:
        return float(self.now)


def make_client(
    url: str, *, key: str = KEY, timeout: float = 5.0, max_network_retries: int = 0
) -> tuple[stripe.StripeClient, stripe.HTTPXClient]:
    http = stripe.HTTPXClient(timeout=timeout)
    client = stripe.StripeClient(
        key, http_client=http, base_addresses={"api": url},
        max_network_retries=max_network_retries,
    )
    return client, http


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def env(clock: Clock) -> AsyncIterator[Env]:
    sandbox = StripeSandbox(clock=clock)
    async with serving(sandbox.app()) as server:
        client, http = make_client(server.url)
        async with httpx.AsyncClient(timeout=5) as raw:
            yield Env(sandbox, server.url, client, raw)
        await http.close_async()


def refund_form(pi: str, amount: int, **extra: str) -> dict[str, str]:
    return {"payment_intent": pi, "amount": str(amount), "reason": "requested_by_customer",
            "metadata[case]": "c-1", **extra}


# ---- auth, errors, form encoding ----------------------------------------------------------------


async def test_requests_without_a_test_key_get_401(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    answer = await env.raw.get(f"{env.url}/v1/payment_intents/{pi.id}")
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "invalid_request_error"

    live, http = make_client(env.url, key="sk_live_not_a_test_key")
    with pytest.raises(stripe.AuthenticationError):
        await live.v1.payment_intents.retrieve_async(pi.id)
    await http.close_async()


async def test_payment_intent_and_charge_expose_refund_fields(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd", metadata={"booking": "BK-1"})
    fetched = await env.client.v1.payment_intents.retrieve_async(pi.id)
    assert fetched.status == "succeeded"
    assert fetched.amount_received == 5000
    assert fetched.latest_charge == pi.latest_charge
    assert fetched.metadata.to_dict() == {"booking": "BK-1"}

    await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 1200})
    charge = await env.client.v1.charges.retrieve_async(str(pi.latest_charge))
    assert (charge.amount, charge.amount_refunded, charge.refunded) == (5000, 1200, False)
    assert charge.currency == "usd"
    assert charge.payment_intent == pi.id


async def test_payment_intent_retrieve_expands_its_latest_charge(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 700})
    fetched = await env.client.v1.payment_intents.retrieve_async(
        pi.id, {"expand": ["latest_charge"]})
    charge = fetched.to_dict()["latest_charge"]
    assert isinstance(charge, dict)
    assert (charge["id"], charge["object"], charge["amount_refunded"], charge["currency"]) == \
        (pi.latest_charge, "charge", 700, "usd")

    plain = await env.get(f"/v1/payment_intents/{pi.id}")
    assert plain.json()["latest_charge"] == pi.latest_charge
    bad = await env.get(f"/v1/payment_intents/{pi.id}", {"expand[]": "customer"})
    assert bad.status_code == 400
    assert "cannot be expanded" in bad.json()["error"]["message"]
    unknown = await env.get(f"/v1/payment_intents/{pi.id}", {"colour": "red"})
    assert unknown.status_code == 400


async def test_create_and_confirm_payment_intent_through_the_client(env: Env) -> None:
    pi = await env.client.v1.payment_intents.create_async(
        {"amount": 2500, "currency": "eur", "confirm": True, "payment_method": "pm_card_visa",
         "metadata": {"booking": "BK-2"}}
    )
    assert pi.status == "succeeded"
    assert pi.latest_charge is not None

    with pytest.raises(stripe.CardError) as declined:
        await env.client.v1.payment_intents.create_async(
            {"amount": 2500, "currency": "eur", "confirm": True,
             "payment_method": "pm_card_chargeDeclined"}
        )
    assert declined.value.code == "card_declined"
    assert [e.type for e in env.sandbox.events] == ["payment_intent.payment_failed"]


async def test_metadata_and_nested_params_survive_bracket_encoding(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    odd = {"note": "a b&c=d [x]", "case": "c/1?"}
    refund = await env.client.v1.refunds.create_async(
        {"payment_intent": pi.id, "amount": 100, "metadata": odd}
    )
    assert refund.metadata.to_dict() == odd
    assert env.sandbox.refunds[0].metadata == odd


def test_parse_form_nests_brackets_and_lists() -> None:
    parsed = parse_form(
        [("metadata[a]", "1"), ("created[gte]", "5"), ("expand[0]", "x"), ("expand[1]", "y"),
         ("amount", "10")]
    )
    assert parsed == {"metadata": {"a": "1"}, "created": {"gte": "5"}, "expand": ["x", "y"],
                      "amount": "10"}
    with pytest.raises(FormError):
        parse_form([("amount", "1"), ("amount[x]", "2")])


async def test_unknown_parameter_and_bad_reason_are_refused(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await env.client.v1.refunds.create_async(
            {"payment_intent": pi.id, "amount": 100, "colour": "blue"}  # type: ignore[typeddict-unknown-key]
        )
    assert unknown.value.code == "parameter_unknown"
    answer = await env.post("/v1/refunds", refund_form(pi.id, 100, reason="because"))
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "reason"
    assert env.sandbox.refunds == []


# ---- refunds: amounts and currencies -----------------------------------------------------------


async def test_partial_refunds_until_nothing_is_left(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 2000})
    with pytest.raises(stripe.InvalidRequestError) as over:
        await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 3001})
    assert over.value.user_message == (
        "Refund amount ($30.01) is greater than unrefunded amount on charge ($30.00)"
    )
    assert over.value.param == "amount"

    rest = await env.client.v1.refunds.create_async({"charge": str(pi.latest_charge)})
    assert rest.amount == 3000  # no amount: everything that is left
    with pytest.raises(stripe.InvalidRequestError) as done:
        await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 1})
    assert done.value.code == "charge_already_refunded"
    charge = env.sandbox.charges[str(pi.latest_charge)]
    assert charge.refunded and charge.amount_refunded == 5000


async def test_pending_refunds_count_against_the_charge_and_failed_ones_free_it(env: Env) -> None:
    env.sandbox.set_refund_mode("pending")
    pi = env.sandbox.add_payment(5000, "usd")
    pending = await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 4000})
    assert pending.status == "pending"
    with pytest.raises(stripe.InvalidRequestError):
        await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 1001})

    env.sandbox.settle_refund(pending.id, "failed", "expired_or_canceled_card")
    failed = await env.client.v1.refunds.retrieve_async(pending.id)
    assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")
    again = await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 5000})
    assert again.amount == 5000


async def test_cancel_a_pending_refund(env: Env) -> None:
    env.sandbox.set_refund_mode("pending")
    pi = env.sandbox.add_payment(5000, "usd")
    refund = await env.client.v1.refunds.create_async({"payment_intent": pi.id})
    canceled = await env.client.v1.refunds.cancel_async(refund.id)
    assert canceled.status == "canceled"
    assert env.sandbox.charges[str(pi.latest_charge)].amount_refunded == 0
    with pytest.raises(stripe.InvalidRequestError):
        await env.client.v1.refunds.cancel_async(refund.id)


async def test_three_decimal_currency_amounts_must_end_in_zero(env: Env) -> None:
    pi = env.sandbox.add_payment(10_000, "kwd")
    with pytest.raises(stripe.InvalidRequestError) as bad:
        await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 1005})
    assert bad.value.param == "amount"
    refund = await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 1010})
    assert (refund.amount, refund.currency) == (1010, "kwd")
    with pytest.raises(ValueError):
        env.sandbox.add_payment(1005, "KWD")


async def test_refund_object_has_stripe_shape(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "USD")
    answer = await env.post("/v1/refunds", refund_form(pi.id, 700), key="shape-1")
    body = answer.json()
    assert answer.status_code == 200
    assert body["id"].startswith("re_") and body["object"] == "refund"
    assert (body["amount"], body["currency"], body["status"]) == (700, "usd", "succeeded")
    assert (body["charge"], body["payment_intent"]) == (pi.latest_charge, pi.id)
    assert body["reason"] == "requested_by_customer"
    assert body["metadata"] == {"case": "c-1"}
    assert body["failure_reason"] is None and isinstance(body["created"], int)
    assert answer.headers["Request-Id"].startswith("req_")
    missing = await env.get("/v1/refunds/re_missing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "resource_missing"


async def test_disputed_charge_cannot_be_refunded(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    dispute = env.sandbox.create_dispute(str(pi.latest_charge), 5000, "fraudulent", due_by=123)
    assert env.sandbox.events[-1].type == "charge.dispute.created"
    assert env.sandbox.events[-1].data["object"]["evidence_details"]["due_by"] == 123
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await env.client.v1.refunds.create_async({"payment_intent": pi.id})
    assert refused.value.code == "charge_disputed"
    fetched = await env.get(f"/v1/disputes/{dispute.id}")
    assert fetched.json()["reason"] == "fraudulent"


# ---- idempotency -------------------------------------------------------------------------------


async def test_replay_is_byte_for_byte_and_creates_one_refund(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    first = await env.post("/v1/refunds", refund_form(pi.id, 1500), key="key-1")
    second = await env.post("/v1/refunds", refund_form(pi.id, 1500), key="key-1")
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Original-Request"] == first.headers["Request-Id"]
    assert len(env.sandbox.refunds) == 1


async def test_same_key_other_parameters_is_an_idempotency_error(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    await env.client.v1.refunds.create_async(
        {"payment_intent": pi.id, "amount": 1500}, {"idempotency_key": "key-2"}
    )
    with pytest.raises(stripe.IdempotencyError):
        await env.client.v1.refunds.create_async(
            {"payment_intent": pi.id, "amount": 1600}, {"idempotency_key": "key-2"}
        )
    other_account, http = make_client(env.url, key="sk_test_other_account")
    # Keys are scoped per account: another key may reuse the name.
    await other_account.v1.refunds.create_async(
        {"payment_intent": pi.id, "amount": 1600}, {"idempotency_key": "key-2"}
    )
    await http.close_async()
    assert len(env.sandbox.refunds) == 2


async def test_validation_errors_are_not_stored_but_processing_errors_are(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    invalid = await env.post("/v1/refunds", refund_form(pi.id, 0), key="key-3")
    assert invalid.status_code == 400
    fixed = await env.post("/v1/refunds", refund_form(pi.id, 0), key="key-3")
    assert "Idempotent-Replayed" not in fixed.headers  # executed again, not replayed

    over = await env.post("/v1/refunds", refund_form(pi.id, 9000), key="key-4")
    assert over.status_code == 400
    env.sandbox.add_payment(100, "usd")
    replay = await env.post("/v1/refunds", refund_form(pi.id, 9000), key="key-4")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == over.content


async def test_concurrent_request_with_the_same_key_gets_409(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    env.sandbox.inject("timeout", after_processing=False, delay=0.3)
    slow = asyncio.create_task(env.post("/v1/refunds", refund_form(pi.id, 1000), key="key-5"))
    await asyncio.sleep(0.1)
    clash = await env.post("/v1/refunds", refund_form(pi.id, 1000), key="key-5")
    assert clash.status_code == 409
    assert (await slow).status_code == 200
    after = await env.post("/v1/refunds", refund_form(pi.id, 1000), key="key-5")
    assert after.headers["Idempotent-Replayed"] == "true"
    assert len(env.sandbox.refunds) == 1


# ---- faults ------------------------------------------------------------------------------------


async def test_500_before_processing_changes_nothing(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    env.sandbox.inject("500")
    failed = await env.post("/v1/refunds", refund_form(pi.id, 1000), key="key-6")
    assert failed.status_code == 500
    assert failed.json()["error"]["type"] == "api_error"
    assert env.sandbox.refunds == []
    retried = await env.post("/v1/refunds", refund_form(pi.id, 1000), key="key-6")
    assert retried.status_code == 200
    assert len(env.sandbox.refunds) == 1


async def test_500_after_processing_is_stored_and_replayed(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    env.sandbox.inject("500", after_processing=True, should_retry=False)
    failed = await env.post("/v1/refunds", refund_form(pi.id, 1000), key="key-7")
    assert failed.status_code == 500
    assert failed.headers["Stripe-Should-Retry"] == "false"
    assert len(env.sandbox.refunds) == 1  # the refund exists although the answer said 500
    replay = await env.post("/v1/refunds", refund_form(pi.id, 1000), key="key-7")
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (500, "true")
    assert len(env.sandbox.refunds) == 1


async def test_429_carries_retry_after_and_is_not_executed(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    env.sandbox.inject("429", retry_after=2, times=2)
    for _ in range(2):
        limited = await env.post("/v1/refunds", refund_form(pi.id, 1000), key="key-8")
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "2"
    assert env.sandbox.refunds == []
    assert (await env.post("/v1/refunds", refund_form(pi.id, 1000), key="key-8")).status_code == 200


async def test_reset_after_processing_loses_the_answer_not_the_refund(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    env.sandbox.inject("reset")
    with pytest.raises(httpx.RemoteProtocolError):
        await env.post("/v1/refunds", refund_form(pi.id, 1000), key="key-9")
    assert len(env.sandbox.refunds) == 1
    again = await env.post("/v1/refunds", refund_form(pi.id, 1000), key="key-9")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert env.sandbox.requests[-2].status is None


async def test_faults_match_method_and_path_prefix(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    env.sandbox.inject("500", method="GET", path="/v1/charges")
    assert (await env.get(f"/v1/payment_intents/{pi.id}")).status_code == 200
    assert (await env.get(f"/v1/charges/{pi.latest_charge}")).status_code == 500
    assert (await env.get(f"/v1/charges/{pi.latest_charge}")).status_code == 200
    assert len(env.sandbox.faults) == 0


async def test_client_timeout_then_retry_with_same_key_is_replayed(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    env.sandbox.inject("timeout", delay=0.4)
    client, http = make_client(env.url, timeout=0.2, max_network_retries=1)
    refund = await client.v1.refunds.create_async(
        {"payment_intent": pi.id, "amount": 1000}, {"idempotency_key": "key-10"}
    )
    await http.close_async()
    assert [r.replayed for r in env.sandbox.requests if r.method == "POST"] == [False, True]
    assert [r.id for r in env.sandbox.refunds] == [refund.id]


# ---- listing -----------------------------------------------------------------------------------


async def test_list_filters_by_created_charge_and_payment_intent(env: Env, clock: Clock) -> None:
    first = env.sandbox.add_payment(10_000, "usd")
    second = env.sandbox.add_payment(10_000, "usd")
    made = []
    for i in range(6):
        clock.now = 1_700_000_000 + i * 10
        pi = first if i % 2 == 0 else second
        made.append(await env.client.v1.refunds.create_async(
            {"payment_intent": pi.id, "amount": 100 + i}
        ))
    window = await env.client.v1.refunds.list_async(
        {"created": {"gte": 1_700_000_010, "lt": 1_700_000_040}}
    )
    assert [r.amount for r in window.data] == [103, 102, 101]  # newest first
    assert window.url == "/v1/refunds" and window.has_more is False
    strict = await env.client.v1.refunds.list_async(
        {"created": {"gt": 1_700_000_010, "lte": 1_700_000_040}}
    )
    assert [r.amount for r in strict.data] == [104, 103, 102]
    by_pi = await env.client.v1.refunds.list_async({"payment_intent": second.id})
    assert [r.amount for r in by_pi.data] == [105, 103, 101]
    by_charge = await env.client.v1.refunds.list_async({"charge": str(first.latest_charge)})
    assert [r.amount for r in by_charge.data] == [104, 102, 100]


async def test_list_paginates_both_ways(env: Env, clock: Clock) -> None:
    pi = env.sandbox.add_payment(100_000, "usd")
    for i in range(7):
        clock.now = 1_700_000_000 + i
        await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 100 + i})
    page = await env.client.v1.refunds.list_async({"limit": 3})
    assert [r.amount for r in page.data] == [106, 105, 104] and page.has_more
    amounts = [r.amount async for r in page.auto_paging_iter()]
    assert amounts == [106, 105, 104, 103, 102, 101, 100]
    lists = [r for r in env.sandbox.requests if r.path == "/v1/refunds" and r.method == "GET"]
    assert len(lists) == 3  # first page + two more

    oldest = env.sandbox.refunds[0].id
    before = await env.get("/v1/refunds", {"ending_before": oldest, "limit": "2"})
    assert [r["amount"] for r in before.json()["data"]] == [102, 101]
    assert before.json()["has_more"] is True
    for bad in ("0", "101", "x"):
        answer = await env.get("/v1/refunds", {"limit": bad})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "limit"
    both = await env.get("/v1/refunds", {"starting_after": oldest, "ending_before": oldest})
    assert both.status_code == 400


async def test_events_are_listed_newest_first(env: Env) -> None:
    pi = env.sandbox.add_payment(5000, "usd")
    await env.client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 100})
    events = await env.client.v1.events.list_async({"limit": 10})
    assert [e.type for e in events.data] == ["charge.refunded", "refund.created"]
    only = await env.client.v1.events.list_async({"type": "refund.*"})
    assert [e.type for e in only.data] == ["refund.created"]
    charge_event = events.data[0].to_dict()
    assert charge_event["data"]["previous_attributes"] == {"amount_refunded": 0,
                                                           "refunded": False}


# ---- webhooks ----------------------------------------------------------------------------------


@dataclass
class Receiver:
    seen: list[tuple[bytes, str]] = field(default_factory=list)
    fail_first: int = 0

    def app(self) -> web.Application:
        async def hook(request: web.Request) -> web.Response:
            self.seen.append((await request.read(), request.headers["Stripe-Signature"]))
            if self.fail_first > 0:
                self.fail_first -= 1
                return web.Response(status=503)
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        return app


async def test_webhooks_are_signed_and_delivered_in_the_background() -> None:
    sandbox = StripeSandbox()  # real clock: signatures must be fresh
    receiver = Receiver(fail_first=1)
    async with serving(sandbox.app()) as api, serving(receiver.app()) as hooks:
        sandbox.configure_webhook(hooks.url + "/hook", "whsec_test", retries=1, retry_delay=0.01,
                                  events=["refund.created", "refund.updated", "refund.failed",
                                          "charge.dispute.created",
                                          "payment_intent.payment_failed"])
        client, http = make_client(api.url)
        sandbox.set_refund_mode("pending")
        pi = sandbox.add_payment(5000, "usd")
        refund = await client.v1.refunds.create_async({"payment_intent": pi.id, "amount": 900})
        sandbox.settle_refund(refund.id, "failed", "lost_or_stolen_card")
        sandbox.create_dispute(str(pi.latest_charge))
        sandbox.fail_payment(700, "usd", metadata={"booking": "BK-9"})
        await sandbox.drain_webhooks()
        await http.close_async()

    types = []
    for body, signature in receiver.seen[1:]:  # the first attempt got 503 and was retried
        event = stripe.Webhook.construct_event(body, signature, "whsec_test")
        types.append(event.type)
    assert types == ["refund.created", "refund.updated", "refund.failed",
                     "charge.dispute.created", "payment_intent.payment_failed"]
    assert [d.ok for d in sandbox.deliveries[:2]] == [False, True]
    assert all(d.ok for d in sandbox.deliveries[1:])
    assert receiver.seen[0][0] == receiver.seen[1][0]  # same event body on the retry
    assert {e.type for e in sandbox.events} >= {"charge.refunded", "charge.refund.updated"}
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(receiver.seen[1][0], receiver.seen[1][1], "whsec_wrong")


async def test_undeliverable_webhook_is_recorded_as_failed() -> None:
    sandbox = StripeSandbox()
    sandbox.configure_webhook("http://127.0.0.1:9/nothing-listens-here", "whsec_test")
    pi = sandbox.add_payment(5000, "usd")
    sandbox.create_dispute(str(pi.latest_charge))
    started = time.monotonic()
    await sandbox.drain_webhooks()
    assert time.monotonic() - started < 5
    assert len(sandbox.deliveries) == 1
    delivery = sandbox.deliveries[0]
    assert delivery.status is None and delivery.error
    assert sandbox.resend_event(delivery.event_id)
    await sandbox.drain_webhooks()
    assert len(sandbox.deliveries) == 2
