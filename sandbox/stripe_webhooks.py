"""Signed webhook delivery for the Stripe stand-in.

Each event is POSTed as JSON with `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
"<t>.<raw body>")>`, the scheme `stripe.WebhookSignature.verify_header` checks. Deliveries run in
one background task, in order; `drain()` waits for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import aiohttp


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` header value for `payload` signed at `timestamp`."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode("utf-8"), signed, sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt of one event."""

    event_id: str
    event_type: str
    url: str
    attempt: int
    status: int | None  # HTTP status, None when the request itself failed
    error: str | None
    body: bytes
    signature: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Endpoint:
    url: str
    secret: str
    events: frozenset[str] | None  # None or {"*"}: every event type
    retries: int
    retry_delay: float

    def wants(self, event_type: str) -> bool:
        return self.events is None or "*" in self.events or event_type in self.events


class WebhookSender:
    """Queue of events to POST to the configured endpoint, delivered by a background task."""

    def __init__(self, *, clock: Callable[[], float] = time.time, timeout: float = 5.0) -> None:
        self.clock = clock
        self.timeout = timeout
        self.endpoint: Endpoint | None = None
        self.deliveries: list[Delivery] = []
        self._pending: deque[tuple[Endpoint, dict[str, Any]]] = deque()
        self._task: asyncio.Task[None] | None = None

    def configure(
        self,
        url: str,
        secret: str,
        *,
        events: Collection[str] | None = None,
        retries: int = 0,
        retry_delay: float = 0.05,
    ) -> None:
        self.endpoint = Endpoint(
            url=url,
            secret=secret,
            events=frozenset(events) if events is not None else None,
            retries=retries,
            retry_delay=retry_delay,
        )

    def will_deliver(self, event_type: str) -> bool:
        return self.endpoint is not None and self.endpoint.wants(event_type)

    def enqueue(self, event: dict[str, Any]) -> bool:
        """Queue `event` for the current endpoint; False when nothing is configured for it."""
        endpoint = self.endpoint
        if endpoint is None or not endpoint.wants(str(event["type"])):
            return False
        self._pending.append((endpoint, event))
        self._kick()
        return True

    async def drain(self) -> None:
        """Wait until every queued event has been delivered (or has failed for good)."""
        self._kick()
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
            self._kick()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    def _kick(self) -> None:
        if not self._pending or (self._task is not None and not self._task.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: delivered on the next drain() or enqueue() inside one
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while self._pending:
                endpoint, event = self._pending.popleft()
                await self._deliver(session, endpoint, event)

    async def _deliver(
        self, session: aiohttp.ClientSession, endpoint: Endpoint, event: dict[str, Any]
    ) -> None:
        body = json.dumps(event, indent=2).encode("utf-8")
        for attempt in range(1, endpoint.retries + 2):
            signature = sign(body, endpoint.secret, int(self.clock()))
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": signature,
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }
            status: int | None = None
            error: str | None = None
            try:
                async with session.post(endpoint.url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = type(exc).__name__
            delivery = Delivery(
                event_id=str(event["id"]),
                event_type=str(event["type"]),
                url=endpoint.url,
                attempt=attempt,
                status=status,
                error=error,
                body=body,
                signature=signature,
            )
            self.deliveries.append(delivery)
            if delivery.ok:
                return
            if attempt <= endpoint.retries:
                await asyncio.sleep(endpoint.retry_delay)
