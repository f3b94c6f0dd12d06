"""The Slack outbox's calls: one queued row of each kind sent, and the rows it answers marked
sent. `bot/slack/outbox.py` chooses which row goes when (pace, priority, leases, retries);
`send` makes its Slack calls and returns the ids of the rows answered (more than the one given
where one call answers several: a card's queued refreshes, an issue's, a channel's compact
lines; none where the row must wait, as a thread reply before its card is out).

A card, compact list or dispute card is drawn from the current state when it goes out
(`card_state`, `issues`); a departure run's card by `departure_post`; an upload, a pause alert,
its resumed update and a private note as queued. A Slack refusal raises (`SlackApiError`) for
the outbox to judge, except a private note Slack can never deliver, which is given up here.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import card_state, departure_post
from bot.slack.ui import cards
from bot.slack.ui.disputes import issue_card
from services import faults
from services import outbox as posts
from services.disputes import issues
from services.outbox import Post
from services.refunds import cases
from services.store.db import Store

log = logging.getLogger("bot.slack.outbox")  # the outbox's log lines, as before they moved here
Later = Callable[[Post, str], Awaitable[None]]  # (row, why): keep the row, try it again later

# what chat.postEphemeral answers when the note can never be delivered
UNDELIVERABLE = frozenset({"user_not_in_channel", "channel_not_found", "not_in_channel",
                           "is_archived", "user_not_found"})


async def send(row: Post, store: Store, client: AsyncWebClient,
               links: card_state.CardLinks, later: Later) -> set[int]:
    """Send one row by its kind; the ids of the rows this answered, marked sent (none when
    `later` was asked to keep it for another try). A crash test's fault point comes first."""
    faults.reached("before_slack_update")
    kind = row.kind
    if kind == "card":
        return await _send_card(row, store, client, links)
    if kind == "compact":
        return await _send_compact(row, store, client)
    if kind == "thread":
        return await _send_thread(row, store, client, later)
    if kind == "issue":
        return await _send_issue(row, store, client)
    if kind == "departure":   # a departure run's card (bot/slack/departure_post.py)
        return await _mark_sent(store, await departure_post.send(store, client, row))
    payload = row.payload
    if kind == "file":
        await client.files_upload_v2(
            channel=row.channel, filename=payload["filename"], title=payload["title"],
            content=base64.b64decode(payload["content_b64"]),
            initial_comment=payload.get("text"))
        return await _mark_sent(store, [row.id])
    if kind == "unpause":
        return await _send_unpause(row, store, client)
    if kind == "ephemeral":
        return await _send_ephemeral(row, store, client)
    answer = await client.chat_postMessage(channel=row.channel, text=payload["text"],
                                                blocks=payload.get("blocks"),
                                                thread_ts=payload.get("thread_ts"))
    if isinstance(payload.get("pause"), dict):   # resuming will update it in place
        await posts.remember_pause_alert(store, answer["channel"], answer["ts"],
                                         payload["pause"])
    return await _mark_sent(store, [row.id])


async def _mark_sent(store: Store, ids: list[int]) -> set[int]:
    await posts.mark_sent(store, ids)
    return set(ids)


async def _send_unpause(row: Post, store: Store, client: AsyncWebClient) -> set[int]:
    """Every pause alert still showing Resume now says who resumed and when, without the
    button; each is forgotten once updated, so a retry updates only the others."""
    resumed = row.payload
    for alert in await posts.pause_alerts(store):
        message = cards.automation_alert(
            True, str(alert.get("reason") or ""), str(alert.get("by") or ""), [],
            resumed_by=str(resumed.get("by") or ""), resumed_at=resumed.get("at"))
        await client.chat_update(channel=alert["channel"], ts=alert["ts"],
                                      text=message.text, blocks=message.blocks)
        await posts.forget_pause_alert(store, alert["channel"], alert["ts"])
    return await _mark_sent(store, [row.id])


