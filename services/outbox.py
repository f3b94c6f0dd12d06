"""The outbox and posted-message tables: posts waiting for delivery, where cases' messages went.

This module owns the SQL of `slack_outbox` and `slack_messages` and knows nothing of the chat
service itself. A post is a channel, a kind (`card`, `compact`, `thread`, `alert`, `issue`,
`file`), the case it is about (if any) and a JSON payload; the sender marks it sent, or puts
it back with a later time to try again, or gives it up when Slack refuses it for good (the
row is closed with its error kept). Rows stay after they are sent (`seen` looks at them). A
post that must go out once however often its work runs (the day's digest: a daily run taken
over from a leader that died reconciles the day again) carries a `once` key.
A posted message is the channel and timestamp of the card or compact line that shows a case.
Where a dispute's card went is kept on its `payment_issues` row (services/disputes/issues.py).
The automation pause alerts still showing a Resume button are kept in the `state` table
(`pause_alerts`), so that resuming can update each of them once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.store.db import Row, Store, dumps, now_iso, one, set_state

PAUSE_ALERTS_KEY = "slack_pause_alerts"


@dataclass(frozen=True)
class Post:
    """One row of the outbox: something to deliver to `channel`."""

    id: int
    channel: str
    kind: str
    case_id: int | None
    payload: dict[str, Any]
    attempts: int
    sending_at: str | None = None   # an attempt began then: Slack may have the post already

    @classmethod
    def from_row(cls, row: Row) -> Post:
        return cls(row["id"], row["channel"], row["kind"], row["case_id"],
                   json.loads(row["payload"]), row["attempts"], row["sending_at"])


@dataclass(frozen=True)
class PostedMessage:
    """Where the message that shows a case is: a card (updated in place) or a compact line."""

    case_id: int
    channel: str
    ts: str
    kind: str


# --- posts to deliver ----------------------------------------------------------------------

async def add(store: Store, channel: str, kind: str, case_id: int | None,
              payload: dict[str, Any] | None = None, *, once: str | None = None) -> int | None:
    """Queue a post, due now; its row id. A post with a `once` key (what it is:
    "digest:2026-12-01") is queued once ever: None when it was queued before."""
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT INTO slack_outbox (channel, kind, case_id, payload, created_at, next_at, "
            "once_key) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
            (channel, kind, case_id, dumps(payload or {}), now_iso(), now_iso(), once))
        row = await cursor.fetchone()
        return int(row["id"]) if row is not None else None


async def seen(store: Store, kind: str, case_id: int, payload: dict[str, Any]) -> bool:
    """Whether this very post was queued before (sent or not)."""
    row = await store.fetch_one(
        "SELECT 1 FROM slack_outbox WHERE kind = ? AND case_id = ? AND payload = ?",
        (kind, case_id, dumps(payload)))
    return row is not None


async def make_all_due(store: Store) -> None:
    """Everything not sent yet is due now (a restart sends what the last run left waiting)."""
    async with store.transaction() as tx:
        await tx.execute("UPDATE slack_outbox SET next_at = ? WHERE sent_at IS NULL",
                         (now_iso(),))


async def unsent(store: Store) -> list[Post]:
    """Every post not sent yet, oldest first."""
    rows = await store.fetch_all("SELECT * FROM slack_outbox WHERE sent_at IS NULL ORDER BY id")
    return [Post.from_row(r) for r in rows]


async def due(store: Store) -> list[Post]:
    """Posts not sent yet whose time has come, oldest first."""
    rows = await store.fetch_all(
        "SELECT * FROM slack_outbox WHERE sent_at IS NULL AND next_at <= ? ORDER BY id",
        (now_iso(),))
    return [Post.from_row(r) for r in rows]


async def due_in_channel(store: Store, kind: str, channel: str) -> list[Post]:
    """Due posts of one kind for one channel, oldest first (compact lines go out together)."""
    rows = await store.fetch_all(
        "SELECT * FROM slack_outbox WHERE sent_at IS NULL AND kind = ? "
        "AND channel = ? AND next_at <= ? ORDER BY id", (kind, channel, now_iso()))
    return [Post.from_row(r) for r in rows]


async def next_due_at(store: Store) -> str | None:
    """When the earliest post not sent yet is due, or None when nothing waits."""
    row = await store.fetch_one(
        "SELECT MIN(next_at) AS at FROM slack_outbox WHERE sent_at IS NULL")
    return row["at"] if row is not None else None


async def unsent_for_case(store: Store, kind: str, case_id: int) -> list[int]:
    """Ids of the posts of this kind for this case not sent yet (one send answers them all)."""
    rows = await store.fetch_all(
        "SELECT id FROM slack_outbox WHERE sent_at IS NULL AND kind = ? AND case_id = ?",
        (kind, case_id))
    return [r["id"] for r in rows]


async def unsent_with_payload(store: Store, kind: str, payload: dict[str, Any]) -> list[int]:
    """Ids of the posts of this kind with this payload not sent yet, oldest first."""
    rows = await store.fetch_all(
        "SELECT id FROM slack_outbox WHERE sent_at IS NULL AND kind = ? AND payload = ? "
        "ORDER BY id", (kind, dumps(payload)))
    return [r["id"] for r in rows]


async def due_among(store: Store, ids: Sequence[int]) -> list[Post]:
    """Those of these posts not sent yet whose time has come, oldest first."""
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    rows = await store.fetch_all(
        f"SELECT * FROM slack_outbox WHERE id IN ({marks}) AND sent_at IS NULL "
        "AND next_at <= ? ORDER BY id", (*ids, now_iso()))
    return [Post.from_row(r) for r in rows]


async def give_up(store: Store, post_id: int, error: str) -> None:
    """Close a post Slack refuses for good (no retry could succeed); its error is kept."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE slack_outbox SET attempts = attempts + 1, error = ?, sent_at = ? "
            "WHERE id = ?", (error, now_iso(), post_id))


