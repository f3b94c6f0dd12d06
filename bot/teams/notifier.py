"""`TeamsNotifier`: which domain event becomes which Teams outbox row, and how a row is drawn.

It implements services.notify.Notifier like bot/slack/notifier.py does for Slack: it only
queues rows (bot/teams/store.py); bot/teams/outbox.py delivers them and asks `draw` for the
activity when each goes out, so a card always shows the case as it stands.
- A case that needs a person has an approval card in the approvals channel, edited in place
  on every change; once final, the card shows the outcome and one reply in its thread says so.
- A case decided by policy gets one compact line.
- Automation paused gets an alert with Resume; resumed, one line.
- Disputes, failed payments, stuck events and failed customer messages get one alert line.
"""

from __future__ import annotations

from dataclasses import dataclass

from microsoft_agents.activity import Activity, ActivityTypes

from bot.teams import card_content as cards
from bot.teams import store as rows
from bot.teams.outbox import TeamsOutbox
from bot.teams.store import TeamsPost
from services.disputes.issues import PaymentIssue
from services.notify import StuckEvent
from services.quoting.quote import Quote
from services.refunds import cases
from services.refunds.models import Case, Status
from services.store.db import Store

FINAL = cards.FINAL


@dataclass(frozen=True)
class TeamsChannels:
    approvals: str    # a Teams channel id (19:...@thread.tacv2)
    digest: str


def card_activity(card: dict) -> Activity:
    return Activity(type=ActivityTypes.message, attachments=[cards.attachment(card)])


class TeamsNotifier:
    def __init__(self, store: Store, channels: TeamsChannels, outbox: TeamsOutbox) -> None:
        self.store = store
        self.channels = channels
        self.outbox = outbox
        outbox.draw = self.draw

    async def case_opened(self, case: Case, quote: Quote) -> None:
        await self.case_updated(case)

    async def case_updated(self, case: Case) -> None:
        has_card = await rows.activity_of(self.store, case.id) is not None
        if has_card or await self._needs_person(case):
            await self.outbox.add(self.channels.approvals, "card", case.id)
            if case.status in FINAL:
                await self.outbox.add_once(self.channels.approvals, "thread", case.id,
                                           {"status": str(case.status)})
        elif case.status in FINAL:
            await self.outbox.add_once(self.channels.approvals, "compact", case.id, {})

    async def automation_changed(self, paused: bool, reason: str, by: str) -> None:
        await self.outbox.add(self.channels.approvals, "alert", None,
                              {"card": cards.automation_card(paused, reason, by)})

    async def issue_opened(self, issue: PaymentIssue) -> None:
        await self._line(f"Payment issue #{issue.id} opened ({issue.kind}).")

    async def issue_updated(self, issue: PaymentIssue) -> None:
        await self._line(f"Payment issue #{issue.id} is now {issue.status}.")

    async def event_stuck(self, stuck: StuckEvent) -> None:
        await self._line(f"A {stuck.source} {stuck.kind} event failed {stuck.attempts} times "
                         f"since {stuck.since}: {stuck.error}")

    async def customer_message_failed(self, case: Case, outcome: str, error: str) -> None:
        await self._line(f"The customer message for case #{case.id} ({outcome}) could not be "
                         f"sent: {error}")

    async def _line(self, text: str) -> None:
        await self.outbox.add(self.channels.approvals, "alert", None,
                              {"card": cards.answer_card(text)})

    async def _needs_person(self, case: Case) -> bool:
        if case.status in (Status.PENDING_APPROVAL, Status.FAILED):
            return True
        last = await cases.last_decision(self.store, case.id)
        return last is not None and last["decision"] in ("approve", "deny") and \
            last["decided_by"] != "policy"

    # --- drawing a row when it goes out -----------------------------------------------------

    async def draw(self, post: TeamsPost) -> Activity | None:
        if post.kind == "card" and post.case_id is not None:
            return card_activity(await self.card_for(post.case_id))
        if post.kind == "compact" and post.case_id is not None:
            return card_activity(cards.compact_card(await cases.get(self.store, post.case_id)))
        if post.kind == "thread" and post.case_id is not None:
            shown = await rows.activity_of(self.store, post.case_id)
            if shown is None:
                return None
            case = await cases.get(self.store, post.case_id)
            post.payload["reply_to"] = shown.activity_id
            return Activity(type=ActivityTypes.message,
                            text=f"Case #{case.id}: {case.status.value.replace('_', ' ')}.")
        if "card" in post.payload:
            return card_activity(post.payload["card"])
        return Activity(type=ActivityTypes.message, text=str(post.payload.get("text", "")))

    async def card_for(self, case_id: int, *, errors: dict[str, str] | None = None,
                       note: str | None = None) -> dict:
        case = await cases.get(self.store, case_id)
        if case.status in FINAL or case.status not in (Status.PENDING_APPROVAL,):
            last = await cases.last_decision(self.store, case.id)
            if case.status in FINAL:
                return cards.outcome_card(case, decided_by=last["decided_by"] if last else None)
        return cards.approval_card(case, errors=errors, note=note)
