"""A Slack post made once though its answer may be lost.

Slack's chat.postMessage takes no idempotency key: a post whose answer is lost (a dropped
link, a 5xx after Slack posted it, the bot killed before the row was marked sent) was posted
again on the next try, and a case could show two approval cards, one of them never updated.
So every post of an outbox row carries the row's id in the message's metadata (event type
`refund_bot_post`), and the outbox marks a row before its first attempt (`sending_at`). A row
that has the mark may be in Slack already: before posting it again, `PostOnce` reads the
channel's history since the first attempt (a thread's replies for a reply), with metadata, and
a message carrying the row's id is taken as the answer: its channel and ts are remembered as a
fresh post's would be. When the history cannot be read (no `channels:history` scope, a private
channel without `groups:history`), the post is made, twice at worst, as before, and the log
says so.

For the same reason a post is never retried blind inside the Web API client: its retry
handlers (bot/slack/delivery.py) leave a post's 5xx and lost links alone (a retry would post
again) and retry its 429 (Slack carried nothing out). The outbox tries such a row again,
looking first.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from services import faults
from services.outbox import Post

log = logging.getLogger("bot.slack.outbox")

EVENT_TYPE = "refund_bot_post"
POST_METHOD = "chat.postMessage"
LOOK_BACK_SECONDS = 120   # before the first attempt: our clock and Slack's may differ
HISTORY_LIMIT = 200       # the channel's posts since then, at one post a second at most


class PostOnce:
    """The Web API client for one outbox row: its chat.postMessage carries the row's id and,
    for a row tried before, finds the post already made instead of making another; every
    other call goes to `client` as it is."""

    def __init__(self, client: AsyncWebClient, post: Post) -> None:
        self._client, self._post = client, post

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def chat_postMessage(self, *, channel: str, **kwargs: Any) -> Any:
        kwargs.setdefault("metadata", {"event_type": EVENT_TYPE,
                                       "event_payload": {"post": self._post.id}})
        if self._post.sending_at is not None:
            found = await self._posted(channel, kwargs.get("thread_ts"))
            if found is not None:
                log.info("slack post %s was made before its answer was lost: not made again",
                         self._post.id)
                return {"ok": True, "channel": channel, "ts": found["ts"], "message": found}
        answer = await self._client.chat_postMessage(channel=channel, **kwargs)
        faults.reached("after_slack_post")   # the crash suite's: posted, not yet recorded
        return answer

    async def _posted(self, channel: str, thread_ts: str | None) -> dict[str, Any] | None:
        """The message in `channel` that carries this row's id, if Slack has one."""
        assert self._post.sending_at is not None
        since = datetime.fromisoformat(self._post.sending_at).timestamp() - LOOK_BACK_SECONDS
        window = {"oldest": f"{since:.6f}", "include_all_metadata": True,
                  "limit": HISTORY_LIMIT}
        try:
            if thread_ts:
                answer = await self._client.conversations_replies(channel=channel,
                                                                  ts=thread_ts, **window)
            else:
                answer = await self._client.conversations_history(channel=channel, **window)
        except SlackApiError as exc:
            log.warning("slack post %s may have been made already, but %s's history could not "
                        "be read (%s): posting it", self._post.id, channel,
                        exc.response.get("error"))
            return None
        for message in answer.get("messages") or []:
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == EVENT_TYPE and \
                    (metadata.get("event_payload") or {}).get("post") == self._post.id:
                return dict(message)
        return None