async def _send_ephemeral(row: Post, store: Store, client: AsyncWebClient) -> set[int]:
    """A private note to one person in a channel (or its thread). One Slack will never
    deliver (the person or the bot left the channel) is given up, not retried."""
    payload = row.payload
    try:
        await client.chat_postEphemeral(channel=row.channel, user=payload["user"],
                                             text=payload["text"],
                                             thread_ts=payload.get("thread_ts"))
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error not in UNDELIVERABLE:
            raise
        log.warning("slack ephemeral given up: %s", error)
    return await _mark_sent(store, [row.id])


async def _send_card(row: Post, store: Store, client: AsyncWebClient,
                     links: card_state.CardLinks) -> set[int]:
    """The case's card drawn as it stands now. It answers the card posts queued before it
    was drawn (read first), never one queued while it was on its way: that one's change
    may not be in it, so it goes out next."""
    assert row.case_id is not None
    answered = await posts.unsent_for_case(store, "card", row.case_id)
    case = await cases.get(store, row.case_id)
    message = await card_state.render_card(store, case, links)
    existing = await posts.message_of(store, case.id)
    if existing is not None:
        await client.chat_update(channel=existing.channel, ts=existing.ts,
                                      text=message.text, blocks=message.blocks)
    else:
        answer = await client.chat_postMessage(channel=row.channel,
                                                    text=message.text, blocks=message.blocks)
        await posts.remember_card(store, case.id, answer["channel"], answer["ts"])
    return await _mark_sent(store, sorted({row.id, *answered}))


async def _send_issue(row: Post, store: Store, client: AsyncWebClient) -> set[int]:
    """A dispute or failed-payment card, drawn as the issue stands when it goes out; where
    it went is kept so that later changes update it in place. Every refresh of the same
    issue queued before it was drawn is answered by this one call."""
    same = {row.id, *await posts.unsent_with_payload(store, "issue", row.payload)}
    issue = await issues.get_issue(store, int(row.payload["issue_id"]))
    message = issue_card(issue)
    if issue.slack_channel and issue.slack_ts:
        await client.chat_update(channel=issue.slack_channel, ts=issue.slack_ts,
                                      text=message.text, blocks=message.blocks)
        return await _mark_sent(store, sorted(same))
    answer = await client.chat_postMessage(channel=row.channel, text=message.text,
                                                blocks=message.blocks)
    await issues.remember_card(store, issue.id, answer["channel"], answer["ts"])
    latest = issue_card(await issues.get_issue(store, issue.id))
    if latest.blocks != message.blocks:  # it changed while the post was on its way
        await client.chat_update(channel=answer["channel"], ts=answer["ts"],
                                      text=latest.text, blocks=latest.blocks)
    return await _mark_sent(store, sorted(same))


async def _send_compact(row: Post, store: Store, client: AsyncWebClient) -> set[int]:
    """Every compact line waiting for this channel goes out as one message."""
    rows = await posts.due_in_channel(store, "compact", row.channel)
    case_ids = [r.case_id for r in rows if r.case_id is not None]
    message = await card_state.render_compact(store, case_ids)
    answer = await client.chat_postMessage(channel=row.channel, text=message.text,
                                                blocks=message.blocks)
    await posts.remember_compact(store, case_ids, answer["channel"], answer["ts"])
    return await _mark_sent(store, [r.id for r in rows])


async def _send_thread(row: Post, store: Store, client: AsyncWebClient,
                       later: Later) -> set[int]:
    assert row.case_id is not None
    card = await posts.message_of(store, row.case_id)
    if card is None:  # the card is not out yet: try again after it
        await later(row, "card not posted yet")
        return set()
    case = await cases.get(store, row.case_id)
    text = await card_state.thread_details(store, case)
    await client.chat_postMessage(channel=card.channel, thread_ts=card.ts, text=text)
    return await _mark_sent(store, [row.id])
