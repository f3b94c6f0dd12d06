"""The health check's backlog: what is waiting, each count asked of its table's owner.

A number that keeps growing here is worth a look (events not applied, cases waiting for a
person, approved but not yet executing, or stuck executing, Checkfront write-backs not taken,
chat posts not delivered).
"""

from __future__ import annotations

from services import outbox
from services.intake.events import count_unprocessed
from services.refunds import cases, writeback
from services.refunds.models import APPROVED, Status
from services.store.db import Store


async def backlog(store: Store) -> dict[str, int]:
    """The waiting counts by name (the order is the one the health answer shows)."""
    return {
        "events_unprocessed": await count_unprocessed(store),
        "cases_waiting": await cases.count(store, Status.PENDING_APPROVAL),
        "cases_approved": sum([await cases.count(store, status) for status in APPROVED]),
        "cases_executing": await cases.count(store, Status.EXECUTING),
        "checkfront_writebacks": await writeback.count_pending(store),
        "slack_unsent": await outbox.backlog(store),
    }
