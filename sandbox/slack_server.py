"""A local Slack Web API stand-in for the bot's Slack client, Bolt's `respond()` and file uploads.

Point `slack_sdk`'s `AsyncWebClient(token="xoxb-...", base_url=f"{url}/api/")` at it. What the
client sends, and what this server therefore accepts on `/api/{method}`:

- POST with a JSON body (chat.postMessage, chat.update, chat.postEphemeral, views.*), POST with
  query parameters and no body (auth.test, files.getUploadURLExternal,
  files.completeUploadExternal), GET with query parameters (conversations.info, users.info,
  usergroups.users.list) and form bodies. All are merged into one params dict; JSON-in-a-string
  fields (blocks, attachments, view, files, metadata) are decoded as Slack does.
- `Authorization: Bearer xoxb-...` (or a `token` parameter). Answers keep Slack's envelope: HTTP
  200 with `{"ok": false, "error": "not_authed" | "invalid_auth" | ...}` on failure.
- files_upload_v2: files.getUploadURLExternal returns `upload_url` = `/upload/{file_id}` on this
  server; the client POSTs the raw bytes there (no token) and gets `OK - <length>` as text/plain;
  files.completeUploadExternal then shares the files.
- Bolt's `respond()` POSTs JSON to a response_url; `response_url(id)` builds one on this server.
- Socket Mode: `apps.connections.open` (app-level `xapp-` token) hands out a WebSocket URL on
  this server; `socket` (sandbox.slack_socket.SocketHub) delivers envelopes and keeps the acks.

Strict as Slack (sandbox.slack_methods, sandbox.slack_blocks): blocks over Block Kit's limits
are refused (`invalid_blocks` with Slack's `response_metadata.messages`; `invalid_arguments`
for a view; HTTP 400 `invalid_blocks` on a response_url), so are posts to an unknown channel
(`channel_not_found`) or one the bot is not in (`not_in_channel`), and direct messages while
the manifest's Messages tab is off (`messages_tab_disabled`). The workspace starts with the
channels in `workspace_channels`, the bot in each; `add_channel`, `add_member`,
`remove_member` and `messages_tab_enabled` change that.

Rate limits (`rate_limits=SlackLimits()`, sandbox.slack_limits; off by default; assign another,
or None, while serving): chat.postMessage about one message a second per channel, the other
methods by tier. Over a limit the method is not executed: HTTP 429, `{"ok": false, "error":
"ratelimited"}` and `Retry-After` in whole seconds until the next request would pass. Such
calls are recorded with `limited=True` and counted in `rate_limited`.

Faults (`inject`) answer the next matching calls with 429 + Retry-After, a 5xx, or an `ok: false`
error, optionally after a delay. The SDK's rate-limit handler reads only the first character of
Retry-After (so "30" waits 3 s) and adds up to 1 s of jitter; its server-error handler retries
500 and 503 only.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from sandbox.http import RunningServer, start
from sandbox.rate_limit import retry_after_seconds
from sandbox.slack_blocks import message_errors, slack_messages
from sandbox.slack_limits import Limiter, SlackLimits
from sandbox.slack_methods import (
    MANIFEST,
    WORKSPACE_CHANNELS,
    SlackError,
    SlackFile,
    SlackMethods,
)
from sandbox.slack_socket import SocketHub

__all__ = ["RESPONSE_URL", "UPLOAD", "SlackCall", "SlackError", "SlackFault", "SlackFile",
           "SlackLimits", "SlackSandbox"]

UPLOAD = "file_upload"
RESPONSE_URL = "response_url"
JSON_FIELDS = {"blocks": "invalid_blocks_format", "attachments": "invalid_attachments",
               "view": "invalid_arguments", "files": "invalid_arguments",
               "metadata": "invalid_metadata_format"}
RECORDED_HEADERS = ("Content-Type", "User-Agent")
STATUS_ERRORS = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}
RESPONSE_URL_USES = 5  # Slack accepts up to five posts to one response_url

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class SlackCall:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() when the request arrived
    http_method: str = "POST"
    status: int = 200
    ok: bool = True
    error: str | None = None
    faulted: bool = False
    limited: bool = False  # refused by a rate limit (429 ratelimited, not executed)
    details: list[str] = field(default_factory=list)  # Slack's messages with an invalid_* error


@dataclass
class SlackFault:
    method: str
    status: int = 429
    retry_after: int = 1
    times: int = 1
    error: str | None = None
    delay: float = 0.0
    after_processing: bool = False   # the call is carried out, then its answer is the fault


@dataclass
class SlackSandbox(SlackMethods):
    """State, recording and fault injection for the stand-in. Serve `app()`."""

    token: str | None = field(default=None, repr=False)  # None: any xoxb- token is valid
    team_id: str = "T0SANDBOX"
    team: str = "Sandbox Tours"
    bot_user_id: str = "U0SANDBOXBOT"
    bot_id: str = "B0SANDBOX"
    app_id: str = "A0SANDBOX"
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""  # base URL without slash; set by `serve()` or the first request
    calls: list[SlackCall] = field(default_factory=list)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    home_views: dict[str, dict[str, Any]] = field(default_factory=dict)  # by user id
    files: dict[str, SlackFile] = field(default_factory=dict)
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    faults: list[SlackFault] = field(default_factory=list)
    socket: SocketHub = field(default_factory=SocketHub)
    rate_limits: SlackLimits | None = None  # None: no limits
    rate_clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    members: dict[str, set[str]] = field(default_factory=dict)  # by channel id
    # channels made at start, the bot a member of each ({}: none)
    workspace_channels: dict[str, str] = field(default_factory=lambda: dict(WORKSPACE_CHANNELS))
    manifest: Path = MANIFEST  # the app manifest whose Messages tab setting applies
    messages_tab_enabled: bool | None = None  # None: as `manifest` says

    def __post_init__(self) -> None:
        self._limiter: Limiter | None = None
        self._refused = 0
        self._waiters: set[asyncio.Event] = set()
        self._start_workspace(self.workspace_channels)

    # ---- configuration ---------------------------------------------------------------

    def inject(self, method: str, status: int = 429, retry_after: int = 1, times: int = 1,
               *, error: str | None = None, delay: float = 0.0,
               after_processing: bool = False) -> SlackFault:
        """Answer the next `times` calls of `method` with a fault instead of executing them.

        429: `Retry-After: retry_after` and `ratelimited`. 5xx: `internal_error` (500),
        `service_unavailable` (503), else `fatal_error`. 200: `ok: false` with `error`.
        `method` may also be UPLOAD or RESPONSE_URL. `delay` seconds pass before answering.
        `after_processing` (Web API methods): the call is carried out first and only its
        answer is lost to the fault (a message posted whose answer never came back).
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if status == 200 and not error:
            raise ValueError("a status 200 fault needs an error code")
        fault = SlackFault(method, status, int(retry_after), times, error, delay,
                           after_processing)
        self.faults.append(fault)
        return fault

    def response_url(self, response_id: str) -> str:
        if not self.url:
            raise RuntimeError("the sandbox has no URL yet; use serve() or set .url")
        return f"{self.url}/response/{response_id}"

    @property
    def rate_limited(self) -> int:
        """How many calls a rate limit refused (429 ratelimited) since the stand-in started."""
        return self._refused

    def _limit_wait(self, method: str, params: dict[str, Any]) -> float:
        if self.rate_limits is None:
            return 0.0
        if self._limiter is None or self._limiter.limits is not self.rate_limits:
            self._limiter = Limiter(self.rate_limits, self.rate_clock)
        return self._limiter.wait(method, params)

    @property
    def api_url(self) -> str:
        """The `base_url` for AsyncWebClient."""
        return f"{self.url}/api/"

    async def serve(self) -> RunningServer:
        server = await start(self.app())
        self.url = server.url
        return server

    # ---- inspection ------------------------------------------------------------------

    def calls_to(self, method: str) -> list[SlackCall]:
        """Calls of `method` in arrival order, faulted ones included."""
        return [c for c in self.calls if c.method == method]

    def clear(self) -> None:
        """Forget recorded calls and pending faults (messages, views and files stay)."""
        self.calls.clear()
        self.faults.clear()

    async def wait_for(
        self, method: str, count: int = 1, timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[SlackCall]:
        """Wait until `count` calls of `method` were answered (faulted ones count too)."""
        event = asyncio.Event()
        self._waiters.add(event)
        try:
            async with asyncio.timeout(timeout):
                while len(self.calls_to(method)) < count:
                    event.clear()
                    await event.wait()
        except TimeoutError:
            seen = [c.method for c in self.calls]
            raise TimeoutError(f"{count} x {method} not seen within {timeout}s; saw {seen}") \
                from None
        finally:
            self._waiters.discard(event)
        return self.calls_to(method)

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        return self.messages[(channel, ts)]

    def messages_in(self, channel: str) -> list[dict[str, Any]]:
        """Messages of a channel (thread replies included), oldest first."""
        found = [m for (ch, _), m in self.messages.items() if ch == channel]
        return sorted(found, key=lambda m: m["ts"])

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages_in(channel)
                if m.get("thread_ts") == thread_ts and m["ts"] != thread_ts]

    # ---- HTTP ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._learn_url])
        app.router.add_route("*", "/api/{method}", self._h_api)
        app.router.add_post("/upload/{file_id}", self._h_upload)
        app.router.add_get("/files/{file_id}/download", self._h_download)
        app.router.add_post("/response/{response_id}", self._h_response)
        app.router.add_get("/link/", self.socket.handle)
        app.on_shutdown.append(lambda _app: self.socket.close())
        return app

    @web.middleware
    async def _learn_url(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.url:
            self.url = str(request.url.origin())
        return await handler(request)

    async def _h_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        arrived = time.monotonic()
        try:
            params = await _params(request)
        except SlackError as exc:
            return self._answer(request, method, {}, arrived, {"ok": False, "error": exc.code})
        token = _bearer(request.headers.get("Authorization", "")) or params.pop("token", None)
        params.pop("token", None)
        fault = await self._fault(method)
        if fault is not None and not fault.after_processing:
            return self._fault_answer(request, method, params, arrived, fault)
        try:
            if method == "apps.connections.open":  # the one method taking the app-level token
                if not (token or "").startswith("xapp-"):
                    raise SlackError("not_allowed_token_type" if token else "not_authed")
                body = {"ok": True, "url": self.socket.new_url(self.url)}
                return self._answer(request, method, params, arrived, body)
            self._check_token(token)
            handler = self._handlers().get(method)
            if handler is None:
                raise SlackError("unknown_method")
            wait = self._limit_wait(method, params)
            if wait:
                return self._limited_answer(request, method, params, arrived, wait)
            body = {"ok": True, **handler(params)}
        except SlackError as exc:
            body = {"ok": False, "error": exc.code}
            if exc.details:
                body.update(slack_messages(exc.details))
        if fault is not None:   # carried out; the answer is lost
            return self._fault_answer(request, method, params, arrived, fault)
        return self._answer(request, method, params, arrived, body)

    async def _h_upload(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        file_id = request.match_info["file_id"]
        content = await _upload_bytes(request)
        params: dict[str, Any] = {"file_id": file_id, "length": len(content)}
        fault = await self._fault(UPLOAD)
        if fault is not None:
            return self._fault_answer(request, UPLOAD, params, arrived, fault)
        upload = self.files.get(file_id)
        if upload is None or upload.completed:
            self._record(request, UPLOAD, params, arrived, 404, "file_not_found")
            return web.Response(status=404, text="Not Found")
        upload.content = content
        params["filename"] = upload.filename
        self._record(request, UPLOAD, params, arrived, 200, None)
        return web.Response(text=f"OK - {len(content)}")

    async def _h_download(self, request: web.Request) -> web.StreamResponse:
        """A file's url_private_download: its bytes, for a request with a bot token."""
        found = self.files.get(request.match_info["file_id"])
        bearer = request.headers.get("Authorization", "")
        if not bearer.startswith("Bearer xoxb-") or (
                self.token is not None and bearer != f"Bearer {self.token}"):
            return web.Response(status=403, text="Forbidden")
        if found is None or found.content is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=found.content, content_type="application/octet-stream")

    async def _h_response(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        response_id = request.match_info["response_id"]
        try:
            params = await _params(request)
        except SlackError as exc:
            return self._answer(request, RESPONSE_URL, {}, arrived,
                                {"ok": False, "error": exc.code}, status=400)
        params["response_id"] = response_id
        fault = await self._fault(RESPONSE_URL)
        if fault is not None:
            return self._fault_answer(request, RESPONSE_URL, params, arrived, fault)
        posted = self.responses.setdefault(response_id, [])
        if len(posted) >= RESPONSE_URL_USES:
            return self._answer(request, RESPONSE_URL, params, arrived,
                                {"ok": False, "error": "used_url"}, status=404)
        errors = message_errors(params.get("blocks"))
        if errors:  # refused as Slack refuses a webhook's blocks, nothing posted
            return self._answer(request, RESPONSE_URL, params, arrived,
                                {"ok": False, "error": "invalid_blocks", **slack_messages(errors)},
                                status=400)
        posted.append({k: v for k, v in params.items() if k != "response_id"})
        return self._answer(request, RESPONSE_URL, params, arrived, {"ok": True})

    async def _fault(self, method: str) -> SlackFault | None:
        for fault in self.faults:
            if fault.method == method:
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                return fault
        return None

    def _fault_answer(self, request: web.Request, method: str, params: dict[str, Any],
                      arrived: float, fault: SlackFault) -> web.Response:
        error = fault.error or STATUS_ERRORS.get(fault.status, "fatal_error")
        headers = {"Retry-After": str(fault.retry_after)} if fault.status == 429 else {}
        self._record(request, method, params, arrived, fault.status, error, faulted=True)
        return web.json_response({"ok": False, "error": error}, status=fault.status,
                                 headers=headers)

    def _limited_answer(self, request: web.Request, method: str, params: dict[str, Any],
                        arrived: float, wait: float) -> web.Response:
        self._refused += 1
        self._record(request, method, params, arrived, 429, "ratelimited", limited=True)
        return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                 headers={"Retry-After": str(retry_after_seconds(wait))})

    def _answer(self, request: web.Request, method: str, params: dict[str, Any], arrived: float,
                body: dict[str, Any], status: int = 200) -> web.Response:
        self._record(request, method, params, arrived, status, body.get("error"),
                     details=body.get("errors") or [])
        return web.json_response(body, status=status)

    def _record(self, request: web.Request, method: str, params: dict[str, Any], arrived: float,
                status: int, error: str | None, *, faulted: bool = False,
                limited: bool = False, details: list[str] | None = None) -> None:
        headers = {h: request.headers[h] for h in RECORDED_HEADERS if h in request.headers}
        auth = request.headers.get("Authorization")
        if auth:
            headers["Authorization"] = auth[:12] + "..."  # scheme and token prefix only
        self.calls.append(SlackCall(method, params, headers, arrived, request.method, status,
                                    error is None, error, faulted, limited, list(details or [])))
        for event in self._waiters:
            event.set()

    def _check_token(self, token: str | None) -> None:
        if not token:
            raise SlackError("not_authed")
        valid = token == self.token if self.token else token.startswith("xoxb-")
        if not valid:
            raise SlackError("invalid_auth")

async def _params(request: web.Request) -> dict[str, Any]:
    """Query, form and JSON parameters merged; JSON-in-a-string fields decoded."""
    params: dict[str, Any] = dict(request.query)
    if request.body_exists:
        raw = await request.read()
        if request.content_type == "application/json" or raw.lstrip().startswith(b"{"):
            try:
                body = json.loads(raw)
            except ValueError:
                raise SlackError("invalid_json") from None
            if not isinstance(body, dict):
                raise SlackError("invalid_json")
            params.update(body)
        elif request.content_type == "multipart/form-data":
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        else:
            params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    for key, error in JSON_FIELDS.items():
        if isinstance(params.get(key), str):
            try:
                params[key] = json.loads(params[key])
            except ValueError:
                raise SlackError(error) from None
    return params


async def _upload_bytes(request: web.Request) -> bytes:
    """The raw body, or the first file part of a multipart upload."""
    if request.content_type == "multipart/form-data":
        form = await request.post()
        for value in form.values():
            if isinstance(value, web.FileField):
                return value.file.read()
        return b""
    return await request.read()


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None