async def mark_sending(store: Store, post_id: int) -> str:
    """Before a post's first attempt: from now Slack may have it though no answer says so (a
    lost answer, a crash before `mark_sent`). When the first attempt began."""
    at = now_iso()
    async with store.transaction() as tx:
        await tx.execute("UPDATE slack_outbox SET sending_at = COALESCE(sending_at, ?) "
                         "WHERE id = ?", (at, post_id))
    return at


async def mark_sent(store: Store, ids: Sequence[int]) -> None:
    async with store.transaction() as tx:
        for post_id in ids:
            await tx.execute("UPDATE slack_outbox SET sent_at = ?, error = NULL WHERE id = ?",
                             (now_iso(), post_id))


async def retry_later(store: Store, post_id: int, error: str, at: datetime) -> None:
    """Count a failed attempt, keep its error and try again at `at`."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE slack_outbox SET attempts = attempts + 1, error = ?, next_at = ? "
            "WHERE id = ?", (error, at.isoformat(), post_id))


async def backlog(store: Store) -> int:
    """How many posts are waiting to go out (the health check shows it)."""
    row = await store.read_one("SELECT COUNT(*) FROM slack_outbox WHERE sent_at IS NULL")
    return int(row[0]) if row else 0


# --- where a case's message went -----------------------------------------------------------

async def message_of(store: Store, case_id: int) -> PostedMessage | None:
    row = await store.fetch_one("SELECT * FROM slack_messages WHERE case_id = ?", (case_id,))
    return _message(row) if row is not None else None


async def messages_of(store: Store, case_ids: Sequence[int]) -> dict[int, PostedMessage]:
    """The messages that show these cases, for those posted so far."""
    if not case_ids:
        return {}
    marks = ", ".join("?" for _ in case_ids)
    rows = await store.fetch_all(
        f"SELECT * FROM slack_messages WHERE case_id IN ({marks})", list(case_ids))
    return {r["case_id"]: _message(r) for r in rows}


async def remember_card(store: Store, case_id: int, channel: str, ts: str) -> None:
    """The case's card is this message (from now on it is updated in place)."""
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO slack_messages (case_id, channel, ts, kind, posted_at) "
            "VALUES (?, ?, ?, 'card', ?) ON CONFLICT (case_id) DO UPDATE SET "
            "channel = excluded.channel, ts = excluded.ts, kind = excluded.kind, "
            "posted_at = excluded.posted_at", (case_id, channel, ts, now_iso()))


async def remember_compact(store: Store, case_ids: Sequence[int], channel: str,
                           ts: str) -> None:
    """These cases were shown on one compact message (a card posted before stays theirs)."""
    async with store.transaction() as tx:
        for case_id in case_ids:
            await tx.execute(
                "INSERT INTO slack_messages (case_id, channel, ts, kind, posted_at) "
                "VALUES (?, ?, ?, 'compact', ?) ON CONFLICT (case_id) DO NOTHING",
                (case_id, channel, ts, now_iso()))


# --- automation pause alerts showing a Resume button -----------------------------------------

async def remember_pause_alert(store: Store, channel: str, ts: str,
                               pause: dict[str, Any]) -> None:
    """A pause alert went out (`pause`: who paused it and why): resuming updates it."""
    async with store.transaction() as tx:
        found = await one(tx, "SELECT value FROM state WHERE key = ?", (PAUSE_ALERTS_KEY,))
        alerts = json.loads(found["value"]) if found else []
        alerts.append({"channel": channel, "ts": ts, **pause})
        await set_state(tx, PAUSE_ALERTS_KEY, alerts)


async def pause_alerts(store: Store) -> list[dict[str, Any]]:
    """The pause alerts posted and not yet updated to say automation resumed."""
    return list(await store.get_state(PAUSE_ALERTS_KEY) or [])


async def forget_pause_alert(store: Store, channel: str, ts: str) -> None:
    """This pause alert now says automation resumed."""
    async with store.transaction() as tx:
        found = await one(tx, "SELECT value FROM state WHERE key = ?", (PAUSE_ALERTS_KEY,))
        alerts = json.loads(found["value"]) if found else []
        kept = [a for a in alerts if (a.get("channel"), a.get("ts")) != (channel, ts)]
        await set_state(tx, PAUSE_ALERTS_KEY, kept)


def _message(row: Row) -> PostedMessage:
    return PostedMessage(row["case_id"], row["channel"], row["ts"], row["kind"])
