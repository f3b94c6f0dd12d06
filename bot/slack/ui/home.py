"""The app's Home tab: what a manager opening the bot wants to see at a glance.

Whether automation runs (with Resume for approvers while it is paused), the cases waiting for
a person (oldest first, each row with who is on it and an **Open card** link to its card),
disputes Stripe has not decided, refunds whose Checkfront write-back is still being retried,
and webhook events that failed (with how many wait for an automatic retry). Drawn fresh each
time the tab is opened.

The waiting list has a filter (a static select: taken by me, within my limit, all), pages of
`HOME_ROWS` with Previous / Next, and **Search by booking** (a modal, `search_modal`) whose
answer is drawn at the top of the tab with a button to clear it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.slack.ui import ids
from bot.slack.ui.disputes import dispute_line
from bot.slack.ui.intake import RETRY_COMMAND, failed_line
from bot.slack.ui.kit import (
    BUTTON_VALUE,
    actions,
    button,
    confirm,
    context,
    date_token,
    divider,
    esc,
    header,
    line_sections,
    modal,
    money,
    plain,
    plain_text,
    section,
    text_input,
    who,
)
from services.disputes.issues import PaymentIssue
from services.intake.events import EventRow
from services.refunds.automation import Automation
from services.refunds.models import Case
from services.refunds.ownership import Claim
from services.refunds.worklist import ALL, LIMIT, MINE
from services.refunds.writeback import PendingWriteback

HOME_ROWS = 10  # rows per list (a page of the waiting list); the rest is counted
FILTER_LABELS = {MINE: "Taken by me", LIMIT: "Within my limit", ALL: "All waiting"}
TITLES = {MINE: "Waiting for approval · taken by you", LIMIT:
          "Waiting for approval · within your limit", ALL: "Waiting for approval"}
EMPTY = {MINE: "you have taken no waiting case: press *I'll take it* on a card",
         LIMIT: "nothing waiting is within your approval limit",
         ALL: "nothing is waiting for a person"}
OPEN_CARD = "home_open_card"   # + ":<case id>" (an action id is unique in a view); ack only


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
    view: str = ALL                                    # the waiting list's filter
    page: int = 0
    claims: dict[int, Claim] = field(default_factory=dict)   # who is on which waiting case
    search: tuple[str, list[tuple[Case, str | None]]] | None = None   # booking, its cases


def home_view(facts: HomeFacts, *, approver: bool) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [header("Refund operations")]
    blocks += _automation(facts.automation, approver)
    blocks.append(divider())
    blocks.append(_controls(facts.view))
    if facts.search is not None:
        blocks += _search(*facts.search, facts.claims)
    blocks += _waiting(facts)
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


def _controls(view: str) -> dict[str, Any]:
    options = [{"text": plain_text(label, 75), "value": value}
               for value, label in FILTER_LABELS.items()]
    chosen = next(o for o in options if o["value"] == (view if view in FILTER_LABELS else ALL))
    select = {"type": "static_select", "action_id": ids.HOME_FILTER,
              "placeholder": plain_text("Show…", 150), "options": options,
              "initial_option": chosen}
    return actions(select, button("Search by booking", ids.HOME_SEARCH, "search"))


def _row(case: Case, link: str | None, claim: Claim | None) -> dict[str, Any]:
    on_it = f" · {who(claim.user)} is on it" if claim else ""
    block = section(
        f"*case #{case.id}* `{esc(case.booking_code, 60)}` · "
        f"{money(case.refund_amount, case.currency)} · "
        f"{esc(case.status.value.replace('_', ' '), 40)} since "
        f"{date_token(case.created_at)}{on_it}")
    if link:
        block["accessory"] = {"type": "button", "text": plain_text("Open card", 75),
                              "action_id": f"{OPEN_CARD}:{case.id}", "url": link}
    return block


def _waiting(facts: HomeFacts) -> list[dict[str, Any]]:
    view = facts.view if facts.view in TITLES else ALL
    blocks = [section(f"*{TITLES[view]} ({facts.waiting_total})*")]
    if not facts.waiting:
        blocks.append(section(f"_{EMPTY[view]}_"))
    blocks += [_row(case, link, facts.claims.get(case.id)) for case, link in facts.waiting]
    pages = max(1, -(-facts.waiting_total // HOME_ROWS))
    if pages > 1:
        nav = []
        if facts.page > 0:
            nav.append(button("Previous", ids.HOME_PAGE, f"{view}:{facts.page - 1}"))
        if facts.page + 1 < pages:
            nav.append(button("Next", ids.HOME_PAGE, f"{view}:{facts.page + 1}"))
        blocks.append(context(f"Page {facts.page + 1} of {pages} · oldest first"))
        if nav:
            blocks.append(actions(*nav))
    return blocks


def _search(booking: str, found: list[tuple[Case, str | None]],
            claims: dict[int, Claim]) -> list[dict[str, Any]]:
    blocks = [section(f"*Cases of booking `{esc(booking, 60)}` ({len(found)})*")]
    if not found:
        blocks.append(section("_no case for that booking: `/refund quote "
                              f"{esc(booking, 60)}` quotes it_"))
    blocks += [_row(case, link, claims.get(case.id)) for case, link in found]
    blocks.append(actions(button("Clear search", ids.HOME_PAGE, f"{ALL}:0")))
    blocks.append(divider())
    return blocks


def search_modal() -> dict[str, Any]:
    """Search by booking: its code (`KMVQ-060314`) or Checkfront id."""
    return modal(ids.SEARCH_VIEW, "Search by booking", [
        text_input(ids.SEARCH_BLOCK, ids.SEARCH_INPUT, "Booking code or id",
                   placeholder="KMVQ-060314", max_length=60)],
        submit="Search", close="Cancel", private_metadata="")


def page_of(value: str) -> tuple[str, int]:
    """A Previous / Next button's value ("mine:2") read back; the first page of all when
    it is not one."""
    view, _, page = value.partition(":")
    if view not in FILTER_LABELS or not page.isdigit() or len(value) > BUTTON_VALUE:
        return ALL, 0
    return view, int(page)


def search_text(booking: str) -> str:
    """What was typed into the search box, cleaned for use as a booking reference."""
    return plain(booking, 60).strip()


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
