"""The app's Home tab: what a manager opening the bot wants to see at a glance.

Whether automation runs (with Resume for approvers while it is paused), the cases waiting for
a person (oldest first, linked to their cards), disputes Stripe has not decided, and refunds
whose Checkfront write-back is still being retried. Drawn fresh each time the tab is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.slack.ui import ids
from bot.slack.ui.disputes import dispute_line
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
    blocks.append(context(f"Drawn {date_token(facts.drawn_at)} · open the tab again to refresh"
                          " · `/refund help` lists the commands"))
    return {"type": "home", "blocks": blocks[:100]}


def _automation(automation: Automation, approver: bool) -> list[dict[str, Any]]:
    if not automation.paused:
        hint = " Approvers pause it with `/refund pause <reason>`." if approver else ""
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
