"""Slack Events API deliveries, de-duplicated by event_id in the store (the slack_events
table and all its SQL).

An event is claimed before its listener runs and marked handled once it was answered 200; a
claim whose handling failed is released, so Slack's retry of that delivery is handled, and a
retry (or a second delivery without a retry number) of a handled event is not. A claim left
unfinished for longer than `IN_FLIGHT` (its process died) can be taken over by a retry.
Knows nothing of Slack's libraries: the caller passes the event's id and type.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from services.store.db import Store, iso_utc, utcnow

IN_FLIGHT = timedelta(seconds=30)  # Slack gives up on an answer after 3 s
KEEP = timedelta(days=1)           # Slack's last retry comes within minutes


class Claim(StrEnum):
    NEW = "new"                # handle it
    HANDLED = "handled"        # answered 200 before: ack, do nothing
    IN_FLIGHT = "in flight"    # another delivery of it is being handled right now


async def claim(store: Store, event_id: str, kind: str, now: datetime | None = None) -> Claim:
    """Claim the event for handling, unless it was handled or is being handled."""
    moment = now or utcnow()
    at = iso_utc(moment)
    async with store.transaction() as tx:
        await tx.execute("DELETE FROM slack_events WHERE claimed_at < ?",
                         (iso_utc(moment - KEEP),))
        async with tx.execute("SELECT claimed_at, handled_at FROM slack_events "
                              "WHERE event_id = ?", (event_id,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            await tx.execute("INSERT INTO slack_events (event_id, kind, claimed_at) "
                             "VALUES (?, ?, ?)", (event_id, kind[:100], at))
            return Claim.NEW
        if row["handled_at"] is not None:
            return Claim.HANDLED
        if row["claimed_at"] > iso_utc(moment - IN_FLIGHT):
            return Claim.IN_FLIGHT
        await tx.execute("UPDATE slack_events SET claimed_at = ?, attempts = attempts + 1 "
                         "WHERE event_id = ?", (at, event_id))
        return Claim.NEW


async def handled(store: Store, event_id: str) -> None:
    """The event was answered 200: later deliveries of it are acked and not handled."""
    async with store.transaction() as tx:
        await tx.execute("UPDATE slack_events SET handled_at = ? WHERE event_id = ?",
                         (iso_utc(utcnow()), event_id))


async def release(store: Store, event_id: str) -> None:
    """Handling failed: forget the claim, so Slack's retry of the event is handled."""
    async with store.transaction() as tx:
        await tx.execute("DELETE FROM slack_events WHERE event_id = ? AND handled_at IS NULL",
                         (event_id,))
