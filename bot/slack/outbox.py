"""The Slack outbox's delivery: paced per channel, retried on failure, cards drawn when sent.
This module decides which row goes when; bot/slack/senders.py makes each row's Slack calls.

Rows are queued by bot/slack/notifier.py (and the digest, and `/refund report`) and kept in
the store (services/outbox.py), so a restart loses none. Posts to one channel go out about one
per second (Slack's chat.postMessage limit); a failed call (a 429 after the client's own
Retry-After retries, a 5xx, a lost link) keeps its row and tries again later. A case's card
row is rendered from the case's *current* state when it is sent, so several queued refreshes
of one card collapse into one call; a dispute's card likewise. A row may reply in a thread
(`thread_ts`: a waiting card's reminder); an `ephemeral` row is a private note to one person
(the one who asked for a refund), given up when Slack says it can never be delivered.

Each call is made under the correlation of the work that queued its row (`services.correlation`:
the webhook event or Slack request, the case), kept in memory from `add` to the send, and
logged on one line once sent; a row a previous run queued goes out under an id of its own
(`ob-...`) with its case.

The priority lane: a row added inside `urgent()` (a click's own feedback: the card update after
Approve, Deny or Adjust, the alert after Resume) is sent before every row still queued, even in
the middle of a pass, and still no sooner than the channel's interval allows. Which rows are
urgent is kept in memory only: after a restart every row is due at once anyway.

Slack's `Retry-After` is honoured on every retry: a 429 that outlasts the client's own retries
holds its channel (no call to it before the time Slack gave) and its row is tried again no
sooner. A refusal no retry can fix (`not_in_channel`, `channel_not_found`, ...) closes the row
(`give_up`); a row that carries a `response_url` (a `/refund report` upload) then answers the
person who asked, privately, with the fix.

Several instances on one store: one sender holds a channel at a time (a named lease,
`services.store.leases`, `channel:<id>`), so the channel's pace is one sender's, under Slack's
limit however many instances run. A pass sends the due rows of the channels it holds or can
take (its rows read once they are held), leaves the others' rows to their holder, renews its
leases as it goes (a channel lost meanwhile is left for the next pass), and at its end
hands each channel back, free to take once that channel's interval has passed since its last
post. Every row of a channel is sent by its holder only, so no two instances send one row.

A pause alert (an `alert` row with a `pause`) is remembered once posted; a resumed alert (with a
`resume`) updates each remembered one in place to say so, without its Resume button.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, cast

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.slack import card_state, senders
from bot.slack.post_once import PostOnce
from bot.slack.ui import notes
from services import correlation
from services import outbox as posts
from services.outbox import Post
from services.store import leases
from services.store.db import Store, utcnow

log = logging.getLogger(__name__)
_URGENT: ContextVar[bool] = ContextVar("slack_outbox_urgent", default=False)
# Slack's answers that no retry can change: the row is given up (and the asker told, if any)
REFUSED_FOR_GOOD = frozenset({"not_in_channel", "channel_not_found", "messages_tab_disabled",
                              "is_archived", "cannot_dm_bot", "invalid_blocks",
                              "restricted_action", "not_allowed_token_type", "invalid_auth"})
Reply = Callable[[str, str], Awaitable[Any]]  # (response_url, text): answer someone privately


class Outbox:
    def __init__(self, store: Store, client: AsyncWebClient, *,
                 per_channel_interval: float = 1.0,
                 retry_after: timedelta = timedelta(seconds=5),
                 links: card_state.CardLinks = card_state.NO_LINKS,
                 reply: Reply | None = None) -> None:
        self.store = store
        self.links = links   # where a card's link buttons point
        self.client = client
        self.interval = per_channel_interval
        self.retry_after = retry_after
        self.reply = reply or self._reply
        self._last_post: dict[str, float] = {}
        self._held: dict[str, float] = {}   # channel: monotonic time Slack said to wait until
        self._urgent: set[int] = set()      # ids of rows added inside `urgent()`, not sent yet
        self._jump = asyncio.Event()        # set when an urgent row is added
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._origins: dict[int, correlation.Bound] = {}   # post id: who queued it (unsent)
        self._leased: dict[str, float] = {}   # channel: monotonic time its lease was taken
        self._pass_channels: set[str] = set()  # held since this pass read its rows

    @staticmethod
    @contextlib.contextmanager
    def urgent() -> Iterator[None]:
        """Rows added inside (in this task and the tasks it starts) take the priority lane."""
        token = _URGENT.set(True)
        try:
            yield
        finally:
            _URGENT.reset(token)

    async def add(self, channel: str, kind: str, case_id: int | None,
                  payload: dict[str, Any] | None = None, *, once: str | None = None) -> None:
        """Queue a post; with a `once` key, only if no post with that key was queued before."""
        post_id = await posts.add(self.store, channel, kind, case_id, payload, once=once)
        if post_id is None:
            return
        origin = correlation.current()
        if origin is not None:
            self._origins[post_id] = origin
        if _URGENT.get():
            self._urgent.add(post_id)
            self._jump.set()
        self._idle.clear()
        self._wake.set()

    async def add_once(self, channel: str, kind: str, case_id: int,
                       payload: dict[str, Any]) -> None:
        """Add unless the same row was added before (one thread reply per outcome)."""
        if not await posts.seen(self.store, kind, case_id, payload):
            await self.add(channel, kind, case_id, payload)

    async def add_file(self, channel: str, *, filename: str, title: str, content: bytes,
                       comment: str | None = None, response_url: str | None = None,
                       once: str | None = None) -> None:
        """A file upload, paced and kept like any other post. Given the `response_url` of the
        request that asked for it, a refusal for good is answered there, privately."""
        payload: dict[str, Any] = {"filename": filename, "title": title,
                                   "content_b64": base64.b64encode(content).decode()}
        if comment is not None:
            payload["text"] = comment
        if response_url:
            payload["response_url"] = response_url
        await self.add(channel, "file", None, payload, once=once)

    async def start(self) -> None:
        """Send what a previous run left waiting right away, then keep sending."""
        await posts.make_all_due(self.store)
        self._idle.clear()  # the loop sets it again once nothing is due
        self._task = asyncio.create_task(self._run(), name="slack-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self._hand_back()
        except Exception:   # they pass by themselves
            log.warning("stopping: the Slack channels held were not handed back")

    async def drain(self) -> None:
        """Wait until every due row is sent (tests and shutdown)."""
        await self._idle.wait()

    @property
    def running(self) -> bool:
        """Whether its sending loop runs (started, not stopped, not crashed)."""
        return self._task is not None and not self._task.done()

    @property
    def last_attempt(self) -> float | None:
        """When (monotonic) its last call to Slack ended, None before the first."""
        return max(self._last_post.values(), default=None)

    async def pending(self) -> list[Post]:
        return await posts.unsent(self.store)

    async def _run(self) -> None:
        while True:
            try:
                sent_any = await self.flush()
            except Exception:
                log.exception("slack outbox pass failed")
                sent_any = False
            if not sent_any:
                if await posts.next_due_at(self.store) is None:
                    self._idle.set()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    async def flush(self) -> bool:
        """Send every due row once, oldest first, an urgent row before any other (also one
        added during the pass); True when something was attempted."""
        try:
            for channel in dict.fromkeys(r.channel for r in await posts.due(self.store)):
                await self._hold(channel)
            # read again once held: no other instance sends these channels' rows meanwhile
            self._pass_channels = set(self._leased)
            queue = deque(r for r in await posts.due(self.store)
                          if r.channel in self._pass_channels) if self._leased else deque()
            return await self._pass(queue)
        finally:
            await self._hand_back()

    async def _pass(self, queue: deque[Post]) -> bool:
        done: set[int] = set()
        attempted = False
        while (row := await self._next(queue, done)) is not None:
            attempted = True
            with self._correlated(row):
                try:
                    sent = await self._send(row)
                except SlackApiError as exc:
                    await self._refused(row, exc)
                except Exception as exc:  # keep the row, try again later
                    log.warning("slack post failed: %s", exc.__class__.__name__)
                    await self._failed(row, exc.__class__.__name__)
                else:
                    if sent:
                        log.info("slack %s sent to %s", row.kind, row.channel)
                    done |= sent
                    for post_id in sent:
                        self._origins.pop(post_id, None)
                        self._urgent.discard(post_id)
                finally:
                    self._last_post[row.channel] = time.monotonic()
                    self._urgent.discard(row.id)
        return attempted

    async def _next(self, queue: deque[Post], done: set[int]) -> Post | None:
        """The row to send now: an urgent one first, else the oldest queued; None when this
        pass is over. It waits out its channel's interval here, and an urgent row added while
        a queued one waits goes first. A row of a channel Slack asked to wait is left for a
        later pass."""
        while True:
            self._jump.clear()
            urgent = [r for r in await posts.due_among(self.store, sorted(self._urgent))
                      if r.id not in done and not self._is_held(r.channel)
                      and await self._hold(r.channel)]
            while queue and (queue[0].id in done or self._is_held(queue[0].channel)
                             or queue[0].channel not in self._pass_channels
                             or not await self._hold(queue[0].channel)):
                queue.popleft()
            if urgent:
                row = urgent[0]
            elif queue:
                row = queue[0]
            else:
                return None
            wait = self._wait(row.channel)
            if wait > 0:
                if urgent:
                    await asyncio.sleep(wait)
                else:  # an urgent row may come meanwhile: it goes first
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._jump.wait(), timeout=wait)
                continue
            if queue and queue[0].id == row.id:
                queue.popleft()
            return row

    def _correlated(self, row: Post) -> contextlib.AbstractContextManager[correlation.Bound]:
        """The correlation the row was queued under (a new one when this run did not queue
        it), its case bound."""
        origin = self._origins.get(row.id)
        if origin is None:
            return correlation.scope(correlation.new_id("ob"), case_id=row.case_id)
        return correlation.scope(origin.correlation_id, case_id=origin.case_id or row.case_id,
                                 booking_code=origin.booking_code)

    def _wait(self, channel: str) -> float:
        """How long until `interval` has passed since the last call to this channel ended."""
        return self._last_post.get(channel, 0.0) + self.interval - time.monotonic()

    async def _hold(self, channel: str) -> bool:
        """Whether this instance sends to `channel` now: it holds the channel's lease (taken
        now, or renewed when a third of it has gone), else another instance does."""
        taken = self._leased.get(channel)
        me = leases.this()
        if taken is not None and time.monotonic() - taken < me.lease.total_seconds() / 3:
            return True
        if (await leases.take(self.store, leases.CHANNEL + channel, utcnow(), me)).held:
            self._leased[channel] = time.monotonic()
            return True
        self._leased.pop(channel, None)
        self._pass_channels.discard(channel)   # this pass's rows of it may be stale now
        return False

    async def _hand_back(self) -> None:
        """The end of a pass: every channel held is free for another instance once its
        interval has passed since this one's last post to it."""
        held, self._leased = self._leased, {}
        for channel in held:
            free_at = utcnow() + timedelta(seconds=max(0.0, self._wait(channel)))
            await leases.release(self.store, leases.CHANNEL + channel, free_at=free_at)

    def _is_held(self, channel: str) -> bool:
        return self._held.get(channel, 0.0) > time.monotonic()

    async def _refused(self, row: Post, exc: SlackApiError) -> None:
        """Slack said no: after a 429, hold the channel and try again no sooner than Slack
        said; a refusal for good closes the row (answering whoever asked for it); anything
        else is tried again later."""
        error = str(exc.response.get("error") or "slack error")
        wait = retry_after_of(exc.response.headers) if exc.response.status_code == 429 \
            else None
        if wait is not None:
            self._held[row.channel] = time.monotonic() + wait
            log.warning("slack rate limited a %s post: retrying in %.0f s", row.kind, wait)
        if error in REFUSED_FOR_GOOD:
            log.warning("slack refused a %s post for good: %s", row.kind, error)
            await posts.give_up(self.store, row.id, error)
            url = row.payload.get("response_url")
            if url:
                try:
                    await self.reply(str(url), notes.upload_refused(row.channel, error))
                except Exception as reply_exc:  # the answer is a courtesy; the row is closed
                    log.warning("could not answer a refused upload: %s",
                                reply_exc.__class__.__name__)
            return
        await self._failed(row, error, not_before=wait)

    async def _failed(self, row: Post, error: str, not_before: float | None = None) -> None:
        backoff = self.retry_after * (row.attempts + 1)
        if not_before is not None:
            backoff = max(backoff, timedelta(seconds=not_before))
        await posts.retry_later(self.store, row.id, error, utcnow() + backoff)

    async def _reply(self, url: str, text: str) -> None:
        """An ephemeral answer through a response URL, retried as the Web API client is."""
        webhook = AsyncWebhookClient(url, retry_handlers=list(self.client.retry_handlers))
        answer = await webhook.send(text=text, response_type="ephemeral",
                                    replace_original=False)
        if answer.status_code != 200:
            log.warning("a response URL answered %s", answer.status_code)

    async def _send(self, row: Post) -> set[int]:
        """The row's Slack calls (bot/slack/senders.py); the ids of the rows they answered.
        From its first attempt on, a row may be in Slack though no answer said so: its posts
        look for it first when tried again (bot/slack/post_once.py)."""
        if row.sending_at is None:
            await posts.mark_sending(self.store, row.id)
        client = cast(AsyncWebClient, PostOnce(self.client, row))
        return await senders.send(row, self.store, client, self.links, self._failed)


def retry_after_of(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from a `Retry-After` header (any case; a list of values as the SDK keeps them);
    None when there is none or it is not a number of seconds."""
    for name, value in (headers or {}).items():
        if name.lower() != "retry-after":
            continue
        first = value[0] if isinstance(value, list | tuple) and value else value
        try:
            seconds = float(str(first).strip())
        except ValueError:
            return None
        return max(seconds, 0.0)
    return None
