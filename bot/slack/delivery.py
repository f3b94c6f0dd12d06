"""Slack delivery: the Web API client with its retries, `respond` with the same retries, and
`SlackDelivery` (the client, the paced outbox and the notifier that fills it).

Every Slack call retries a 429 after its Retry-After, a 5xx (after its Retry-After when Slack
sent one) and a lost link; a post, only the 429 (it is looked for before being made again).
`SlackDelivery` is built from the store before the `Deps`, which take its notifier;
`bot.slack.runtime` builds the Bolt app on top of it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient, WebhookResponse

from bot.settings import Settings
from bot.slack.notifier import Channels, SlackNotifier
from bot.slack.outbox import Outbox, retry_after_of
from bot.slack.post_once import POST_METHOD
from bot.slack.ui.links import CardLinks
from services.store.db import Store


def _a_post(request: HttpRequest) -> bool:
    """chat.postMessage, which a 5xx or a lost link may have carried out: never tried again
    blind (it would post twice); the outbox tries its row again, looking first
    (bot/slack/post_once.py)."""
    return request.url.endswith("/" + POST_METHOD)


class ConnectionErrorRetryHandler(AsyncConnectionErrorRetryHandler):
    """Retries a lost link, but not of a post."""

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None,
                               error: Exception | None = None) -> bool:
        return not _a_post(request) and await super()._can_retry_async(
            state=state, request=request, response=response, error=error)


class ServerErrorRetryHandler(AsyncServerErrorRetryHandler):
    """Retries a 500 or 503 (not of a post) after the `Retry-After` Slack sent with it, if any
    (the SDK's own handler always backs off by its own clock)."""

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None,
                               error: Exception | None = None) -> bool:
        return not _a_post(request) and await super()._can_retry_async(
            state=state, request=request, response=response, error=error)

    async def prepare_for_next_attempt_async(self, *, state: RetryState, request: HttpRequest,
                                             response: HttpResponse | None = None,
                                             error: Exception | None = None) -> None:
        wait = retry_after_of(response.headers) if response is not None else None
        if wait is None:
            await super().prepare_for_next_attempt_async(
                state=state, request=request, response=response, error=error)
            return
        state.next_attempt_requested = True
        await asyncio.sleep(wait)
        state.increment_current_attempt()


def retry_handlers() -> list[AsyncRetryHandler]:
    """Every Slack call's retries: 429 after its Retry-After, 5xx (after its Retry-After when
    sent), lost links; of a post (chat.postMessage), the 429's only (Slack carried nothing
    out). The Web API client, response URLs and the outbox's answers share them."""
    return [ConnectionErrorRetryHandler(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2)]


def web_client(token: str | None, base_url: str | None = None) -> AsyncWebClient:
    """The Web API client with retries on 429 (honouring Retry-After), 5xx and lost links."""
    return AsyncWebClient(token=token, base_url=base_url or AsyncWebClient.BASE_URL,
                          retry_handlers=retry_handlers())


class Respond:
    """Bolt's `respond` (an answer through the request's response URL), with the Web API
    client's retries: a 429 is tried again after its Retry-After instead of being lost."""

    def __init__(self, response_url: str) -> None:
        self.response_url = response_url

    async def __call__(self, text: str = "", blocks: list[dict[str, Any]] | None = None,
                       response_type: str | None = None, replace_original: bool | None = None,
                       delete_original: bool | None = None,
                       thread_ts: str | None = None) -> WebhookResponse:
        body = {"text": text, "blocks": blocks, "response_type": response_type,
                "replace_original": replace_original, "delete_original": delete_original,
                "thread_ts": thread_ts}
        webhook = AsyncWebhookClient(self.response_url, retry_handlers=retry_handlers())
        return await webhook.send_dict({k: v for k, v in body.items() if v is not None})


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
                            api_base_url(settings))
        outbox = Outbox(store, client, per_channel_interval=settings.slack_post_interval_seconds,
                        links=CardLinks.of(settings.checkfront_base_url,
                                           settings.stripe_secret_key.get_secret_value()))
        channels = Channels(approvals=settings.slack_approvals_channel,
                            digest=settings.slack_digest_channel or
                            settings.slack_approvals_channel)
        return cls(client=client, outbox=outbox,
                   notifier=SlackNotifier(store, channels, outbox))


def api_base_url(settings: Settings) -> str | None:
    base = settings.slack_api_base
    return base.rstrip("/") + "/" if base else None
