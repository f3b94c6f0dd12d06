"""Posting a waiting case's reminder or escalation: a reply in its card's thread.

The scheduler's reminder job (bot/scheduler.py) finds what is owed (services.refunds.reminders)
and hands each nudge here; this queues the thread reply in the outbox, idempotently (the same
reply twice is one row), before the job stores that it was given. The text is drawn by
bot.slack.ui.reminders, mentioning the approvers, the holder of the card or the finance leads.
"""

from __future__ import annotations

from bot.slack.outbox import Outbox
from bot.slack.ui.reminders import nudge_text
from services.refunds import ownership
from services.refunds.permissions import ApproverRules
from services.refunds.reminders import Nudge
from services.store.db import Store


class NudgePoster:
    def __init__(self, store: Store, outbox: Outbox, rules: ApproverRules) -> None:
        self.store = store
        self.outbox = outbox
        self.rules = rules

    async def __call__(self, nudge: Nudge) -> None:
        claim = await ownership.holder(self.store, nudge.case_id)
        await self.outbox.add_once(nudge.channel, nudge.kind, nudge.case_id, {
            "text": nudge_text(nudge, self.rules, claim), "thread_ts": nudge.ts})
