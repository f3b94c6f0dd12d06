"""The customer messages owed, one row per (case, outcome): the SQL of `customer_messages`.

`enqueue` runs inside the transaction that closes a case (`cases.transition`), one INSERT OR
IGNORE, so a closed case always has its row and a second close never a second one. The sender
(`services.customers.sending`) moves a row on: new -> queued (auto) | draft (review) | off;
queued -> sending -> sent, or back to queued with a later time, or failed when the tries are
spent; a person's Send (`queue_edited`, `queue_draft`) or Retry (`queue_draft`) queues a
draft or failed row again. A row `sending` is leased to the instance sending it
(`services.store.leases`): only a row whose lease has passed, or whose holder is gone, is
queued again (`requeue_stale`), so a live instance's send is never repeated by another.
No row holds an address; only a person's edited text waits here,
and is cleared once it is sent.

"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from services.store import leases
from services.store.db import Row, Store, iso_utc, now_iso, one, utcnow, write

REFUNDED = "refunded"
PARTLY_REFUNDED = "partly_refunded"
DENIED = "denied"
ADJUSTED = "adjusted"
OUTCOMES = (REFUNDED, PARTLY_REFUNDED, DENIED, ADJUSTED)


@dataclass(frozen=True)
class Message:
    id: int
    case_id: int
    outcome: str
    state: str
    subject: str | None
    text_body: str | None
    edited_by: str | None
    message_id: str | None
    attempts: int
    error: str | None
    created_at: str
    next_at: str
    sent_at: str | None

    @classmethod
    def from_row(cls, row: Row) -> Message:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


def outcome_of(status: str, refund_amount: int, approved_amount: int | None) -> str | None:
    """What the customer is told about a case that reached `status`; None when nothing (the
    case is not closed, or skipped: there was nothing to decide)."""
    if status == "denied":
        return DENIED
    if status == "partially_refunded":
        return PARTLY_REFUNDED
    if status == "refunded":
        adjusted = approved_amount is not None and approved_amount != refund_amount
        return ADJUSTED if adjusted else REFUNDED
    return None


_OWE = ("INSERT OR IGNORE INTO customer_messages (case_id, outcome, created_at, next_at) "
        "VALUES (?, ?, ?, ?)")


async def enqueue(tx: aiosqlite.Connection, case_id: int, outcome: str) -> None:
    """Owe the customer this message (inside the closing transaction; once per outcome). Its
    answer is not read, so in a store transaction it goes with the next trip (`db.write`)."""
    at = now_iso()
    await write(tx, _OWE, (case_id, outcome, at, at))


async def get(store: Store, message_id: int) -> Message | None:
    row = await store.fetch_one("SELECT * FROM customer_messages WHERE id = ?", (message_id,))
    return Message.from_row(row) if row is not None else None


async def for_case(store: Store, case_id: int) -> Message | None:
    """The case's latest message (a case closes once per outcome)."""
    row = await store.fetch_one(
        "SELECT * FROM customer_messages WHERE case_id = ? ORDER BY id DESC LIMIT 1",
        (case_id,))
    return Message.from_row(row) if row is not None else None


CARD_SQL = ("SELECT id, outcome, state, error, sent_at FROM customer_messages WHERE case_id = ? "
            "ORDER BY id DESC LIMIT 1")   # the (case_id, outcome) unique index finds them


async def for_card(store: Store, case_id: int) -> Row | None:
    """What a card shows of the case's latest message: one indexed read, read-only connection."""
    return await store.read_one(CARD_SQL, (case_id,))


async def state_of(store: Store, message_id: int) -> str | None:
    """A message's state now, by its id (the read-only connection): for an answer on the ack
    path."""
    row = await store.read_one("SELECT state FROM customer_messages WHERE id = ?", (message_id,))
    return str(row["state"]) if row is not None else None


async def new_rows(store: Store, limit: int = 100) -> list[Message]:
    rows = await store.fetch_all(
        "SELECT * FROM customer_messages WHERE state = 'new' AND next_at <= ? ORDER BY id "
        "LIMIT ?", (now_iso(), limit))
    return [Message.from_row(r) for r in rows]


