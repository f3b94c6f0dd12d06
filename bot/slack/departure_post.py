"""Sending a departure's card (outbox rows of kind `departure`, payload `{"run": id}`): drawn
from the run as it stands when the row goes out, posted once and updated in place after, and
every redraw of the same run queued before it answered by that one call, so a run of many
bookings costs a few paced updates, not one per step.
"""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.ui.departure import departure_card
from services import outbox as posts
from services.outbox import Post
from services.refunds import departure
from services.store.db import Store


async def send(store: Store, client: AsyncWebClient, row: Post) -> list[int]:
    """Draw and send the run's card; the ids of the rows this answered."""
    same = sorted({row.id, *await posts.unsent_with_payload(store, "departure", row.payload)})
    run = await departure.load_run(store, int(row.payload["run"]))
    message = departure_card(run)
    if run.channel and run.ts:
        await client.chat_update(channel=run.channel, ts=run.ts, text=message.text,
                                 blocks=message.blocks)
        return same
    answer = await client.chat_postMessage(channel=row.channel, text=message.text,
                                           blocks=message.blocks)
    await departure.remember_card(store, run.id, answer["channel"], answer["ts"])
    latest = departure_card(await departure.load_run(store, run.id))
    if latest.blocks != message.blocks:   # it moved on while the post was on its way
        await client.chat_update(channel=answer["channel"], ts=answer["ts"], text=latest.text,
                                 blocks=latest.blocks)
    return same
