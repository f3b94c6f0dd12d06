"""The Teams outbox sender: stored rows out to the Bot Connector, paced per conversation.

Rows first (bot/teams/store.py); one task sends what is due, oldest first, through the SDK's
Connector client (`RestChannelServiceClientFactory` → `TeamsConnectorClient`, its bearer token
from the SDK's connection manager: the client-credentials flow). A card is drawn from the
case (or payment issue) as it stands when it goes out; the first post's activity id is kept,
and every later change edits that activity (`PUT`); an `update` row edits a given activity (a
pause alert once automation resumed). Pacing follows Teams' documented per-bot, per-conversation
limits (7 in 1 s, 8 in 2 s, 60 in 30 s, 1800 in an hour): a send waits until every window has
room. A 429 puts the row back for its Retry-After and holds the whole conversation that long;
a 5xx or network error is retried with doubling waits; any other refusal closes the row with
its error kept. A conversation not captured yet (the app not installed in that channel) waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from microsoft_agents.activity import Activity, ConversationReference
from microsoft_agents.hosting.core import ClaimsIdentity, RestChannelServiceClientFactory
from microsoft_agents.hosting.core.authorization import AuthenticationConstants, Connections

from bot.teams import store as rows
from bot.teams.store import TeamsPost
from services.store.db import Store

log = logging.getLogger(__name__)

CONNECTOR_AUDIENCE = AuthenticationConstants.AGENTS_SDK_SCOPE
LIMITS = ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0))   # (activities, seconds)
NOT_INSTALLED_WAIT = timedelta(seconds=30)

Draw = Callable[[TeamsPost], Awaitable[Activity | None]]


class Pacer:
    """Teams' per-conversation windows: how long until one more send fits in all of them."""

    def __init__(self, limits: tuple[tuple[int, float], ...] = LIMITS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._sent: dict[str, deque[float]] = {}
        self._held: dict[str, float] = {}

    def wait_for(self, conversation: str) -> float:
        now = self.clock()
        wait = max(0.0, self._held.get(conversation, 0.0) - now)
        sent = self._sent.get(conversation, deque())
        for limit, window in self.limits:
            recent = [t for t in sent if t > now - window]
            if len(recent) >= limit:
                wait = max(wait, recent[-limit] + window - now)
        return wait

    def sent(self, conversation: str) -> None:
        times = self._sent.setdefault(conversation, deque())
        times.append(self.clock())
        horizon = self.clock() - self.limits[-1][1]
        while times and times[0] < horizon:
            times.popleft()

    def hold(self, conversation: str, seconds: float) -> None:
        self._held[conversation] = max(self._held.get(conversation, 0.0),
                                       self.clock() + seconds)


class TeamsOutbox:
    def __init__(self, store: Store, connections: Connections, app_id: str,
                 pacer: Pacer | None = None) -> None:
        self.store = store
        self.app_id = app_id
        self.factory = RestChannelServiceClientFactory(connections)
        self.pacer = pacer or Pacer()
        self.draw: Draw | None = None      # set by the notifier: a row → the activity to send
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.throttled = 0                 # 429s met (the tests and metrics read it)

    # --- queueing ---------------------------------------------------------------------------

    async def add(self, target: str, kind: str, case_id: int | None,
                  payload: dict[str, Any] | None = None, *, once: str | None = None) -> None:
        if await rows.add(self.store, target, kind, case_id, payload, once=once) is not None:
            self._wake.set()

    async def add_once(self, target: str, kind: str, case_id: int,
                       payload: dict[str, Any]) -> None:
        if not await rows.seen(self.store, kind, case_id, payload):
            await self.add(target, kind, case_id, payload)

    # --- running ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="teams-outbox")

    async def stop(self, grace: float = 0.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self.drain(), timeout=grace) if grace > 0 else None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def drain(self, within: float = 10.0) -> None:
        """Until nothing is due (the tests and the demo wait on it)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not await rows.due(self.store):
                return
            self._wake.set()
            await asyncio.sleep(0.02)
        raise TimeoutError("Teams outbox still has posts due")

    async def _run(self) -> None:
        while True:
            try:
                await self.send_due()
            except Exception:   # the loop must outlive one bad turn
                log.exception("teams outbox turn failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=await self._sleep())

    async def _sleep(self) -> float:
        at = await rows.next_due_at(self.store)
        if at is None:
            return 60.0
        left = (datetime.fromisoformat(at) - datetime.now(UTC)).total_seconds()
        return min(60.0, max(0.02, left))

    async def send_due(self) -> None:
        for post in await rows.due(self.store):
            await self._send(post)

    async def _send(self, post: TeamsPost) -> None:
        conv = await rows.conversation_for(self.store, post.target)
        if conv is None:
            await rows.retry_later(self.store, post.id, "no conversation reference yet: add "
                                   "the app to that team", _utc_in(NOT_INSTALLED_WAIT))
            return
        wait = self.pacer.wait_for(conv.conversation_id)
        if wait > 0:
            await asyncio.sleep(wait)
        assert self.draw is not None, "the notifier sets draw"
        activity = await self.draw(post)
        if activity is None:   # nothing to show any more (drawn from the current state)
            await rows.mark_sent(self.store, [post.id])
            return
        try:
            activity_id = await self._deliver(conv, post, activity)
        except aiohttp.ClientResponseError as exc:
            await self._failed(post, conv.conversation_id, exc)
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            await rows.retry_later(self.store, post.id, exc.__class__.__name__,
                                   _utc_in(_backoff(post.attempts)))
            return
        finally:
            self.pacer.sent(conv.conversation_id)
        slot = _slot(post)
        if slot is not None and activity_id:
            await rows.remember_activity(self.store, slot[0], slot[1], conv.conversation_id,
                                         activity_id)
        ids = [post.id]
        if post.kind == "card" and post.case_id is not None:   # one send answers them all
            ids += [i for i in await rows.unsent_for_case(self.store, "card", post.case_id)
                    if i != post.id]
        await rows.mark_sent(self.store, ids)

    async def _deliver(self, conv: rows.Conversation, post: TeamsPost,
                       activity: Activity) -> str | None:
        reference = ConversationReference.model_validate(conv.reference)
        activity.apply_conversation_reference(reference, is_incoming=False)
        identity = ClaimsIdentity({AuthenticationConstants.AUDIENCE_CLAIM: self.app_id,
                                   AuthenticationConstants.APP_ID_CLAIM: self.app_id},
                                  authentication_type="client_credentials")
        client = await self.factory.create_connector_client(
            None, identity, conv.service_url, CONNECTOR_AUDIENCE)
        try:
            slot = _slot(post)
            existing = await rows.activity_of(self.store, *slot) if slot is not None else None
            conversations = client.conversations
            if post.kind == "update" or existing is not None:
                target_id = existing.activity_id if existing else post.payload["activity_id"]
                activity.id = target_id
                await conversations.update_activity(conv.conversation_id, target_id, activity)
                return target_id
            reply_to = post.payload.get("reply_to")
            if reply_to:
                sent = await conversations.reply_to_activity(conv.conversation_id, reply_to,
                                                             activity)
            else:
                sent = await conversations.send_to_conversation(conv.conversation_id, activity)
            return sent.id if sent is not None else None
        finally:
            await client.close()

    async def _failed(self, post: TeamsPost, conversation: str,
                      exc: aiohttp.ClientResponseError) -> None:
        error = f"Teams answered {exc.status}"
        if exc.status == 429:
            self.throttled += 1
            wait = _retry_after(exc.headers)
            self.pacer.hold(conversation, wait)
            await rows.retry_later(self.store, post.id, error,
                                   _utc_in(timedelta(seconds=wait)))
        elif exc.status >= 500:
            await rows.retry_later(self.store, post.id, error, _utc_in(_backoff(post.attempts)))
        else:
            log.warning("teams post refused for good: %s (%s)", error, post.kind)
            await rows.give_up(self.store, post.id, error)


def _slot(post: TeamsPost) -> tuple[int, str] | None:
    """Where the activity a row shows is remembered (`teams_messages`), so later rows edit it:
    a case's card or compact line, a payment issue's card, a pause alert (until resumed)."""
    if post.kind in ("card", "compact") and post.case_id is not None:
        return post.case_id, post.kind
    if post.kind == "issue":
        return int(post.payload["issue_id"]), rows.ISSUE
    if post.kind == "alert" and "pause" in post.payload:
        return 0, rows.PAUSE + post.id
    return None


def _retry_after(headers: Any) -> float:
    try:
        return max(0.0, float((headers or {}).get("Retry-After", "1")))
    except (TypeError, ValueError):
        return 1.0


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(300.0, 2.0 ** attempts))


def _utc_in(wait: timedelta) -> datetime:
    return datetime.now(UTC) + wait
