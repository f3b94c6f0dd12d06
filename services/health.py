"""The health check's backlog: what is waiting, each count asked of its table's owner.

A number that keeps growing here is worth a look (events not applied, waiting for a retry
after an outage or failed, cases waiting for a person, approved but not yet executing, or
stuck executing, Checkfront write-backs not taken, chat posts not delivered). A failed event
waits for a person: it is listed by `python -m bot events list --failed` and retried with
`events retry ID`.
"""

from __future__ import annotations

import asyncio

from services import outbox
from services.intake.events import count_failed, count_retrying, count_unprocessed
from services.refunds import cases, writeback
from services.refunds.models import APPROVED, Status
from services.store.db import Store


async def backlog(store: Store) -> dict[str, int]:
    """The waiting counts by name (the order is the one the health answer shows). Each is an
    index look-up; they are asked all at once, so the store answers them back to back."""
    counts = await asyncio.gather(
        count_unprocessed(store), count_retrying(store), count_failed(store),
        cases.count(store, Status.PENDING_APPROVAL),
        *[cases.count(store, status) for status in APPROVED],
        cases.count(store, Status.EXECUTING), writeback.count_pending(store),
        outbox.backlog(store))
    approved = len(APPROVED)
    return {
        "events_unprocessed": counts[0],
        "events_retrying": counts[1],
        "events_failed": counts[2],
        "cases_waiting": counts[3],
        "cases_approved": sum(counts[4:4 + approved]),
        "cases_executing": counts[4 + approved],
        "checkfront_writebacks": counts[5 + approved],
        "slack_unsent": counts[6 + approved],
    }
