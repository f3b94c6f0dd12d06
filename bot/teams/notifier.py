"""`TeamsNotifier`: which domain event becomes which Teams outbox row, and how a row is drawn.

It implements services.notify.Notifier like bot/slack/notifier.py does for Slack: it only
queues rows (bot/teams/store.py); bot/teams/outbox.py delivers them and asks `draw` for the
activity when each goes out, so a card always shows the case (or issue) as it stands. Every
card is one of `bot.teams.cards` (Adaptive Cards 1.5, Universal Actions).
- A case that needs a person has an approval card in the approvals channel (the quote, the
  customer's first name, links to Checkfront and Stripe; it refreshes for the approvers),
  edited in place on every change; once final, the card shows the outcome and one reply in
  its thread says so.
- A case decided by policy gets one compact line (a compact card).
- Automation paused gets an alert with Resume (its activity remembered once out); resumed,
  one line, and every remembered pause alert is edited in place to say who resumed it and
  when, without its button (`unpause`), as Slack does.
- A dispute or failed payment gets its card when it opens; later changes edit that card once
  it is posted (until then the post draws it as it stands).
- A stuck webhook event and a customer message that could not be sent get one alert card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from microsoft_agents.activity import Activity, ActivityTypes

from bot.card_links import NO_LINKS, CardLinks
from bot.slack.card_state import card_context
from bot.teams import cards
from bot.teams import store as rows
from bot.teams.cards import kit
from bot.teams.cards.text import md
from bot.teams.outbox import TeamsOutbox
from bot.teams.store import TeamsPost
from services.disputes import issues
from services.disputes.holds import flags_now
from services.disputes.issues import PaymentIssue
from services.notify import StuckEvent
from services.quoting.quote import Quote
from services.refunds import cases
from services.refunds.models import Case, Status
from services.store.db import Store, now_iso

FINAL = (Status.REFUNDED, Status.PARTIALLY_REFUNDED, Status.DENIED, Status.SKIPPED,
         Status.FAILED, Status.REFUNDED_BY_HAND)
CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


@dataclass(frozen=True)
class TeamsChannels:
    approvals: str    # a Teams channel id (19:...@thread.tacv2)
    digest: str


def attachment(card: dict[str, Any]) -> dict[str, Any]:
    return {"contentType": CONTENT_TYPE, "content": card}


def card_activity(card: dict[str, Any]) -> Activity:
    return Activity(type=ActivityTypes.message, attachments=[attachment(card)])


def with_note(card: dict[str, Any], note: str | None) -> dict[str, Any]:
    """The card with a line in red under its title (why a click did not do what it said)."""
    if note:
        card["body"].insert(1, kit.text(f"⚠️ {md(note, 500)}", color="Attention"))
    return card


@dataclass
class TeamsNotifier:
    store: Store
    channels: TeamsChannels
    outbox: TeamsOutbox
    links: CardLinks = NO_LINKS                                # where the link buttons point
    approver_ids: list[str] = field(default_factory=list)     # the approval card refreshes for

    def __post_init__(self) -> None:
        self.outbox.draw = self.draw

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
        card = cards.automation_card(paused, reason, by, [])
        if paused:   # remembered once out, so a resume can edit it
            await self.outbox.add(self.channels.approvals, "alert", None,
                                  {"card": card, "pause": {"reason": reason, "by": by}})
            return
        await self.outbox.add(self.channels.approvals, "alert", None, {"card": card})
        await self.outbox.add(self.channels.approvals, "unpause", None,
                              {"by": by, "at": now_iso()})

    async def issue_opened(self, issue: PaymentIssue) -> None:
        await self.outbox.add(self.channels.approvals, "issue", None, {"issue_id": issue.id})

    async def issue_updated(self, issue: PaymentIssue) -> None:
        """Edit the card once it is posted; a post still on its way draws the latest."""
        if await rows.activity_of(self.store, issue.id, rows.ISSUE) is not None:
            await self.outbox.add(self.channels.approvals, "issue", None,
                                  {"issue_id": issue.id})

    async def event_stuck(self, stuck: StuckEvent) -> None:
        lines = [f"It failed {stuck.attempts} times since {stuck.since}.",
                 f"Last error: {stuck.error}"]
        if stuck.subject:
            lines.insert(0, f"About: {stuck.subject}")
        lines.append(f"Once the cause is fixed: python -m bot events retry {stuck.row_id} "
                     "(or Retry on the Slack alert).")
        await self.outbox.add(self.channels.approvals, "alert", None, {"card": cards.answer_card(
            f"Event #{stuck.row_id}: a {stuck.source} {stuck.kind} event is stuck", lines)})

    async def customer_message_failed(self, case: Case, outcome: str, error: str) -> None:
        await self.outbox.add_once(self.channels.approvals, "alert", case.id, {
            "card": cards.answer_card(
                f"The customer message for case #{case.id} could not be sent",
                [f"Booking {case.booking_code} · {outcome}", f"Error: {error}"])})

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
            case = await cases.get(self.store, post.case_id)
            quote = (await cases.current_quote(self.store, case)).quote
            return card_activity(cards.compact_card([(case, quote)]))
        if post.kind == "thread" and post.case_id is not None:
            shown = await rows.activity_of(self.store, post.case_id)
            if shown is None:
                return None
            case = await cases.get(self.store, post.case_id)
            post.payload["reply_to"] = shown.activity_id
            return Activity(type=ActivityTypes.message,
                            text=f"Case #{case.id}: {case.status.value.replace('_', ' ')}.")
        if post.kind == "issue":
            issue = await issues.get_issue(self.store, int(post.payload["issue_id"]))
            return card_activity(cards.issue_card(issue, self.links))
        if post.kind == "unpause":
            await self._unpause(post)
            return None
        if "card" in post.payload:
            return card_activity(post.payload["card"])
        return Activity(type=ActivityTypes.message, text=str(post.payload.get("text", "")))

    async def _unpause(self, post: TeamsPost) -> None:
        """Each remembered pause alert becomes an edit of its activity (an `update` row,
        paced like any post) saying who resumed automation and when; then it is forgotten."""
        for alert in await rows.pause_alerts(self.store):
            pause = alert.payload.get("pause") or {}
            card = cards.automation_card(True, str(pause.get("reason") or ""),
                                         str(pause.get("by") or ""), [],
                                         resumed_by=str(post.payload.get("by") or ""),
                                         resumed_at=str(post.payload.get("at") or ""))
            await self.outbox.add(alert.conversation_id, "update", None,
                                  {"activity_id": alert.activity_id, "card": card})
            await rows.forget_activity(self.store, alert.subject, alert.kind)

    async def card_for(self, case_id: int, *, form: str | None = None,
                       values: dict[str, str] | None = None,
                       errors: dict[str, str] | None = None,
                       note: str | None = None) -> dict[str, Any]:
        """The case's card as it stands: the approval card while it waits for a person (with
        a refused form open, when `form` is given), else the outcome card."""
        case = await cases.get(self.store, case_id)
        ctx = await card_context(self.store, case)
        if case.status == Status.PENDING_APPROVAL:
            card = cards.approval_card(
                case, await flags_now(self.store, ctx["quote"]),
                customer_first_name=ctx["customer_first_name"], automation=ctx["automation"],
                links=self.links, approver_ids=self.approver_ids, form=form, values=values,
                errors=errors)
        else:
            by_hand = ctx["by_hand"]
            card = cards.outcome_card(
                case, ctx["quote"], customer_first_name=ctx["customer_first_name"],
                decided_by=ctx["decided_by"], decided_at=ctx["decided_at"],
                refunds=ctx["refunds"], decision_reason=ctx["decision_reason"],
                by_hand=by_hand.amount if by_hand is not None else 0, links=self.links)
        return with_note(card, note)

    async def refused_for(self, case_id: int, user: str, why: str) -> dict[str, Any]:
        """What a refused clicker alone sees: the card without decision buttons, saying why,
        refreshed for that user only; the outcome once the case is decided."""
        case = await cases.get(self.store, case_id)
        if case.status != Status.PENDING_APPROVAL:
            return await self.card_for(case_id, note=why)
        ctx = await card_context(self.store, case)
        return cards.refused_card(case, await flags_now(self.store, ctx["quote"]),
                                  customer_first_name=ctx["customer_first_name"],
                                  user_id=user, why=why, automation=ctx["automation"],
                                  links=self.links)
