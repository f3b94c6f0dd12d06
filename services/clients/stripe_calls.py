"""How every call of one Stripe gateway is made: paced, and retried on 429.

Retries: the official client retries connection errors, timeouts, 409 and 5xx itself
(`max_network_retries`, same idempotency key each time). It does not retry 429, so
`StripeCalls` does, with the same key (the call it is given is made again as it is). Any other
failure becomes a `StripeGatewayError` (`stripe_errors.gateway_error`).

Pacing: every call of one gateway waits for its slot in one shared schedule
(`services.clients.pacing.Pacer`), so concurrent cases take turns instead of meeting Stripe's
limiter together. A 429 from the rate limiter pauses the whole schedule for the back-off
(`Retry-After` when Stripe sends one, else `backoff_base` doubling per attempt; Stripe
documents no `Retry-After` and asks for exponential back-off) and slows it a little; the retry
then waits its turn like any call. A 429 `lock_timeout` (another request holds the object)
only delays its own caller. Without a pacer (pacing off) every 429 only delays its caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import stripe

from services.clients.pacing import Pacer
from services.clients.stripe_errors import gateway_error

T = TypeVar("T")


class StripeCalls:
    """One gateway's calls: `await calls(op, writes=...)` makes `op()` in its turn."""

    def __init__(self, pacer: Pacer | None, *, rate_limit_retries: int, backoff_base: float,
                 max_retry_after: float) -> None:
        self.pacer = pacer
        self._rate_limit_retries = rate_limit_retries
        self._backoff_base = backoff_base
        self._max_retry_after = max_retry_after

    async def __call__(self, op: Callable[[], Awaitable[T]], *, writes: bool) -> T:
        attempt = 0
        pacer = self.pacer
        while True:
            if pacer is not None:
                await pacer.acquire()
            try:
                result = await op()
            except stripe.RateLimitError as exc:
                if attempt >= self._rate_limit_retries:
                    raise gateway_error(exc, writes=writes) from exc
                delay = self._retry_delay(exc, attempt)
                attempt += 1
                if pacer is not None and _error_code(exc) != "lock_timeout":
                    pacer.back_off(delay)   # everyone waits; this retry then takes its turn
                else:
                    await asyncio.sleep(delay)
                continue
            except stripe.StripeError as exc:
                raise gateway_error(exc, writes=writes) from exc
            if pacer is not None:
                pacer.succeeded()
            return result

    def _retry_delay(self, exc: stripe.StripeError, attempt: int) -> float:
        retry_after = _header(exc, "retry-after")
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self._max_retry_after)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return min(self._backoff_base * 2**attempt, self._max_retry_after)


def _error_code(exc: stripe.StripeError) -> str | None:
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    error = body.get("error")
    return str(error.get("code")) if isinstance(error, dict) and error.get("code") else None


def _header(exc: stripe.StripeError, name: str) -> str | None:
    headers = exc.headers or {}
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None
