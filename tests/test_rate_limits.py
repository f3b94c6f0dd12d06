"""The stand-ins' rate limits: the token bucket, Stripe's 429 and Slack's `ratelimited`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import stripe
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.http import serving
from sandbox.rate_limit import Buckets, Limit, TokenBucket, retry_after_seconds
from sandbox.slack_server import SlackLimits, SlackSandbox
from sandbox.stripe_server import StripeSandbox

KEY = "sk_test_sandbox"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- the bucket ----------------------------------------------------------------------------


def test_a_bucket_allows_its_burst_then_refuses_with_the_wait() -> None:
    clock = Clock()
    bucket = TokenBucket(Limit(rate=4, burst=3), clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.25)   # one token every 1/4 s
    clock.now += 0.1
    assert bucket.take() == pytest.approx(0.15)   # refused calls take nothing
    clock.now += 0.15
    assert bucket.take() == 0.0


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(Limit(rate=10, burst=5), clock)
    for _ in range(5):
        bucket.take()
    clock.now += 0.3
    assert bucket.tokens == pytest.approx(3)
    clock.now += 60
    assert bucket.tokens == 5            # never more than the burst
    allowed = sum(1 for _ in range(20) if bucket.take() == 0.0)
    assert allowed == 5


def test_sustained_load_passes_at_the_rate() -> None:
    clock = Clock()
    buckets = Buckets(Limit(rate=25, burst=25), clock)
    for _ in range(10_000):          # 100 tries a second for 100 s
        buckets.take()
        clock.now += 0.01
    assert buckets.allowed == pytest.approx(25 + 25 * 100, abs=2)
    assert buckets.limited == 10_000 - buckets.allowed


def test_keys_have_buckets_of_their_own() -> None:
    buckets = Buckets(Limit(rate=1, burst=1), Clock())
    assert buckets.take("a") == 0.0 and buckets.take("b") == 0.0
    assert buckets.take("a") > 0 and buckets.take("b") > 0


def test_limits_are_checked_and_retry_after_is_whole_seconds() -> None:
    with pytest.raises(ValueError):
        Limit(rate=0)
    with pytest.raises(ValueError):
        Limit(rate=1, burst=0.5)
    assert Limit.per_minute(50) == Limit(50 / 60, 5)
    assert [retry_after_seconds(w) for w in (0.01, 1.0, 1.2, 29.5)] == [1, 1, 2, 30]


# ---- Stripe --------------------------------------------------------------------------------


@pytest.fixture
async def stripe_env() -> AsyncIterator[tuple[StripeSandbox, str, Clock]]:
    clock = Clock()
    sandbox = StripeSandbox(rate_limit=Limit(rate=2, burst=2), rate_clock=clock)
    async with serving(sandbox.app()) as server:
        yield sandbox, server.url, clock


async def test_stripe_answers_429_as_stripe_does_over_its_rate(
    stripe_env: tuple[StripeSandbox, str, Clock],
) -> None:
    sandbox, url, clock = stripe_env
    pi = sandbox.add_payment(5000, "usd")
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as raw:
        for _ in range(2):
            assert (await raw.get(f"/v1/payment_intents/{pi.id}")).status_code == 200
        limited = await raw.post("/v1/refunds", data={"payment_intent": pi.id, "amount": "100"},
                                 headers={"Idempotency-Key": "k-1"})
        assert limited.status_code == 429
        assert limited.json() == {"error": {
            "message": "Request rate limit exceeded. You can learn more about rate limits "
                       "here https://stripe.com/docs/rate-limits.",
            "type": "invalid_request_error", "code": "rate_limit",
            "doc_url": "https://stripe.com/docs/error-codes/rate-limit"}}
        assert limited.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
        assert "Retry-After" not in limited.headers
        assert sandbox.refunds == []                 # not executed
        clock.now += 0.5                             # one token back
        made = await raw.post("/v1/refunds", data={"payment_intent": pi.id, "amount": "100"},
                              headers={"Idempotency-Key": "k-1"})
        assert made.status_code == 200 and "Idempotent-Replayed" not in made.headers
    assert len(sandbox.refunds) == 1
    assert sandbox.rate_limited == 1
    assert [(r.status, r.limited) for r in sandbox.requests] == [
        (200, False), (200, False), (429, True), (200, False)]


async def test_the_official_client_sees_a_rate_limit_error(
    stripe_env: tuple[StripeSandbox, str, Clock],
) -> None:
    sandbox, url, _ = stripe_env
    pi = sandbox.add_payment(5000, "usd")
    http = stripe.HTTPXClient(timeout=5)
    client = stripe.StripeClient(KEY, http_client=http, base_addresses={"api": url},
                                 max_network_retries=2)
    try:
        await client.v1.payment_intents.retrieve_async(pi.id)
        await client.v1.payment_intents.retrieve_async(pi.id)
        with pytest.raises(stripe.RateLimitError):
            await client.v1.payment_intents.retrieve_async(pi.id)
    finally:
        await http.close_async()
    assert sandbox.rate_limited == 1   # the client does not retry a 429 by itself


async def test_stripe_limit_is_set_and_lifted_while_serving(
    stripe_env: tuple[StripeSandbox, str, Clock],
) -> None:
    sandbox, url, _ = stripe_env
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as raw:
        codes = [(await raw.get("/v1/events")).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        sandbox.rate_limit = None
        assert {(await raw.get("/v1/events")).status_code for _ in range(10)} == {200}
        sandbox.rate_limit = Limit(rate=1, burst=1)      # a fresh, full bucket
        codes = [(await raw.get("/v1/events")).status_code for _ in range(2)]
        assert codes == [200, 429]
        unauthenticated = await raw.get("/v1/events", headers={"Authorization": ""})
        assert unauthenticated.status_code == 401        # no key: refused before the limit
    assert sandbox.rate_limited == 2


# ---- Slack ---------------------------------------------------------------------------------


CHANNELS = {"C1": "one", "C2": "two"}  # the stand-in refuses a post to a channel it lacks


@pytest.fixture
async def slack_env() -> AsyncIterator[tuple[SlackSandbox, AsyncWebClient, Clock]]:
    clock = Clock()
    sandbox = SlackSandbox(rate_limits=SlackLimits(post_message=Limit(1.0, burst=2)),
                           rate_clock=clock, workspace_channels=CHANNELS)
    server = await sandbox.serve()
    try:
        yield sandbox, AsyncWebClient(token="xoxb-t", base_url=sandbox.api_url), clock
    finally:
        await server.stop()


async def test_slack_posts_one_a_second_per_channel_with_a_burst(
    slack_env: tuple[SlackSandbox, AsyncWebClient, Clock],
) -> None:
    slack, client, clock = slack_env
    for n in range(2):
        await client.chat_postMessage(channel="C1", text=f"m{n}")
    with pytest.raises(SlackApiError) as limited:
        await client.chat_postMessage(channel="C1", text="m2")
    response = limited.value.response
    assert (response.status_code, response["error"]) == (429, "ratelimited")
    assert response.headers["Retry-After"] == "1"
    await client.chat_postMessage(channel="C2", text="other channel")   # a bucket of its own
    clock.now += 1.0
    await client.chat_postMessage(channel="C1", text="m2")
    assert [m["text"] for m in slack.messages_in("C1")] == ["m0", "m1", "m2"]
    assert slack.rate_limited == 1
    assert [c.limited for c in slack.calls_to("chat.postMessage")] == [
        False, False, True, False, False]


async def test_slack_methods_are_limited_by_their_tier(
    slack_env: tuple[SlackSandbox, AsyncWebClient, Clock],
) -> None:
    slack, client, clock = slack_env
    posted = await client.chat_postMessage(channel="C1", text="card")
    # chat.update is Tier 3: 50 a minute, a burst of 5
    for n in range(5):
        await client.chat_update(channel="C1", ts=posted["ts"], text=f"v{n}")
    with pytest.raises(SlackApiError) as limited:
        await client.chat_update(channel="C1", ts=posted["ts"], text="v5")
    assert limited.value.response.headers["Retry-After"] == "2"   # 60/50 s, in whole seconds
    assert slack.message("C1", posted["ts"])["text"] == "v4"     # refused: not applied
    # usergroups.users.list is Tier 2: 20 a minute, a burst of 2
    slack.usergroups["S1"] = ["U1"]
    for _ in range(2):
        await client.usergroups_users_list(usergroup="S1")
    with pytest.raises(SlackApiError):
        await client.usergroups_users_list(usergroup="S1")
    clock.now += 3.0
    await client.usergroups_users_list(usergroup="S1")
    await client.chat_update(channel="C1", ts=posted["ts"], text="v5")
    assert slack.rate_limited == 2


async def test_slack_limits_are_set_and_lifted_while_serving(
    slack_env: tuple[SlackSandbox, AsyncWebClient, Clock],
) -> None:
    slack, client, _ = slack_env
    slack.rate_limits = None
    for n in range(10):
        await client.chat_postMessage(channel="C1", text=f"m{n}")
    slack.rate_limits = SlackLimits(post_message=Limit(1.0, burst=1))
    await client.chat_postMessage(channel="C1", text="first under the new limit")
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel="C1", text="second")
    assert slack.rate_limited == 1


async def test_no_limit_by_default() -> None:
    slack = SlackSandbox(workspace_channels=CHANNELS)
    server = await slack.serve()
    try:
        client = AsyncWebClient(token="xoxb-t", base_url=slack.api_url)
        for n in range(30):
            await client.chat_postMessage(channel="C1", text=f"m{n}")
    finally:
        await server.stop()
    assert slack.rate_limited == 0
