"""The Slack runtime: the Bolt app, its listeners, and the request checks in front of them.

A Bolt AsyncApp in the same aiohttp process (HTTP mode, `/slack/events`), or over Socket Mode
when SLACK_APP_TOKEN is set, with the same listeners either way. It is built on a
`bot.slack.delivery.SlackDelivery` (the Web API client, the paced outbox and the notifier),
which is built before the `Deps`, which take its notifier.

`process_before_response=True`: Bolt answers Slack when the listener returns, and every
listener only acks and hands its work to the worker, so the answer leaves in well under a
millisecond of our own time instead of Bolt's default ack polling.

Over HTTP the request is checked here before Bolt sees it: size, then the signature over the
raw bytes (an unreadable timestamp is simply unsigned), then the body, read within depth
bounds. Every refusal is a 4xx with the reason and is counted, never logged with its body
(Bolt's own check, which logs refused bodies, is off). A signed body of a shape the listeners
cannot read is a 400 too, not a 500.

Events API deliveries are de-duplicated by event_id in the store (`services.intake.slack_events`),
in both modes: a retry of a delivery that failed is handled, a second delivery of a handled
event is not, with or without Slack's retry number. Other requests (commands, clicks, modals)
carry no event id; Slack's retries of those are acked and dropped as before.

Every request is given a correlation id of its own (`sl-...`, `services.correlation`), with
the case bound when a button or a modal names one: the lines, audit rows and calls of the work
it hands on carry them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.settings import Settings
from bot.slack.delivery import Respond, SlackDelivery, api_base_url, web_client
from bot.slack.notifier import SlackNotifier
from bot.slack.outbox import Outbox
from bot.slack.ui.payloads import CaseRef
from bot.worker import Worker
from handlers.http.bodies import BadBody, loads
from handlers.http.context import read_limited
from handlers.slack import (
    actions,
    card_actions,
    commands,
    departure,
    disputes,
    home,
    intake,
    review,
    views,
)
from handlers.slack import customer as customer_message
from handlers.slack.deps import GroupMembers, SlackDeps
from handlers.slack.listeners import case_of, metadata_of
from services import correlation
from services.customers.drafts import Templates
from services.deps import Deps
from services.intake import slack_events
from services.intake.rejections import BAD_SIGNATURE, MALFORMED, TOO_DEEP, Rejections
from services.refunds.permissions import ApproverRules

log = logging.getLogger(__name__)
GROUP_REFRESH_SECONDS = 300
OUTBOX_DRAIN_SECONDS = 5.0  # on stop, the longest wait for posts due to go out
SIGNATURE_MAX_AGE_SECONDS = 300  # Slack's advice: refuse a request signed 5 minutes ago
UNREADABLE = "the request's fields are not what Slack sends"


@dataclass
class SlackRuntime:
    app: AsyncApp
    deps: SlackDeps
    outbox: Outbox
    notifier: SlackNotifier
    socket_mode_token: str | None
    _tasks: list[asyncio.Task[Any]]
    _socket: Any = None
    signing_secret: str | None = None
    max_body_bytes: int = 256 * 1024
    rejections: Rejections = field(default_factory=Rejections)

    @classmethod
    def build(cls, settings: Settings, svc: Deps, worker: Worker, delivery: SlackDelivery,
              rejected: Rejections | None = None) -> SlackRuntime:
        assert settings.slack_bot_token is not None
        signing = settings.slack_signing_secret.get_secret_value() \
            if settings.slack_signing_secret else None
        token = settings.slack_bot_token.get_secret_value()

        async def authorize(enterprise_id: str | None, team_id: str | None,
                            **_: Any) -> AuthorizeResult:
            # one workspace, one bot token: no auth.test call on any request's path
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

        app = AsyncApp(
            # a template; `authorize` gives the token
            client=web_client(None, api_base_url(settings)),
            authorize=authorize,
            signing_secret=signing,
            process_before_response=True,
            request_verification_enabled=False,  # `handle` checks, over the raw bytes
        )
        rejected = rejected if rejected is not None else Rejections()
        app.error(_unreadable(rejected))
        rules = ApproverRules.parse(
            approvers=settings.slack_approvers, group_id=settings.slack_approver_group,
            group_max=settings.slack_approver_group_max,
            finance_leads=settings.slack_finance_leads,
            no_self_approval=settings.slack_no_self_approval)
        deps = SlackDeps(svc=svc, worker=worker, client=delivery.client, rules=rules,
                         groups=GroupMembers(rules.group_id), notifier=delivery.notifier,
                         outbox=delivery.outbox, zone=settings.zone,
                         customers=settings.customer_settings(),
                         promotion=settings.promotion_rules(),
                         templates=Templates(Path(settings.customer_templates_dir)
                                             if settings.customer_templates_dir else None))
        app.middleware(_correlate)
        app.middleware(_skip_slack_retries)
        app.middleware(_people(deps))
        app.middleware(_retrying_respond)
        actions.register(app, deps)
        views.register(app, deps)
        commands.register(app, deps)
        disputes.register(app, deps)
        home.register(app, deps)
        intake.register(app, deps)
        card_actions.register(app, deps)
        customer_message.register(app, deps)
        departure.register(app, deps)
        review.register(app, deps)
        app_token = settings.slack_app_token.get_secret_value() \
            if settings.slack_app_token else None
        return cls(app=app, deps=deps, outbox=delivery.outbox, notifier=delivery.notifier,
                   socket_mode_token=app_token, _tasks=[], signing_secret=signing,
                   max_body_bytes=settings.max_body_bytes,
                   rejections=rejected)

    def mount(self, web_app: web.Application, path: str = "/slack/events") -> None:
        if self.socket_mode_token is None:
            web_app.router.add_post(path, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        """POST /slack/events: size, signature, a readable body; then Bolt."""
        raw = await read_limited(request, self.max_body_bytes, source="slack")
        if isinstance(raw, web.Response):
            return raw
        if self.signing_secret is not None and not signed(
                raw, request.headers, self.signing_secret, time.time()):
            self.rejections.reject("slack", BAD_SIGNATURE)
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse("body is not UTF-8")
        try:
            read_body(text, request.content_type)
            bolt_request = AsyncBoltRequest(body=text, query=request.query_string,
                                            headers=dict(request.headers))
        except BadBody as exc:
            return self._refuse(str(exc), TOO_DEEP if exc.too_deep else MALFORMED)
        except Exception:  # Bolt reading ids out of a payload of the wrong shape
            return self._refuse(UNREADABLE)
        return await to_aiohttp_response(await self.dispatch(bolt_request))

    async def dispatch(self, request: AsyncBoltRequest) -> BoltResponse:
        """Bolt's dispatch, with an Events API delivery claimed by its event_id first."""
        event_id, kind = _event_of(request.body)
        if event_id is None:
            return await self._bolt(request)
        store = self.deps.svc.store
        claim = await slack_events.claim(store, event_id, kind)
        if claim is slack_events.Claim.HANDLED:
            return BoltResponse(status=200, body="")
        if claim is slack_events.Claim.IN_FLIGHT:  # not 200: Slack retries it later
            return BoltResponse(status=409, body={"error": "this event is being handled"})
        try:
            response = await self._bolt(request)
        except BaseException:
            await slack_events.release(store, event_id)
            raise
        if response.status == 200:
            await slack_events.handled(store, event_id)
        else:
            await slack_events.release(store, event_id)
        return response

    async def _bolt(self, request: AsyncBoltRequest) -> BoltResponse:
        """Bolt's own dispatch. It answers a listener's failure through `_unreadable`, but
        fails itself when even the error handler's arguments cannot be read out of the body
        (a block_actions with no actions): that is a request of the wrong shape too."""
        try:
            return await self.app.async_dispatch(request)
        except Exception as exc:
            log.warning("a Slack request could not be read (%s)", exc.__class__.__name__)
            self.rejections.reject("slack", MALFORMED)
            return BoltResponse(status=400, body={"error": UNREADABLE})

    def _refuse(self, why: str, reason: str = MALFORMED) -> web.Response:
        self.rejections.reject("slack", reason)
        return web.json_response({"error": why}, status=400)

    async def start(self) -> None:
        await self.outbox.start()
        self._tasks.append(asyncio.create_task(self._refresh_groups(), name="slack-groups"))
        if self.socket_mode_token is not None:
            self._socket = _socket_handler(self, self.socket_mode_token)
            await self._socket.connect_async()

    async def stop_intake(self) -> None:
        """Take no more work: close the Socket Mode link (over HTTP, aiohttp stops listening)."""
        if self._socket is not None:
            socket, self._socket = self._socket, None
            await socket.close_async()

    async def stop(self, grace: float = OUTBOX_DRAIN_SECONDS) -> None:
        """Stop; posts still unsent after `grace` seconds (5 at most) stay in the store for
        the next start."""
        await self.stop_intake()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.outbox.drain(),
                                   timeout=min(grace, OUTBOX_DRAIN_SECONDS))
        await self.outbox.stop()

    async def _refresh_groups(self) -> None:
        while True:
            await self.deps.groups.refresh(self.deps.client)
            await asyncio.sleep(GROUP_REFRESH_SECONDS)