async def due(store: Store, limit: int = 50) -> list[Message]:
    """Rows to send now: queued ones whose time has come, and any a crash left `sending`."""
    rows = await store.fetch_all(
        "SELECT * FROM customer_messages WHERE state IN ('queued', 'sending') AND next_at <= ? "
        "ORDER BY id LIMIT ?", (now_iso(), limit))
    return [Message.from_row(r) for r in rows]


async def set_state(tx: aiosqlite.Connection, message_id: int, state: str, *,
                    only_from: tuple[str, ...]) -> bool:
    """Compare-and-set the row's state; False when it was not in `only_from`."""
    row = await one(
        tx, "UPDATE customer_messages SET state = ?, next_at = ? WHERE id = ? AND state IN "
        f"({', '.join('?' for _ in only_from)}) RETURNING id",
        (state, now_iso(), message_id, *only_from))
    return row is not None


async def queue_edited(tx: aiosqlite.Connection, message_id: int, *, subject: str,
                       text_body: str, by: str) -> bool:
    """A person's Send: the text as they left it, to go now (from draft, failed or new)."""
    row = await one(
        tx, "UPDATE customer_messages SET state = 'queued', subject = ?, text_body = ?, "
        "edited_by = ?, attempts = 0, error = NULL, next_at = ? "
        "WHERE id = ? AND state IN ('new', 'draft', 'failed') RETURNING id",
        (subject, text_body, by, now_iso(), message_id))
    return row is not None


async def queue_draft(tx: aiosqlite.Connection, message_id: int) -> bool:
    """A person's Send of the draft unchanged (or Retry of a failed one): to go now, drafted
    from the templates (or with the edited text it already holds)."""
    row = await one(
        tx, "UPDATE customer_messages SET state = 'queued', attempts = 0, error = NULL, "
        "next_at = ? WHERE id = ? AND state IN ('new', 'draft', 'failed') RETURNING id",
        (now_iso(), message_id))
    return row is not None


async def mark_sending(tx: aiosqlite.Connection, message_id: int, message_id_header: str) -> None:
    """Just before SMTP: the Message-ID it goes out with (a resend after a crash reuses it)."""
    me = leases.this()
    await tx.execute(
        "UPDATE customer_messages SET state = 'sending', message_id = ?, claimed_by = ?, "
        "lease_until = ? WHERE id = ?", (message_id_header, me.id, me.until(utcnow()), message_id))


async def mark_sent(tx: aiosqlite.Connection, message_id: int) -> None:
    await tx.execute(
        "UPDATE customer_messages SET state = 'sent', sent_at = ?, error = NULL, "
        "subject = NULL, text_body = NULL WHERE id = ?", (now_iso(), message_id))


async def retry_later(tx: aiosqlite.Connection, message_id: int, error: str, at: datetime,
                      *, give_up: bool) -> None:
    await tx.execute(
        "UPDATE customer_messages SET state = ?, attempts = attempts + 1, error = ?, "
        "next_at = ? WHERE id = ?",
        ("failed" if give_up else "queued", error, iso_utc(at), message_id))


async def requeue_stale(store: Store, now: datetime, *, mine_too: bool = False,
                        me: leases.Instance | None = None) -> int:
    """Rows left `sending` by an instance that stopped renewing (killed mid-send: its lease
    passed, or it was a process of this host that is gone; with `mine_too`, this instance's
    id's too, as at start-up) are queued again; how many. A resend carries the same
    Message-ID."""
    me = me or leases.this()
    sending = "state = 'sending'"
    dead = await leases.dead_holders(store, "customer_messages", sending, (), now, me)
    if mine_too:
        dead.append(me.id)
    names = f" OR claimed_by IN ({', '.join('?' for _ in dead)})" if dead else ""
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "UPDATE customer_messages SET state = 'queued', claimed_by = NULL, lease_until = NULL "
            f"WHERE {sending} AND (lease_until IS NULL OR lease_until <= ?{names})",
            (iso_utc(now), *dead))
        return int(cursor.rowcount or 0)
