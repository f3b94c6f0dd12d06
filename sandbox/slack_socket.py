"""Socket Mode as Slack runs it, for the Slack stand-in: a WebSocket the app dials out to.

The app calls `apps.connections.open` with its app-level token (`xapp-...`) and gets a `wss://`
URL; here it is `ws://127.0.0.1:<port>/link/?ticket=...` on the Slack stand-in. On connect the
server says `hello`; each command, click or modal submission then arrives as an envelope
`{"envelope_id", "type": "slash_commands" | "interactive", "payload", "accepts_response_payload"}`
and the app acks by sending back `{"envelope_id"[, "payload"]}` on the same socket.
`SocketSender` builds the same payloads as the signed HTTP sender and waits for the ack.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from sandbox.slack_requests import SlackSender

APP_ID = "A0SANDBOX"


class SocketHub:
    """The server end: hands out connection URLs, delivers envelopes, collects acks."""

    def __init__(self) -> None:
        self.connections: list[web.WebSocketResponse] = []
        self.acks: list[dict[str, Any]] = []
        self.tickets: list[str] = []
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()

    def new_url(self, base_url: str) -> str:
        ticket = f"ticket-{next(self._ids)}"
        self.tickets.append(ticket)
        return f"{base_url.replace('http://', 'ws://', 1)}/link/?ticket={ticket}"

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        if request.query.get("ticket") not in self.tickets:
            raise web.HTTPUnauthorized(text="unknown ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections.append(ws)
        self._changed.set()
        await ws.send_json({"type": "hello", "num_connections": len(self.connections),
                            "connection_info": {"app_id": APP_ID},
                            "debug_info": {"host": "sandbox", "approximate_connection_time": 3600}})
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                ack = json.loads(message.data)
                self.acks.append(ack)
                waiter = self._waiting.pop(str(ack.get("envelope_id")), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(ack)
        finally:
            self.connections.remove(ws)
            self._changed.set()
        return ws

    async def connected(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not self.connections:
                self._changed.clear()
                await self._changed.wait()

    async def deliver(self, kind: str, payload: dict[str, Any], *,
                      timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Send one envelope to the newest connection; the app's ack."""
        await self.connected(timeout)
        envelope_id = f"env-{next(self._ids)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[envelope_id] = waiter
        await self.connections[-1].send_json({
            "envelope_id": envelope_id, "type": kind, "payload": payload,
            "accepts_response_payload": kind == "slash_commands" or (
                kind == "interactive" and payload.get("type") == "view_submission"),
            "retry_attempt": 0, "retry_reason": ""})
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._waiting.pop(envelope_id, None)

    async def close(self) -> None:
        for ws in list(self.connections):
            await ws.close()


class SocketSender:
    """What a person does in Slack, delivered over Socket Mode instead of signed HTTP."""

    def __init__(self, hub: SocketHub, response_url_base: str) -> None:
        self.hub = hub
        self.bodies = SlackSender("", "unused", response_url_base=response_url_base)

    async def aclose(self) -> None:
        await self.bodies.aclose()

    async def command(self, text: str, user: str, **kwargs: Any) -> dict[str, Any]:
        form = dict(parse_qsl(self.bodies.command_body(text, user, **kwargs)))
        return await self.hub.deliver("slash_commands", form)

    async def click(self, action_id: str, value: str, user: str, **kwargs: Any) -> dict[str, Any]:
        return await self.hub.deliver("interactive", _payload(
            self.bodies.click_body(action_id, value, user, **kwargs)))

    async def submit_view(self, callback_id: str, values: dict[str, dict[str, str]], user: str,
                          private_metadata: str) -> dict[str, Any]:
        return await self.hub.deliver("interactive", _payload(
            self.bodies.view_body(callback_id, values, user, private_metadata)))


def _payload(form_body: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(dict(parse_qsl(form_body))["payload"])
    return payload
