"""The Slack runtime: the Bolt app, its listeners, and the delivery (client, outbox, notifier).

A Bolt AsyncApp in the same aiohttp process (HTTP mode, `/slack/events`), or over Socket Mode
when SLACK_APP_TOKEN is set, with the same listeners either way. `SlackDelivery` (the Web API
client, the paced outbox and the notifier) is built before the `Deps`, which take its notifier.

`process_before_response=True`: Bolt answers Slack when the listener returns, and every
listener only acks and hands its work to the worker, so the answer leaves in well under a
millisecond of our own time instead of Bolt's default ack polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack.notifier import Channels, SlackNotifier
from bot.slack.outbox import Outbox
from bot.worker import Worker
from handlers.slack import actions, commands, disputes, home, intake, views
from handlers.slack.deps import GroupMembers, SlackDeps
from services.deps import Deps
from services.refunds.permissions import ApproverRules
from services.store.db import Store

log = logging.getLogger(__name__)
GROUP_REFRESH_SECONDS = 300


def web_client(token: str | None, base_url: str | None = None) -> AsyncWebClient:
    """The Web API client with retries on 429 (honouring Retry-After), 5xx and lost links."""
    client = AsyncWebClient(token=token, base_url=base_url or AsyncWebClient.BASE_URL)
    client.retry_handlers.extend([
        AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        AsyncServerErrorRetryHandler(max_retry_count=2),
    ])
    if not any(isinstance(h, AsyncConnectionErrorRetryHandler) for h in client.retry_handlers):
        client.retry_handlers.append(AsyncConnectionErrorRetryHandler())
    return client


@dataclass(frozen=True)
class SlackDelivery:
    """The bot's Web API client, the paced outbox and the notifier that fills it.

    Built from the store before the `Deps`, which are given this notifier.
    """

    client: AsyncWebClient
    outbox: Outbox
    notifier: SlackNotifier

    @classmethod
    def build(cls, settings: Settings, store: Store) -> SlackDelivery:
        assert settings.slack_bot_token is not None
        client = web_client(settings.slack_bot_token.get_secret_value(),
                            _base_url(settings))
        outbox = Outbox(store, client, per_channel_interval=settings.slack_post_interval_seconds)
        channels = Channels(approvals=settings.slack_approvals_channel,
                            digest=settings.slack_digest_channel or
                            settings.slack_approvals_channel)
        return cls(client=client, outbox=outbox,
                   notifier=SlackNotifier(store, channels, outbox))


def _base_url(settings: Settings) -> str | None:
    base = settings.slack_api_base
    return base.rstrip("/") + "/" if base else None


@dataclass
class SlackRuntime:
    app: AsyncApp
    deps: SlackDeps
    outbox: Outbox
    notifier: SlackNotifier
    socket_mode_token: str | None
    _tasks: list[asyncio.Task[Any]]
    _socket: Any = None

    @classmethod
    def build(cls, settings: Settings, svc: Deps, worker: Worker,
              delivery: SlackDelivery) -> SlackRuntime:
        assert settings.slack_bot_token is not None
        signing = settings.slack_signing_secret.get_secret_value() \
            if settings.slack_signing_secret else None
        token = settings.slack_bot_token.get_secret_value()

        async def authorize(enterprise_id: str | None, team_id: str | None,
                            **_: Any) -> AuthorizeResult:
            # one workspace, one bot token: no auth.test call on any request's path
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

        app = AsyncApp(
            client=web_client(None, _base_url(settings)),  # a template; `authorize` gives the token
            authorize=authorize,
            signing_secret=signing,
            process_before_response=True,
            request_verification_enabled=signing is not None,
        )
        rules = ApproverRules.parse(
            approvers=settings.slack_approvers, group_id=settings.slack_approver_group,
            group_max=settings.slack_approver_group_max,
            finance_leads=settings.slack_finance_leads,
            no_self_approval=settings.slack_no_self_approval)
        deps = SlackDeps(svc=svc, worker=worker, client=delivery.client, rules=rules,
                         groups=GroupMembers(rules.group_id), notifier=delivery.notifier,
                         outbox=delivery.outbox, zone=settings.zone)
        app.middleware(_skip_slack_retries)
        actions.register(app, deps)
        views.register(app, deps)
        commands.register(app, deps)
        disputes.register(app, deps)
        home.register(app, deps)
        intake.register(app, deps)
        app_token = settings.slack_app_token.get_secret_value() \
            if settings.slack_app_token else None
        return cls(app=app, deps=deps, outbox=delivery.outbox, notifier=delivery.notifier,
                   socket_mode_token=app_token, _tasks=[])

    def mount(self, web_app: web.Application, path: str = "/slack/events") -> None:
        if self.socket_mode_token is None:
            web_app.router.add_post(path, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        bolt_response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def start(self) -> None:
        await self.outbox.start()
        self._tasks.append(asyncio.create_task(self._refresh_groups(), name="slack-groups"))
        if self.socket_mode_token is not None:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            self._socket = AsyncSocketModeHandler(self.app, self.socket_mode_token)
            await self._socket.connect_async()

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.outbox.drain(), timeout=5)
        await self.outbox.stop()

    async def _refresh_groups(self) -> None:
        while True:
            await self.deps.groups.refresh(self.deps.client)
            await asyncio.sleep(GROUP_REFRESH_SECONDS)


async def _skip_slack_retries(req: Any, resp: Any, next: Any) -> Any:
    """Slack re-sends a request it thinks timed out; the first one is already handled.

    Over Socket Mode every envelope carries a retry number, 0 for the first delivery.
    """
    retry = req.headers.get("x-slack-retry-num")
    if retry and retry[0].strip() not in ("", "0"):
        return BoltResponse(status=200, body="")
    return await next()
