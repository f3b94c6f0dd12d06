"""The Stripe stand-in prunes idempotency keys when asked, as Stripe does after 24 hours: a
reused key within the TTL is replayed, after it the request is new."""

from __future__ import annotations

import httpx

from sandbox.http import serving
from sandbox.stripe_server import StripeSandbox


async def test_the_stand_in_forgets_keys_after_the_ttl_as_stripe_does() -> None:
    now = [1_700_000_000.0]
    sandbox = StripeSandbox(clock=lambda: now[0], idempotency_ttl_seconds=24 * 3600)
    pi = sandbox.add_payment(5000, "usd")
    form = {"payment_intent": pi.id, "amount": "1000"}
    headers = {"Authorization": "Bearer sk_test_sandbox", "Idempotency-Key": "k-1"}
    async with serving(sandbox.app()) as server, httpx.AsyncClient() as client:
        first = await client.post(f"{server.url}/v1/refunds", data=form, headers=headers)
        now[0] += 23 * 3600
        replay = await client.post(f"{server.url}/v1/refunds", data=form, headers=headers)
        now[0] += 2 * 3600     # 25 hours after the first request: the key is gone
        again = await client.post(f"{server.url}/v1/refunds", data=form, headers=headers)

    assert first.status_code == replay.status_code == again.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in again.headers
    assert len(sandbox.refunds) == 2     # a new request to Stripe: a second refund
    assert StripeSandbox().idempotency_ttl_seconds is None   # off unless a test asks
