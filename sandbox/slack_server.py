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

Rate limits (`rate_limits=SlackLimits()`, off by default; assign another, or None, while
serving): chat.postMessage about one message a second per channel with short bursts, every
other method its tier's requests a minute (Tier 1: 1+, 2: 20+, 3: 50+, 4: 100+), per method,
with a small burst. Over a limit the method is not executed: HTTP 429, `{"ok": false, "error":
"ratelimited"}` and `Retry-After` in whole seconds until the next request would pass. Such
calls are recorded with `limited=True` and counted in `rate_limited`. (Slack's workspace-wide
posting limit has no published number and is not modelled.)

Faults (`inject`) answer the next matching calls with 429 + Retry-After, a 5xx, or an `ok: false`
error, optionally after a delay. The SDK's rate-limit handler reads only the first character of
Retry-After (so "30" waits 3 s) and adds up to 1 s of jitter; its server-error handler retries
500 and 503 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from sandbox.http import RunningServer, start
from sandbox.rate_limit import Buckets, Limit, retry_after_seconds
from sandbox.slack_socket import SocketHub

UPLOAD = "file_upload"
RESPONSE_URL = "response_url"
JSON_FIELDS = {"blocks": "invalid_blocks_format", "attachments": "invalid_attachments",
               "view": "invalid_arguments", "files": "invalid_arguments",
               "metadata": "invalid_metadata_format"}
