"""The app's Home tab: what a manager opening the bot wants to see at a glance.

Whether automation runs (with Resume for approvers while it is paused), the cases waiting for
a person (oldest first, linked to their cards), disputes Stripe has not decided, refunds
whose Checkfront write-back is still being retried, and webhook events that failed (with how
many wait for an automatic retry). Drawn fresh each time the tab is opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.slack.ui import ids
from bot.slack.ui.disputes import dispute_line
from bot.slack.ui.intake import RETRY_COMMAND, failed_line
from bot.slack.ui.kit import (
    actions,
    button,
    confirm,
    context,
    date_token,
    divider,
    esc,
    header,
    line_sections,
    money,
    section,
    who,
)
from services.disputes.issues import PaymentIssue
from services.intake.events import EventRow
from services.refunds.automation import Automation
from services.refunds.models import Case
from services.refunds.writeback import PendingWriteback

HOME_ROWS = 10  # rows per list; the rest is counted


@dataclass(frozen=True)
class HomeFacts:
    automation: Automation
    waiting: list[tuple[Case, str | None]]            # the oldest few, link to its card
    waiting_total: int
    disputes: list[PaymentIssue]
    writebacks: list[tuple[PendingWriteback, Case]]
    drawn_at: str                                      # UTC ISO-8601
    failed_events: list[EventRow] = field(default_factory=list)   # the oldest few
    failed_total: int = 0
    retrying_total: int = 0                            # events waiting for a retry


def home_view(facts: HomeFacts, *, approver: bool) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [header("Refund operations")]
    blocks += _automation(facts.automation, approver)
    blocks.append(divider())
    blocks += _listed("Waiting for approval", [
        f"• {_linked(f'case #{case.id}', link)} `{esc(case.booking_code, 60)}` · "
        f"{money(case.refund_amount, case.currency)} · waiting since "
        f"{date_token(case.created_at)}" for case, link in facts.waiting],
        "nothing is waiting for a person", total=facts.waiting_total)
    blocks += _listed("Open disputes", [dispute_line(issue) for issue in facts.disputes],
                      "no dispute waiting on Stripe")
    if facts.writebacks:
        blocks += _listed("Checkfront not updated yet", [
            f"• case #{case.id} `{esc(case.booking_code, 60)}` · attempt {kept.attempts} "
            f"failed ({esc(kept.last_error, 120)}) · next try {date_token(kept.next_at)}"
            for kept, case in facts.writebacks], "")
    blocks += _events(facts)
    blocks.append(context(f"Drawn {date_token(facts.drawn_at)} · open the tab again to refresh"
                          " · `/refund help` lists the commands"))
    return {"type": "home", "blocks": blocks[:100]}


def _automation(automation: Automation, approver: bool) -> list[dict[str, Any]]:
    if not automation.paused:
        hint = " Approvers pause it with `/refund pause &lt;reason&gt;`." if approver else ""
        return [section(":arrow_forward: *Automation running*: refunds within the policy limits "
                        f"are paid without a person.{hint}")]
    blocks = [section(f":double_vertical_bar: *Automation paused* by {who(automation.by)}: "
                      f"{esc(automation.reason or 'no reason given', 500)}\nEvery new case "
                      "waits for a person.")]
    if approver:
        blocks.append(actions(button(
            "Resume automation", ids.HOME_RESUME, "resume", style="primary",
            confirm_dialog=confirm(
                "Resume automation?",
                "Refunds within the policy limits will again be paid without a person. "
                "Cases already waiting stay with the approvers.", "Resume", "Cancel"))))
    return blocks


def _events(facts: HomeFacts) -> list[dict[str, Any]]:
    if not facts.failed_total and not facts.retrying_total:
        return []
    lines = [failed_line(row) for row in facts.failed_events[:HOME_ROWS]]
    if facts.failed_total > len(lines):
        lines.append(f"…and {facts.failed_total - len(lines)} more")
    if facts.failed_total:
        lines.append(f"_Retry one from its card, or with `{RETRY_COMMAND} N`._")
    if facts.retrying_total:
        lines.append(f"_{facts.retrying_total} more waiting for an automatic retry after a "
                     "Checkfront or Stripe outage._")
    return line_sections(lines, title=f"Webhook events not processed ({facts.failed_total})",
                         max_sections=2)


def _listed(title: str, lines: list[str], empty: str,
            total: int | None = None) -> list[dict[str, Any]]:
    total = len(lines) if total is None else total
    shown = lines[:HOME_ROWS]
    if total > len(shown):
        shown.append(f"…and {total - len(shown)} more")
    return line_sections(shown or [f"_{empty}_"], title=f"{title} ({total})",
                         max_sections=3)


def _linked(text: str, link: str | None) -> str:
    return f"<{link}|{esc(text, 60)}>" if link else esc(text, 60)
