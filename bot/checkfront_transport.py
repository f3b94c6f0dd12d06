"""The Checkfront client's HTTP transport: httpx's interface over aiohttp's connection pool.

httpx's own transport (httpcore, h11, anyio) costs the worker about a third of a case's CPU for
Checkfront's three calls; `httpx-aiohttp` sends the same requests through aiohttp, already the
bot's server and the Stripe SDK's client. The client (`services.clients.checkfront`) keeps
httpx's API, redirects handled by hand, auth and timeouts as before: only the transport is
swapped, here, because the domain does not import aiohttp.

One thing is mapped more carefully than the package does: it reports every lost connection
(aiohttp's `ClientConnectionError`, a server that closed the connection after the request was
written included) as `httpx.ConnectTimeout`, which the client takes for "never sent" and would
resend even a note. Here a connection that could not be made (`ClientConnectorError`) is
`httpx.ConnectError`, as httpx's own transport says it; any other lost connection is
`httpx.ReadError`, "may have been received", so a request that is not idempotent is not sent
twice.

A request that gets no answer at all (a refused or lost connection, a timeout) is told to
`on_lost`, with its time: httpx's event hooks only see answers, and the bot's metrics count
these as the `network` kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class CheckfrontTransport(AiohttpTransport):
    def __init__(self, *, on_lost: Callable[[httpx.Request, float], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_lost = on_lost

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        began = time.perf_counter()
        try:
            return await self._answer(request)
        except httpx.TransportError:
            if self._on_lost is not None:
                self._on_lost(request, time.perf_counter() - began)
            raise

    async def _answer(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ClientConnectorError):   # no connection was made
                raise httpx.ConnectError(str(exc), request=request) from cause
            if isinstance(cause, aiohttp.ClientConnectionError):   # lost after it was made
                raise httpx.ReadError(str(exc), request=request) from cause
            raise
