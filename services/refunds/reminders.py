"""Owns the reminder and the escalation of a case left waiting for a person.

A case waiting for approval (`pending_approval`) whose card is posted gets one **reminder**
once it has waited `remind_after`, and one **escalation** once it has waited
`escalate_after`; `due` lists what is owed now, `mark` stores that it was given (one row per
case and kind in `case_nudges`, with its audit row), so each is given once however many
scheduler runs and restarts come. Waiting counts from when the case was opened.

The caller queues the post before marking it, and queues it idempotently (the same post twice
is one), so a crash between the two gives neither a lost nor a doubled reminder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.store import audit
from services.store.db import Store, iso_utc, now_iso

REMINDER = "reminder"
ESCALATION = "escalation"
BATCH = 100  # nudges owed at once, oldest first; the rest on the next run


@dataclass(frozen=True)
class Nudge:
    """A reminder or escalation owed to a waiting case, and where its card is."""

    case_id: int
    kind: str
    booking_code: str
    refund_amount: int
    currency: str
    waiting_since: str
    channel: str
    ts: str


async def due(store: Store, now: datetime, *, remind_after: timedelta,
              escalate_after: timedelta | None) -> list[Nudge]:
    """The nudges owed at `now`: reminders first, then escalations, each oldest first."""
    found: list[Nudge] = []
    wanted = [(REMINDER, remind_after)]
    if escalate_after is not None:
        wanted.append((ESCALATION, escalate_after))
    for kind, after in wanted:
        rows = await store.read_all(
            "SELECT c.id, c.booking_code, c.refund_amount, c.currency, c.created_at, "
            "m.channel, m.ts FROM cases c "
            "JOIN slack_messages m ON m.case_id = c.id AND m.kind = 'card' "
            "LEFT JOIN case_nudges n ON n.case_id = c.id AND n.kind = ? "
            "WHERE c.status = 'pending_approval' AND c.created_at <= ? AND n.case_id IS NULL "
            "ORDER BY c.created_at LIMIT ?", (kind, iso_utc(now - after), BATCH))
        found += [Nudge(int(r["id"]), kind, r["booking_code"], int(r["refund_amount"]),
                        r["currency"], r["created_at"], r["channel"], r["ts"]) for r in rows]
    return found


async def mark(store: Store, nudge: Nudge) -> bool:
    """Store that `nudge` was given (audited); False when it already was."""
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT INTO case_nudges (case_id, kind, at) VALUES (?, ?, ?) "
            "ON CONFLICT (case_id, kind) DO NOTHING",
            (nudge.case_id, nudge.kind, now_iso()))
        if not cursor.rowcount:
            return False
        await audit.append(tx, actor="scheduler", action=f"case.{nudge.kind}",
                           case_id=nudge.case_id)
        return True


async def given(store: Store, case_id: int) -> list[str]:
    """The kinds of nudge `case_id` was given, in order."""
    rows = await store.fetch_all(
        "SELECT kind FROM case_nudges WHERE case_id = ? ORDER BY at", (case_id,))
    return [r["kind"] for r in rows]
