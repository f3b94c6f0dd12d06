"""What a waiting card's thread is told, and what the person who asked is told at the end.

The reminder mentions the approvers (their user group as `<!subteam^ID>` when one is set,
else each approver) or, once someone took the card, its holder; the escalation mentions the
finance leads (the approvers when there are none). The note to whoever pressed **Request
refund** says how the case ended and who decided it. Every text is mrkdwn whose pieces from
people or bookings are escaped; times are date tokens, amounts `money`.
"""

from __future__ import annotations

import re

from bot.slack.ui.kit import date_token, esc, money, who
from bot.text import final_amount
from services.refunds.models import Case, Status
from services.refunds.ownership import Claim
from services.refunds.permissions import ApproverRules
from services.refunds.reminders import ESCALATION, Nudge

_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")

OUTCOMES = {
    Status.REFUNDED: "was refunded",
    Status.PARTIALLY_REFUNDED: "was approved; part of it must be refunded by hand",
    Status.DENIED: "was denied",
    Status.SKIPPED: "needed no refund",
    Status.FAILED: "was approved but the refund failed; the approvers will retry it",
    Status.REFUNDED_BY_HAND: "was refunded (part of it by hand)",
}


def approver_mentions(rules: ApproverRules) -> str:
    if rules.group_id and _GROUP.fullmatch(rules.group_id):
        return f"<!subteam^{rules.group_id}>"
    people = sorted(rules.approvers) or sorted(rules.finance_leads)
    return " ".join(who(p) for p in people) or "approvers"


def lead_mentions(rules: ApproverRules) -> str:
    if rules.finance_leads:
        return " ".join(who(p) for p in sorted(rules.finance_leads))
    return approver_mentions(rules)


def nudge_text(nudge: Nudge, rules: ApproverRules, claim: Claim | None) -> str:
    what = (f"{money(nudge.refund_amount, nudge.currency)} for booking "
            f"`{esc(nudge.booking_code, 60)}`, waiting since {date_token(nudge.waiting_since)}")
    if nudge.kind == ESCALATION:
        held = f" {who(claim.user)} took it but it is still open." if claim else ""
        return (f":rotating_light: *Escalated* to {lead_mentions(rules)}: {what}.{held} "
                "Please decide it or hand it on.")
    if claim is not None:
        return f":alarm_clock: Reminder for {who(claim.user)}, who took this one: {what}."
    return (f":alarm_clock: Reminder, {approver_mentions(rules)}: {what}. "
            "Press *I'll take it* on the card to own it.")


def requester_note(case: Case, decided_by: str | None) -> str:
    outcome = OUTCOMES.get(case.status, f"is {esc(case.status.value.replace('_', ' '), 40)}")
    amount = final_amount(case)
    by = f" (decided by {who(decided_by)})" if decided_by and decided_by != "policy" else ""
    return (f"The refund you asked for on booking `{esc(case.booking_code, 60)}` "
            f"({money(amount, case.currency)}, case #{case.id}) {outcome}{by}.")