RECORDED_HEADERS = ("Content-Type", "User-Agent")
STATUS_ERRORS = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}
RESPONSE_URL_USES = 5  # Slack accepts up to five posts to one response_url
# The tier of each method served here, as Slack's method reference lists them (chat.postMessage
# has its own per-channel limit; chat.getPermalink and auth.test are "special", kept at Tier 4).
METHOD_TIERS = {
    "auth.test": 4, "chat.update": 3, "chat.delete": 3, "chat.postEphemeral": 4,
    "chat.getPermalink": 4, "views.open": 4, "views.push": 4, "views.update": 4,
    "views.publish": 4, "usergroups.users.list": 2, "users.info": 4, "conversations.info": 3,
    "files.getUploadURLExternal": 4, "files.completeUploadExternal": 4,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SlackError(Exception):
    """An `ok: false` answer with this error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


POST_MESSAGE_LIMIT = Limit(1.0, burst=3)   # per channel: one a second, short bursts


def _default_tiers() -> dict[int, Limit]:
    return {1: Limit.per_minute(1), 2: Limit.per_minute(20), 3: Limit.per_minute(50),
            4: Limit.per_minute(100)}


@dataclass(frozen=True)
class SlackLimits:
    """Slack's Web API limits: chat.postMessage per channel, the others per method by tier."""

    post_message: Limit = POST_MESSAGE_LIMIT
    tiers: dict[int, Limit] = field(default_factory=_default_tiers)

    def of(self, method: str, params: dict[str, Any]) -> tuple[tuple[str, str], Limit] | None:
        """The bucket a call takes from (its key and limit); None for a method not limited."""
        if method == "chat.postMessage":
            return (method, str(params.get("channel", ""))), self.post_message
        tier = METHOD_TIERS.get(method)
        if tier is None or tier not in self.tiers:
            return None
        return (method, ""), self.tiers[tier]


class _Limiter:
    """The buckets of one `SlackLimits`, made as calls need them."""

    def __init__(self, limits: SlackLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._buckets: dict[tuple[str, str], Buckets] = {}

    def wait(self, method: str, params: dict[str, Any]) -> float:
        found = self.limits.of(method, params)
        if found is None:
            return 0.0
        key, limit = found
        buckets = self._buckets.get(key)
        if buckets is None:
            buckets = self._buckets[key] = Buckets(limit, self._clock)
        return buckets.take()


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


@dataclass
class SlackFault:
    method: str
    status: int = 429
    retry_after: int = 1
    times: int = 1
    error: str | None = None
    delay: float = 0.0


@dataclass
class SlackFile:
    id: str
    filename: str
    length: int  # as declared to files.getUploadURLExternal
    content: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    completed: bool = False


@dataclass
class SlackSandbox:
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

    def __post_init__(self) -> None:
        self._limiter: _Limiter | None = None
        self._refused = 0
        self._ts = itertools.count(1_700_000_000_000_100, 100)  # microseconds
        self._ids = itertools.count(1)
        self._waiters: set[asyncio.Event] = set()
        for user_id, user in list(self.users.items()):
            self.add_user(user_id, **user)

    # ---- configuration ---------------------------------------------------------------

    def add_user(self, user_id: str, name: str | None = None, real_name: str | None = None,
                 tz: str = "UTC", **extra: Any) -> dict[str, Any]:
        name = name or user_id.lower()
        real_name = real_name if real_name is not None else name
        user = {
            "id": user_id, "team_id": self.team_id, "name": name, "deleted": False,
            "real_name": real_name, "tz": tz, "tz_offset": _tz_offset(tz),
            "is_admin": False, "is_bot": False,
            "profile": {"real_name": real_name, "display_name": name, "team": self.team_id},
            **extra,
        }
        self.users[user_id] = user
        return user

    def add_channel(self, channel_id: str, name: str, *, is_private: bool = False,
                    is_member: bool = True) -> dict[str, Any]:
        channel = {"id": channel_id, "name": name, "name_normalized": name,
                   "is_channel": True, "is_group": False, "is_im": False,
                   "is_private": is_private, "is_archived": False, "is_member": is_member,
                   "created": 1_600_000_000, "creator": self.bot_user_id}
        self.channels[channel_id] = channel
        return channel

    def inject(self, method: str, status: int = 429, retry_after: int = 1, times: int = 1,
               *, error: str | None = None, delay: float = 0.0) -> SlackFault:
        """Answer the next `times` calls of `method` with a fault instead of executing them.

        429: `Retry-After: retry_after` and `ratelimited`. 5xx: `internal_error` (500),
        `service_unavailable` (503), else `fatal_error`. 200: `ok: false` with `error`.
        `method` may also be UPLOAD or RESPONSE_URL. `delay` seconds pass before answering.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if status == 200 and not error:
            raise ValueError("a status 200 fault needs an error code")
        fault = SlackFault(method, status, int(retry_after), times, error, delay)
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
            self._limiter = _Limiter(self.rate_limits, self.rate_clock)
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
        if fault is not None:
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
        self._record(request, method, params, arrived, status, body.get("error"))
        return web.json_response(body, status=status)

    def _record(self, request: web.Request, method: str, params: dict[str, Any], arrived: float,
                status: int, error: str | None, *, faulted: bool = False,
                limited: bool = False) -> None:
        headers = {h: request.headers[h] for h in RECORDED_HEADERS if h in request.headers}
        auth = request.headers.get("Authorization")
        if auth:
            headers["Authorization"] = auth[:12] + "..."  # scheme and token prefix only
        self.calls.append(SlackCall(method, params, headers, arrived, request.method, status,
                                    error is None, error, faulted, limited))
        for event in self._waiters:
            event.set()

    def _check_token(self, token: str | None) -> None:
        if not token:
            raise SlackError("not_authed")
        valid = token == self.token if self.token else token.startswith("xoxb-")
        if not valid:
            raise SlackError("invalid_auth")

    # ---- methods ---------------------------------------------------------------------

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._permalink,
            "views.open": self._views_open,
            "views.push": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroup_users,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }

    def _auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://sandbox.slack.test/", "team": self.team, "user": "refund-bot",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False}

    def _post_message(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = _required(p, "channel", "channel_not_found")
        if not (p.get("text") or p.get("blocks") or p.get("attachments")):
            raise SlackError("no_text")
        thread_ts = p.get("thread_ts")
        if thread_ts and (channel, thread_ts) not in self.messages:
            raise SlackError("thread_not_found")
        ts = self._next_ts()
        message: dict[str, Any] = {"type": "message", "user": self.bot_user_id,
                                   "bot_id": self.bot_id, "app_id": self.app_id,
                                   "team": self.team_id, "ts": ts, "text": p.get("text", "")}
        for key in ("blocks", "attachments", "metadata", "thread_ts"):
            if p.get(key) is not None:
                message[key] = p[key]
        self.messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": dict(message)}

    def _update(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = _required(p, "channel", "channel_not_found")
        ts = _required(p, "ts", "message_not_found")
        message = self.messages.get((channel, ts))
        if message is None:
            raise SlackError("message_not_found")
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in p:  # omitted fields keep their previous value
                message[key] = p[key]
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel, "ts": ts, "text": message.get("text", ""),
                "message": dict(message)}

    def _delete(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = _required(p, "channel", "channel_not_found")
        ts = _required(p, "ts", "message_not_found")
        if self.messages.pop((channel, ts), None) is None:
            raise SlackError("message_not_found")
        return {"channel": channel, "ts": ts}

    def _post_ephemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        _required(p, "channel", "channel_not_found")
        _required(p, "user", "user_not_in_channel")
        if not (p.get("text") or p.get("blocks") or p.get("attachments")):
            raise SlackError("no_text")
        return {"message_ts": self._next_ts()}

    def _permalink(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = _required(p, "channel", "channel_not_found")
        ts = _required(p, "message_ts", "message_not_found")
        if (channel, ts) not in self.messages:
            raise SlackError("message_not_found")
        link = f"https://sandbox.slack.test/archives/{channel}/p{ts.replace('.', '')}"
        return {"channel": channel, "permalink": link}

    def _views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        _required(p, "trigger_id", "invalid_arguments")
        view = p.get("view")
        if not isinstance(view, dict) or "type" not in view:
            raise SlackError("invalid_arguments")
        view_id = self._next_id("V")
        stored = {**view, "id": view_id, "team_id": self.team_id, "app_id": self.app_id,
                  "bot_id": self.bot_id, "state": {"values": {}}, "hash": self._next_hash(),
                  "root_view_id": view_id, "previous_view_id": None}
        self.views[view_id] = stored
        return {"view": dict(stored)}

    def _views_publish(self, p: dict[str, Any]) -> dict[str, Any]:
        """A user's Home tab: kept in `home_views` by user id (the last one published)."""
        user = _required(p, "user_id", "invalid_arguments")
        view = p.get("view")
        if not isinstance(view, dict) or view.get("type") != "home":
            raise SlackError("invalid_arguments")
        if user not in self.users:
            raise SlackError("user_not_found")
        stored = {**view, "id": self._next_id("V"), "team_id": self.team_id,
                  "app_id": self.app_id, "bot_id": self.bot_id, "hash": self._next_hash()}
        self.home_views[user] = stored
        return {"view": dict(stored)}

    def _views_update(self, p: dict[str, Any]) -> dict[str, Any]:
        view = p.get("view")
        if not isinstance(view, dict) or "type" not in view:
            raise SlackError("invalid_arguments")
        view_id = p.get("view_id")
        if not view_id and p.get("external_id"):
            view_id = next((v["id"] for v in self.views.values()
                            if v.get("external_id") == p["external_id"]), None)
        current = self.views.get(view_id or "")
        if current is None:
            raise SlackError("not_found")
        if p.get("hash") and p["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        keep = {k: current[k] for k in ("id", "team_id", "app_id", "bot_id", "state",
                                        "root_view_id", "previous_view_id")}
        stored = {**view, **keep, "hash": self._next_hash()}
        self.views[current["id"]] = stored
        return {"view": dict(stored)}

    def _usergroup_users(self, p: dict[str, Any]) -> dict[str, Any]:
        group = _required(p, "usergroup", "no_such_subteam")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(_required(p, "user", "user_not_found"))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user}

    def _conversations_info(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self.channels.get(_required(p, "channel", "channel_not_found"))
        if channel is None:
            raise SlackError("channel_not_found")
        return {"channel": channel}

    def _get_upload_url(self, p: dict[str, Any]) -> dict[str, Any]:
        filename = _required(p, "filename", "invalid_arguments")
        try:
            length = int(p.get("length", ""))
        except ValueError:
            raise SlackError("invalid_arguments") from None
        file_id = self._next_id("F")
        self.files[file_id] = SlackFile(file_id, filename, length)
        return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, p: dict[str, Any]) -> dict[str, Any]:
        entries = p.get("files")
        if not isinstance(entries, list) or not entries:
            raise SlackError("invalid_arguments")
        done: list[SlackFile] = []
        for entry in entries:
            upload = self.files.get(str(entry.get("id", ""))) if isinstance(entry, dict) else None
            if upload is None or upload.content is None or upload.completed:
                raise SlackError("file_not_found")
            upload.title = entry.get("title") or upload.filename
            done.append(upload)
        channel = p.get("channel_id") or (p.get("channels") or "").split(",")[0] or None
        for upload in done:
            upload.completed = True
            upload.channel = channel
            upload.thread_ts = p.get("thread_ts")
            upload.initial_comment = p.get("initial_comment")
        return {"files": [{"id": f.id, "name": f.filename, "title": f.title, "size": len(
            f.content or b""), "channels": [f.channel] if f.channel else []} for f in done]}

    # ---- ids -------------------------------------------------------------------------

    def _next_ts(self) -> str:
        micros = next(self._ts)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}0SBX{next(self._ids):06d}"

    def _next_hash(self) -> str:
        return f"{int(time.time())}.{next(self._ids):08x}"


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


def _required(p: dict[str, Any], key: str, error: str) -> str:
    value = p.get(key)
    if not isinstance(value, str) or not value:
        raise SlackError(error)
    return value


def _tz_offset(tz: str) -> int:
    with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
        offset = datetime.now(UTC).astimezone(ZoneInfo(tz)).utcoffset()
        return int(offset.total_seconds()) if offset else 0
    return 0
