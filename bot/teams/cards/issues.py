"""The dispute and failed-payment cards on Teams: one card per issue, the same facts as on Slack
(`bot.slack.ui.disputes`). The decisions on an issue (submit evidence, accept, retry, cancel the
booking) are Slack's and the command line's; a Teams card shows the issue, how it ended, and
links to it in the Stripe Dashboard (and to the payment link, when one was made).

Pure functions from `PaymentIssue` to Adaptive Card content dicts. Nothing here names the
customer, and every free text goes through `text.md`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bot.card_links import NO_LINKS, STRIPE_DASHBOARD, CardLinks
from bot.teams.cards import kit
from bot.teams.cards.text import md, money, utc, when, who
from services.disputes.issues import DISPUTE, IssueState, PaymentIssue

PREVIEW_CHARS = 280
EVIDENCE_ORDER = ("cancellation_rebuttal", "refund_policy_disclosure",
                  "cancellation_policy_disclosure", "refund_refusal_explanation",
                  "product_description", "service_date", "uncategorized_text")
MARKS = {IssueState.SUBMITTED: "✅", IssueState.ACCEPTED: "🏳️", IssueState.PAID: "✅",
         IssueState.CANCELLED: "⛔"}


def issue_card(issue: PaymentIssue, links: CardLinks = NO_LINKS) -> dict[str, Any]:
    return dispute_card(issue, links) if issue.kind == DISPUTE \
        else failed_payment_card(issue, links)


def _reason(issue: PaymentIssue) -> str:
    return md((issue.reason or "general").replace("_", " "), 60).capitalize()


def _outcome(issue: PaymentIssue) -> list[dict[str, Any]]:
    if not issue.outcome:
        return []
    by = f" — {who(issue.acted_by)} at {when(issue.acted_at)}" if issue.acted_by else ""
    said = md(issue.outcome, 600)
    said = said[:1].upper() + said[1:]
    if issue.state == IssueState.WORKING:
        return [kit.text(f"⏳ {said}…{by}")]
    if issue.state in MARKS:
        return [kit.text(f"{MARKS[issue.state]} {said}{by}")]
    if "failed" in issue.outcome:
        return [kit.text(f"❌ **{said}**{by}", color="Attention")]
    return [kit.text(f"ℹ️ {said}{by}")]


def _stripe(path: str, ident: str, links: CardLinks) -> list[dict[str, Any]]:
    if links.stripe_test is None or not ident:
        return []
    test = "test/" if links.stripe_test else ""
    return [kit.open_url("View in Stripe",
                         f"{STRIPE_DASHBOARD}/{test}{path}/{quote(ident, safe='')}")]


def _known(issue: PaymentIssue) -> list[dict[str, Any]]:
    return kit.section("What the bot knows", [md(f, 400) for f in issue.facts], limit=8)


def dispute_card(issue: PaymentIssue, links: CardLinks = NO_LINKS) -> dict[str, Any]:
    amount = money(issue.amount, issue.currency)
    body = [kit.heading(f"Dispute · {amount}"),
            kit.facts([("Booking", md(issue.booking_code, 60) or "not found"),
                       ("Reason", _reason(issue)),
                       ("Evidence due", utc(issue.due_by) if issue.due_by else "unknown"),
                       ("Stripe status", md(issue.stripe_status or "—", 40)),
                       ("Charge", md(issue.charge or issue.payment_intent or "—", 60)),
                       ("Issue", f"#{issue.id} · opened {utc(issue.created_at)}")])]
    body += _known(issue)
    evidence = issue.evidence
    preview = [f"_{name.replace('_', ' ')}_: {md(evidence[name], PREVIEW_CHARS)}"
               for name in EVIDENCE_ORDER if name in evidence]
    preview += [f"_{md(name.replace('_', ' '), 60)}_: {md(text, PREVIEW_CHARS)}"
                for name, text in evidence.items() if name not in EVIDENCE_ORDER]
    body += kit.section("Evidence submitted" if issue.state == IssueState.SUBMITTED
                        else "Evidence pack (from our records)", preview, limit=8)
    body += _outcome(issue)
    return kit.card(body, _stripe("disputes", issue.stripe_id, links),
                    fallback=f"Dispute {amount} on booking "
                             f"{md(issue.booking_code or 'unknown', 60)}: {_reason(issue)}")


def failed_payment_card(issue: PaymentIssue, links: CardLinks = NO_LINKS) -> dict[str, Any]:
    amount = money(issue.amount, issue.currency)
    failures = int(issue.detail.get("failures") or 1)
    body = [kit.heading(f"Payment failed · {amount}"),
            kit.facts([("Booking", md(issue.booking_code, 60) or "not found"),
                       ("Why it failed", md(issue.reason or "unknown", 300)),
                       ("Stripe status", md(issue.stripe_status or "—", 40)),
                       ("Payment", md(issue.stripe_id, 60)),
                       ("Failures", str(failures)),
                       ("Issue", f"#{issue.id} · first failed {utc(issue.created_at)}")])]
    body += _known(issue)
    actions = _stripe("payments", issue.stripe_id, links)
    if issue.link_url and issue.link_url.startswith("https://") and len(issue.link_url) < 2048:
        body.append(kit.text("A payment link was made: send it to the customer; it can be "
                             "paid once."))
        actions.append(kit.open_url("Open payment link", issue.link_url))
    body += _outcome(issue)
    return kit.card(body, actions, fallback=f"Payment failed: {amount} for booking "
                    f"{md(issue.booking_code or 'unknown', 60)}: "
                    f"{md(issue.reason or 'unknown', 120)}")
