"""The Slack outbox's delivery: paced per channel, retried on failure, cards drawn when sent.

Rows are queued by bot/slack/notifier.py (and the digest, and `/refund report`) and kept in
the store (services/outbox.py), so a restart loses none. Posts to one channel go out about one
per second (Slack's chat.postMessage limit); a failed call (a 429 after the client's own
Retry-After retries, a 5xx, a lost link) keeps its row and tries again later. A case's card
row is rendered from the case's *current* state when it is sent, so several queued refreshes
of one card collapse into one call; a dispute's card likewise.

Each call is made under the correlation of the work that queued its row (`services.correlation`:
the webhook event or Slack request, the case), kept in memory from `add` to the send, and
logged on one line once sent; a row a previous run queued goes out under an id of its own
(`ob-...`) with its case.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import card_state, departure_post
from bot.slack.ui.disputes import issue_card
from services import correlation, faults
from services import outbox as posts
from services.disputes import issues
from services.outbox import Post
from services.refunds import cases
from services.store.db import Store, utcnow

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, store: Store, client: AsyncWebClient, *,
                 per_channel_interval: float = 1.0,
                 retry_after: timedelta = timedelta(seconds=5),
                 links: card_state.CardLinks = card_state.NO_LINKS) -> None:
        self.store = store
        self.links = links   # where a card's link buttons point
        self.client = client
        self.interval = per_channel_interval
        self.retry_after = retry_after
        self._last_post: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._origins: dict[int, correlation.Bound] = {}   # post id: who queued it (unsent)

    async def add(self, channel: str, kind: str, case_id: int | None,
                  payload: dict[str, Any] | None = None) -> None:
        post_id = await posts.add(self.store, channel, kind, case_id, payload)
        origin = correlation.current()
        if origin is not None:
            self._origins[post_id] = origin
        self._idle.clear()
        self._wake.set()

    async def add_once(self, channel: str, kind: str, case_id: int,
                       payload: dict[str, Any]) -> None:
        """Add unless the same row was added before (one thread reply per outcome)."""
        if not await posts.seen(self.store, kind, case_id, payload):
            await self.add(channel, kind, case_id, payload)

    async def add_file(self, channel: str, *, filename: str, title: str, content: bytes,
                       comment: str | None = None) -> None:
        """A file upload, paced and kept like any other post."""
        payload: dict[str, Any] = {"filename": filename, "title": title,
                                   "content_b64": base64.b64encode(content).decode()}
        if comment is not None:
            payload["text"] = comment
        await self.add(channel, "file", None, payload)

    async def start(self) -> None:
        """Send what a previous run left waiting right away, then keep sending."""
        await posts.make_all_due(self.store)
        self._idle.clear()  # the loop sets it again once nothing is due
        self._task = asyncio.create_task(self._run(), name="slack-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

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
        """Send every due row once, oldest first; True when something was attempted."""
        rows = await posts.due(self.store)
        done: set[int] = set()
        for row in rows:
            if row.id in done:
                continue
            await self._pace(row.channel)
            with self._correlated(row):
                try:
                    sent = await self._send(row)
                except SlackApiError as exc:
                    await self._failed(row, exc.response.get("error", "slack error"))
                except Exception as exc:  # keep the row, try again later
                    log.warning("slack post failed: %s", exc.__class__.__name__)
                    await self._failed(row, exc.__class__.__name__)
                else:
                    if sent:
                        log.info("slack %s sent to %s", row.kind, row.channel)
                    done |= sent
                    for post_id in sent:
                        self._origins.pop(post_id, None)
                finally:
                    self._last_post[row.channel] = time.monotonic()
        return bool(rows)

    def _correlated(self, row: Post) -> contextlib.AbstractContextManager[correlation.Bound]:
        """The correlation the row was queued under (a new one when this run did not queue
        it), its case bound."""
        origin = self._origins.get(row.id)
        if origin is None:
            return correlation.scope(correlation.new_id("ob"), case_id=row.case_id)
        return correlation.scope(origin.correlation_id, case_id=origin.case_id or row.case_id,
                                 booking_code=origin.booking_code)

    async def _pace(self, channel: str) -> None:
        """Wait until `interval` has passed since the last call to this channel ended."""
        wait = self._last_post.get(channel, 0.0) + self.interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _failed(self, row: Post, error: str) -> None:
        await posts.retry_later(self.store, row.id, error,
                                utcnow() + self.retry_after * (row.attempts + 1))

    async def _mark_sent(self, ids: list[int]) -> set[int]:
        await posts.mark_sent(self.store, ids)
        return set(ids)

    async def _send(self, row: Post) -> set[int]:
        faults.reached("before_slack_update")
        kind = row.kind
        if kind == "card":
            return await self._send_card(row)
        if kind == "compact":
            return await self._send_compact(row)
        if kind == "thread":
            return await self._send_thread(row)
        if kind == "issue":
            return await self._send_issue(row)
        if kind == "departure":   # a departure run's card (bot/slack/departure_post.py)
            return await self._mark_sent(await departure_post.send(self.store, self.client, row))
        payload = row.payload
        if kind == "file":
            await self.client.files_upload_v2(
                channel=row.channel, filename=payload["filename"], title=payload["title"],
                content=base64.b64decode(payload["content_b64"]),
                initial_comment=payload.get("text"))
            return await self._mark_sent([row.id])
        await self.client.chat_postMessage(channel=row.channel, text=payload["text"],
                                           blocks=payload.get("blocks"))
        return await self._mark_sent([row.id])

    async def _send_card(self, row: Post) -> set[int]:
        assert row.case_id is not None
        case = await cases.get(self.store, row.case_id)
        message = await card_state.render_card(self.store, case, self.links)
        existing = await posts.message_of(self.store, case.id)
        if existing is not None:
            await self.client.chat_update(channel=existing.channel, ts=existing.ts,
                                          text=message.text, blocks=message.blocks)
        else:
            answer = await self.client.chat_postMessage(channel=row.channel,
                                                        text=message.text, blocks=message.blocks)
            await posts.remember_card(self.store, case.id, answer["channel"], answer["ts"])
        return await self._mark_sent(await posts.unsent_for_case(self.store, "card", case.id))

    async def _send_issue(self, row: Post) -> set[int]:
        """A dispute or failed-payment card, drawn as the issue stands when it goes out; where
        it went is kept so that later changes update it in place. Every refresh of the same
        issue queued before it was drawn is answered by this one call."""
        same = {row.id, *await posts.unsent_with_payload(self.store, "issue", row.payload)}
        issue = await issues.get_issue(self.store, int(row.payload["issue_id"]))
        message = issue_card(issue)
        if issue.slack_channel and issue.slack_ts:
            await self.client.chat_update(channel=issue.slack_channel, ts=issue.slack_ts,
                                          text=message.text, blocks=message.blocks)
            return await self._mark_sent(sorted(same))
        answer = await self.client.chat_postMessage(channel=row.channel, text=message.text,
                                                    blocks=message.blocks)
        await issues.remember_card(self.store, issue.id, answer["channel"], answer["ts"])
        latest = issue_card(await issues.get_issue(self.store, issue.id))
        if latest.blocks != message.blocks:  # it changed while the post was on its way
            await self.client.chat_update(channel=answer["channel"], ts=answer["ts"],
                                          text=latest.text, blocks=latest.blocks)
        return await self._mark_sent(sorted(same))

    async def _send_compact(self, row: Post) -> set[int]:
        """Every compact line waiting for this channel goes out as one message."""
        rows = await posts.due_in_channel(self.store, "compact", row.channel)
        case_ids = [r.case_id for r in rows if r.case_id is not None]
        message = await card_state.render_compact(self.store, case_ids)
        answer = await self.client.chat_postMessage(channel=row.channel, text=message.text,
                                                    blocks=message.blocks)
        await posts.remember_compact(self.store, case_ids, answer["channel"], answer["ts"])
        return await self._mark_sent([r.id for r in rows])

    async def _send_thread(self, row: Post) -> set[int]:
        assert row.case_id is not None
        card = await posts.message_of(self.store, row.case_id)
        if card is None:  # the card is not out yet: try again after it
            await self._failed(row, "card not posted yet")
            return set()
        case = await cases.get(self.store, row.case_id)
        text = await card_state.thread_details(self.store, case)
        await self.client.chat_postMessage(channel=card.channel, thread_ts=card.ts, text=text)
        return await self._mark_sent([row.id])
