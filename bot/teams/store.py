"""The Teams tables (migration 018): conversation references, the Teams outbox, case activities.

- A conversation reference is what the Bot Connector needs to post into a conversation later
  (service URL, conversation id, tenant, the bot's account), captured from every activity the
  bot receives, above all the `conversationUpdate` Teams sends when the app is added to a
  team, and kept by conversation id with the Teams channel id it belongs to: settings name
  channels by channel id, and the approvals and digest channels are found by it.
- The outbox: a target (a channel id or a conversation id), a kind (`card`, `compact`,
  `thread`, `alert`, `digest`, `issue`, `unpause`, `update`), the case it is about (if any)
  and a JSON payload, rows first; the sender marks each sent, puts it back with a later
  time, or gives it up.
- The activity that shows a case's card (or compact line), so each update edits it; the same
  table keeps the activity of a payment issue's card (kind `issue`, its `case_id` column
  holding the issue's id) and of each pause alert still showing Resume (kind
  `pause:<outbox row id>`, `case_id` 0: the row's payload says who paused and why).
SQL is portable: `?` placeholders, ON CONFLICT, no engine functions, times as ISO-8601 text.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.store.db import Row, Store, dumps, now_iso


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    channel_id: str | None
    team_id: str | None
    tenant_id: str | None
    service_url: str
    kind: str                  # channel | personal | groupChat
    reference: dict[str, Any]  # the SDK's ConversationReference, as JSON


@dataclass(frozen=True)
class TeamsPost:
    id: str
    target: str
    kind: str
    case_id: int | None
    payload: dict[str, Any]
    attempts: int

    @classmethod
    def from_row(cls, row: Row) -> TeamsPost:
        return cls(row["id"], row["target"], row["kind"], row["case_id"],
                   json.loads(row["payload"]), row["attempts"])


# --- conversation references -------------------------------------------------------------

async def remember_conversation(store: Store, conv: Conversation) -> None:
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO teams_conversations (conversation_id, channel_id, team_id, tenant_id, "
            "service_url, kind, reference, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (conversation_id) DO UPDATE SET channel_id = COALESCE("
            "excluded.channel_id, teams_conversations.channel_id), team_id = COALESCE("
            "excluded.team_id, teams_conversations.team_id), tenant_id = excluded.tenant_id, "
            "service_url = excluded.service_url, kind = excluded.kind, "
            "reference = excluded.reference, updated_at = excluded.updated_at",
            (conv.conversation_id, conv.channel_id, conv.team_id, conv.tenant_id,
             conv.service_url, conv.kind, dumps(conv.reference), now_iso()))


async def conversation_for(store: Store, target: str) -> Conversation | None:
    """The conversation of a Teams channel id (the channel's own thread-less conversation),
    or of a conversation id."""
    row = await store.fetch_one(
        "SELECT * FROM teams_conversations WHERE conversation_id = ? OR channel_id = ? "
        "ORDER BY CASE WHEN conversation_id = ? THEN 0 ELSE 1 END", (target, target, target))
    if row is None:
        return None
    return Conversation(row["conversation_id"], row["channel_id"], row["team_id"],
                        row["tenant_id"], row["service_url"], row["kind"],
                        json.loads(row["reference"]))


async def conversations(store: Store) -> list[Conversation]:
    rows = await store.fetch_all("SELECT * FROM teams_conversations ORDER BY updated_at")
    return [Conversation(r["conversation_id"], r["channel_id"], r["team_id"], r["tenant_id"],
                         r["service_url"], r["kind"], json.loads(r["reference"]))
            for r in rows]


# --- the outbox ---------------------------------------------------------------------------

async def add(store: Store, target: str, kind: str, case_id: int | None,
              payload: dict[str, Any] | None = None, *, once: str | None = None) -> str | None:
    """Queue a post; its id. With a `once` key, None when a post with it was queued before."""
    post_id = uuid.uuid4().hex
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT INTO teams_outbox (id, seq, target, kind, case_id, payload, created_at, "
            "next_at, once_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (post_id, time.time_ns(), target, kind, case_id, dumps(payload or {}),
             now_iso(), now_iso(), once))
        return post_id if cursor.rowcount == 1 else None


async def seen(store: Store, kind: str, case_id: int, payload: dict[str, Any]) -> bool:
    row = await store.fetch_one(
        "SELECT 1 FROM teams_outbox WHERE kind = ? AND case_id = ? AND payload = ?",
        (kind, case_id, dumps(payload)))
    return row is not None


async def due(store: Store) -> list[TeamsPost]:
    rows = await store.fetch_all(
        "SELECT * FROM teams_outbox WHERE sent_at IS NULL AND next_at <= ? ORDER BY seq",
        (now_iso(),))
    return [TeamsPost.from_row(r) for r in rows]


async def unsent(store: Store) -> list[TeamsPost]:
    rows = await store.fetch_all("SELECT * FROM teams_outbox WHERE sent_at IS NULL ORDER BY seq")
    return [TeamsPost.from_row(r) for r in rows]


async def next_due_at(store: Store) -> str | None:
    row = await store.fetch_one(
        "SELECT MIN(next_at) AS at FROM teams_outbox WHERE sent_at IS NULL")
    return row["at"] if row is not None else None


async def unsent_for_case(store: Store, kind: str, case_id: int) -> list[str]:
    rows = await store.fetch_all(
        "SELECT id FROM teams_outbox WHERE sent_at IS NULL AND kind = ? AND case_id = ?",
        (kind, case_id))
    return [r["id"] for r in rows]


async def mark_sent(store: Store, ids: Sequence[str]) -> None:
    async with store.transaction() as tx:
        for post_id in ids:
            await tx.execute("UPDATE teams_outbox SET sent_at = ?, error = NULL WHERE id = ?",
                             (now_iso(), post_id))


async def retry_later(store: Store, post_id: str, error: str, at: datetime) -> None:
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE teams_outbox SET attempts = attempts + 1, error = ?, next_at = ? "
            "WHERE id = ?", (error, at.isoformat(), post_id))


async def give_up(store: Store, post_id: str, error: str) -> None:
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE teams_outbox SET attempts = attempts + 1, error = ?, sent_at = ? "
            "WHERE id = ?", (error, now_iso(), post_id))


async def backlog(store: Store) -> int:
    row = await store.read_one("SELECT COUNT(*) FROM teams_outbox WHERE sent_at IS NULL")
    return int(row[0]) if row else 0


# --- the activity that shows a case ---------------------------------------------------------

ISSUE = "issue"
PAUSE = "pause:"


@dataclass(frozen=True)
class CaseActivity:
    case_id: int
    kind: str
    conversation_id: str
    activity_id: str


async def activity_of(store: Store, case_id: int, kind: str = "card") -> CaseActivity | None:
    row = await store.fetch_one(
        "SELECT * FROM teams_messages WHERE case_id = ? AND kind = ?", (case_id, kind))
    if row is None:
        return None
    return CaseActivity(row["case_id"], row["kind"], row["conversation_id"], row["activity_id"])


async def remember_activity(store: Store, case_id: int, kind: str, conversation_id: str,
                            activity_id: str) -> None:
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO teams_messages (case_id, kind, conversation_id, activity_id, "
            "posted_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (case_id, kind) DO UPDATE SET "
            "conversation_id = excluded.conversation_id, activity_id = excluded.activity_id, "
            "posted_at = excluded.posted_at",
            (case_id, kind, conversation_id, activity_id, now_iso()))


async def forget_activity(store: Store, subject: int, kind: str) -> None:
    async with store.transaction() as tx:
        await tx.execute("DELETE FROM teams_messages WHERE case_id = ? AND kind = ?",
                         (subject, kind))


@dataclass(frozen=True)
class PauseAlert:
    subject: int
    kind: str
    conversation_id: str
    activity_id: str
    payload: dict[str, Any]    # the outbox row that posted it: {"card", "pause": {reason, by}}


async def pause_alerts(store: Store) -> list[PauseAlert]:
    """The pause alerts posted and not yet edited to say automation resumed, oldest first."""
    found = await store.fetch_all(
        "SELECT m.case_id, m.kind, m.conversation_id, m.activity_id, o.payload "
        "FROM teams_messages m JOIN teams_outbox o ON m.kind = 'pause:' || o.id "
        "WHERE m.case_id = 0 ORDER BY m.posted_at")
    return [PauseAlert(r["case_id"], r["kind"], r["conversation_id"], r["activity_id"],
                       json.loads(r["payload"])) for r in found]