def signed(raw: bytes, headers: Mapping[str, str], secret: str, now: float) -> bool:
    """Slack's v0 signature over the raw bytes, made less than 5 minutes ago. A timestamp that
    is not a plain number is a request that is not signed."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 15:
        return False
    if abs(now - int(timestamp)) > SIGNATURE_MAX_AGE_SECONDS:
        return False
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw,
                      hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"v0={digest}".encode(), signature.encode("utf-8", "replace"))


def read_body(text: str, content_type: str) -> dict[str, Any]:
    """The body as Bolt will read it (JSON, a form with a JSON `payload`, or a plain form),
    read first with bounds: a `BadBody` when it is not JSON, too deep, or not an object."""
    if content_type == "application/json" or text.startswith("{"):
        value = loads(text, what="payload")
    elif "payload" in text:
        params = dict(parse_qsl(text, keep_blank_values=True))
        if "payload" not in params:
            return {}
        value = loads(params["payload"], what="payload")
    else:
        return dict(parse_qsl(text, keep_blank_values=True))
    if not isinstance(value, dict):
        raise BadBody("payload is not a JSON object")
    return value


def _unreadable(rejected: Rejections) -> Callable[[Exception], Awaitable[BoltResponse]]:
    """Bolt's error handler. A listener or middleware fails on the ack path only reading the
    body (no I/O happens there), so the request is one of a shape the listeners cannot read:
    a 400, counted, not a 500."""
    async def handler(error: Exception) -> BoltResponse:
        log.warning("a Slack request could not be read (%s)", error.__class__.__name__)
        rejected.reject("slack", MALFORMED)
        return BoltResponse(status=400, body={"error": UNREADABLE})
    return handler


def _event_of(body: Any) -> tuple[str | None, str]:
    """An Events API callback's event_id and event type; (None, "") for anything else."""
    if not isinstance(body, dict) or body.get("type") != "event_callback":
        return None, ""
    event_id = body.get("event_id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 200:
        return None, ""
    event = body.get("event")
    kind = event.get("type") if isinstance(event, dict) else None
    return event_id, kind if isinstance(kind, str) else ""


def _socket_handler(runtime: SlackRuntime, app_token: str) -> Any:
    """Bolt's Socket Mode handler, each envelope going through `runtime.dispatch`."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_bolt.adapter.socket_mode.async_internals import send_async_response
    from slack_bolt.adapter.socket_mode.internals import build_headers

    class Handler(AsyncSocketModeHandler):
        async def handle(self, client: Any, req: Any) -> None:
            started = time.time()
            try:
                bolt_request = AsyncBoltRequest(mode="socket_mode", body=req.payload,
                                                headers=build_headers(req))
            except Exception:  # Bolt reading ids out of a payload of the wrong shape
                runtime.rejections.reject("slack", MALFORMED)
                return
            await send_async_response(client, req, await runtime.dispatch(bolt_request),
                                      started)

    return Handler(runtime.app, app_token)


async def _correlate(req: Any, resp: Any, next: Any) -> Any:
    """Each Slack request (click, command, modal, event) logs under a correlation id of its own,
    with the case bound when a button or a modal names one; work it hands on keeps both."""
    correlation.begin(correlation.new_id("sl"), case_id=_case_named(req.body))
    return await next()


def _case_named(body: Any) -> int | None:
    if not isinstance(body, dict):
        return None
    if body.get("type") == "block_actions":
        return case_of(body)
    view = body.get("view")
    if body.get("type") == "view_submission" and isinstance(view, dict):
        ref = metadata_of(view, CaseRef)
        return ref.case_id if ref is not None else None
    return None


async def _skip_slack_retries(req: Any, resp: Any, next: Any) -> Any:
    """Slack re-sends a request it thinks timed out; the first one is already handled.

    Over Socket Mode every envelope carries a retry number, 0 for the first delivery. Events
    API callbacks go on: `SlackRuntime.dispatch` de-duplicates them by event_id instead.
    """
    retry = req.headers.get("x-slack-retry-num")
    if retry and retry[0].strip() not in ("", "0") and _event_of(req.body)[0] is None:
        return BoltResponse(status=200, body="")
    return await next()


def _people(deps: SlackDeps) -> Callable[..., Awaitable[Any]]:
    """Remember the name each request's sender goes by (in memory), for the answers written in
    plain text where a mention cannot show (a modal's field errors)."""
    async def middleware(req: Any, resp: Any, next: Any) -> Any:
        deps.people.saw(req.body)
        return await next()
    return middleware


async def _retrying_respond(req: Any, resp: Any, next: Any) -> Any:
    """Every listener's `respond` retries as the Web API client does (Retry-After included)."""
    url = req.context.response_url
    if url:
        req.context["respond"] = Respond(url)
    return await next()
