"""The health check's backlog: what is waiting, each count asked of its table's owner.

A number that keeps growing here is worth a look (events not applied, waiting for a retry
after an outage or failed, cases waiting for a person, approved but not yet executing, or
stuck executing, Checkfront write-backs not taken, chat posts not delivered). A failed event
waits for a person: it is listed by `python -m bot events list --failed` and retried with
`events retry ID`.
"""

from __future__ import annotations

from services import outbox
from services.intake.events import count_failed, count_retrying, count_unprocessed
from services.refunds import cases, writeback
from services.refunds.models import APPROVED, Status
from services.store.db import Store


async def backlog(store: Store) -> dict[str, int]:
    """The waiting counts by name (the order is the one the health answer shows)."""
    return {
        "events_unprocessed": await count_unprocessed(store),
        "events_retrying": await count_retrying(store),
        "events_failed": await count_failed(store),
        "cases_waiting": await cases.count(store, Status.PENDING_APPROVAL),
        "cases_approved": sum([await cases.count(store, status) for status in APPROVED]),
        "cases_executing": await cases.count(store, Status.EXECUTING),
        "checkfront_writebacks": await writeback.count_pending(store),
        "slack_unsent": await outbox.backlog(store),
    }
