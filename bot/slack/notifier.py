"""`SlackNotifier`: which case, automation or payment-issue event becomes which outbox row.

It implements services.notify.Notifier and is handed to the `Deps` when they are built. It
only queues rows; bot/slack/outbox.py delivers them, drawing each card from the current state
when it goes out.

- A case that needs (or needed) a person has a card, refreshed in place on every change; once
  it is final, one thread reply under the card says what happened.
- A case decided by policy gets one compact line; a Checkfront write-back still waiting gets
  one alert of its own.
- Automation paused gets an alert with a Resume button; resumed, one line, and each pause
  alert still showing Resume is updated to say who resumed it and when.
- A dispute or failed payment gets a card when it opens; later changes refresh that card once
  it is posted (until then the post draws it as it stands).
- A webhook event that Checkfront or Stripe kept failing past the retry bound gets one card
  with Retry each time its retries stop.
- A customer message whose sending retries ran out gets one alert.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.slack.outbox import Outbox
from bot.slack.ui import cards, customer, intake
from bot.slack.ui.reminders import requester_note
from services import outbox as posts
from services.disputes import issues
from services.disputes.issues import PaymentIssue
from services.notify import StuckEvent
from services.quoting.quote import Quote
from services.refunds import cases, requests, writeback
from services.refunds.models import Case, Status
from services.store.db import Store, now_iso

FINAL = (Status.REFUNDED, Status.PARTIALLY_REFUNDED, Status.DENIED, Status.SKIPPED,
         Status.FAILED, Status.REFUNDED_BY_HAND)


@dataclass(frozen=True)
class Channels:
    approvals: str
    digest: str


class SlackNotifier:
    """services.notify.Notifier for Slack: every change becomes an outbox row."""

    def __init__(self, store: Store, channels: Channels, outbox: Outbox) -> None:
        self.store = store
        self.channels = channels
        self.outbox = outbox

    async def case_opened(self, case: Case, quote: Quote) -> None:
        await self.case_updated(case)

    async def case_updated(self, case: Case) -> None:
        card = await posts.message_of(self.store, case.id)
        has_card = card is not None and card.kind == "card"
        if has_card or await self._needs_person(case):
            await self.outbox.add(self.channels.approvals, "card", case.id)
        elif case.status in FINAL:
            if card is None:   # one line per case, also when told twice (a restart)
                await self.outbox.add_once(self.channels.approvals, "compact", case.id, {})
            kept = await writeback.pending(self.store, case.id)
            if kept is not None:   # a compact line cannot say it: one alert of its own
                message = cards.writeback_alert(case, kept)
                await self.outbox.add_once(self.channels.approvals, "alert", case.id,
                                           {"text": message.text, "blocks": message.blocks})
        if case.status in FINAL and has_card:
            await self.outbox.add_once(self.channels.approvals, "thread", case.id,
                                       {"status": str(case.status)})
        if case.status in FINAL:
            await self._tell_requester(case)

    async def _tell_requester(self, case: Case) -> None:
        """Whoever pressed Request refund is told privately where they asked, once an
        outcome (the same note twice is one)."""
        asked = await requests.of(self.store, case.id)
        if asked is None:
            return
        last = await cases.last_decision(self.store, case.id)
        payload = {"user": asked.user, "status": str(case.status),
                   "text": requester_note(case, last["decided_by"] if last else None)}
        if asked.thread_ts:
            payload["thread_ts"] = asked.thread_ts
        await self.outbox.add_once(asked.channel, "ephemeral", case.id, payload)

    async def automation_changed(self, paused: bool, reason: str, by: str) -> None:
        """A pause posts an alert with Resume (remembered once out); a resume posts one line
        and then updates every such alert in place (`unpause`), without its button."""
        message = cards.automation_alert(paused, reason, by, [])
        if paused:
            await self.outbox.add(self.channels.approvals, "alert", None,
                                  {"text": message.text, "blocks": message.blocks,
                                   "pause": {"reason": reason, "by": by}})
            return
        await self.outbox.add(self.channels.approvals, "alert", None,
                              {"text": message.text, "blocks": message.blocks})
        await self.outbox.add(self.channels.approvals, "unpause", None,
                              {"by": by, "at": now_iso()})

    async def issue_opened(self, issue: PaymentIssue) -> None:
        await self.outbox.add(self.channels.approvals, "issue", None, {"issue_id": issue.id})

    async def issue_updated(self, issue: PaymentIssue) -> None:
        """Refresh the card once it is posted; a post still on its way draws the latest."""
        current = await issues.get_issue(self.store, issue.id)
        if current.slack_channel and current.slack_ts:
            await self.outbox.add(self.channels.approvals, "issue", None,
                                  {"issue_id": issue.id})

    async def event_stuck(self, stuck: StuckEvent) -> None:
        message = intake.stuck_card(stuck)
        await self.outbox.add(self.channels.approvals, "alert", None,
                              {"text": message.text, "blocks": message.blocks})

    async def customer_message_failed(self, case: Case, outcome: str, error: str) -> None:
        message = customer.failed_alert(case, outcome, error)
        await self.outbox.add_once(self.channels.approvals, "alert", case.id,
                                   {"text": message.text, "blocks": message.blocks})

    async def _needs_person(self, case: Case) -> bool:
        if case.status == Status.PENDING_APPROVAL:
            return True
        if case.status == Status.FAILED:
            return True
        last = await cases.last_decision(self.store, case.id)
        return last is not None and last["decision"] in ("approve", "deny") and \
            last["decided_by"] != "policy"
