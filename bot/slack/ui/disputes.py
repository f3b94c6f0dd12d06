"""Owns the dispute and failed-payment cards: one card per issue, buttons while it is open.

Pure functions from `PaymentIssue` to `Message`; no network. Button values carry only the issue
id (`payloads.IssueRef`); the button ids are in `ids`. Nothing here names the customer: the
facts and the evidence preview come from the bot's own records, and every free text goes through
`esc` (which masks anything shaped like an email, phone or card number).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.slack.ui import ids
from bot.slack.ui.kit import (
    Message,
    actions,
    archive_link,
    button,
    confirm,
    context,
    date_token,
    esc,
    fallback,
    fields,
    fit,
    header,
    line_sections,
    money,
    plain,
    section,
    who,
)
from bot.slack.ui.payloads import IssueRef, parse
from services.disputes.issues import DISPUTE, IssueState, PaymentIssue

PREVIEW_CHARS = 280  # per evidence field on the card
# Evidence fields in the order a reader wants them.
EVIDENCE_ORDER = ("cancellation_rebuttal", "refund_policy_disclosure",
                  "cancellation_policy_disclosure", "refund_refusal_explanation",
                  "product_description", "service_date", "uncategorized_text")
REASONS = {
    "bank_cannot_process": "Bank cannot process", "credit_not_processed": "Credit not processed",
    "customer_initiated": "Customer initiated", "debit_not_authorized": "Debit not authorized",
    "duplicate": "Duplicate", "fraudulent": "Fraudulent", "general": "General",
    "incorrect_account_details": "Incorrect account details",
    "insufficient_funds": "Insufficient funds", "product_not_received": "Product not received",
    "product_unacceptable": "Product unacceptable", "subscription_canceled":
    "Subscription canceled", "unrecognized": "Unrecognized",
}


def issue_value(issue: PaymentIssue) -> str:
    """The value of an issue card's buttons: `IssueRef` on the wire."""
    return IssueRef(issue.id).dumps()


def parse_issue_value(value: object) -> int:
    """The issue id from an issue card's button; ValueError when it is not one."""
    return parse(IssueRef, value).issue_id


def issue_card(issue: PaymentIssue) -> Message:
    return dispute_card(issue) if issue.kind == DISPUTE else failed_payment_card(issue)


def _booking(issue: PaymentIssue) -> str:
    return f"`{esc(issue.booking_code, 60)}`" if issue.booking_code else "not found"


def _outcome_lines(issue: PaymentIssue) -> list[str]:
    """Who did what, when, and how it ended (replaces the buttons once final)."""
    by = f" — {who(issue.acted_by)} at {date_token(issue.acted_at)}" if issue.acted_by else ""
    text = esc(issue.outcome or "", 600)
    outcome = text[:1].upper() + text[1:]
    if issue.state == IssueState.WORKING:
        return [f":hourglass_flowing_sand: {outcome}…{by}"]
    marks = {IssueState.SUBMITTED: ":white_check_mark:", IssueState.ACCEPTED: ":waving_white_flag:",
             IssueState.PAID: ":white_check_mark:", IssueState.CANCELLED: ":no_entry:"}
    if issue.state in marks:
        return [f"{marks[issue.state]} {outcome}{by}"]
    if issue.outcome and "failed" in issue.outcome:
        return [f":x: *{outcome}*{by}"]
    if issue.outcome:
        return [f":information_source: {outcome}{by}"]
    return []


def dispute_card(issue: PaymentIssue) -> Message:
    amount = money(issue.amount, issue.currency)
    reason = REASONS.get(issue.reason or "", esc(issue.reason or "general", 60))
    blocks = [header(f"Dispute · {amount}")]
    pairs = [("Booking", _booking(issue)), ("Reason", reason),
             ("Evidence due", date_token(issue.due_by) if issue.due_by else "unknown"),
             ("Amount", f"*{amount}*"),
             ("Stripe status", esc(issue.stripe_status or "—", 40)),
             ("Charge", f"`{esc(issue.charge or issue.payment_intent or '—', 60)}`")]
    blocks.append(fields(pairs))
    blocks += _facts(issue)
    evidence = issue.evidence
    preview = [f"• _{name}_: {esc(evidence[name], PREVIEW_CHARS)}"
               for name in EVIDENCE_ORDER if name in evidence]
    preview += [f"• _{esc(name, 60)}_: {esc(text, PREVIEW_CHARS)}"
                for name, text in evidence.items() if name not in EVIDENCE_ORDER]
    title = "Evidence submitted" if issue.state == IssueState.SUBMITTED else \
        "Evidence pack (from our records; sent to Stripe on Submit)"
    blocks += line_sections(preview, title=title, max_sections=2)

    def buttons(value: str, code: str) -> list[dict[str, Any]]:
        return [
            button("Submit evidence", ids.SUBMIT_EVIDENCE, value, style="primary",
                   confirm_dialog=confirm(
                       "Submit evidence to Stripe?",
                       f"Send the evidence pack for booking {code} to the card issuer now. "
                       "Submitted evidence cannot be changed.", "Submit", "Cancel")),
            button("Accept", ids.ACCEPT_DISPUTE, value, style="danger", confirm_dialog=confirm(
                "Accept this dispute?",
                f"Close the dispute as lost: {amount} stays with the cardholder. "
                "This cannot be undone.", "Accept", "Cancel", style="danger"))]

    return _with_tail(
        issue, blocks, buttons,
        footer=f"Dispute `{esc(issue.stripe_id, 60)}` · issue #{issue.id} · "
               f"opened {date_token(issue.created_at)}",
        text=f"Dispute {amount} on booking {esc(issue.booking_code or 'unknown', 60)}: "
             f"{reason}")


def failed_payment_card(issue: PaymentIssue) -> Message:
    amount = money(issue.amount, issue.currency)
    blocks = [header(f"Payment failed · {amount}")]
    failures = int(issue.detail.get("failures") or 1)
    pairs = [("Booking", _booking(issue)), ("Amount", f"*{amount}*"),
             ("Why it failed", esc(issue.reason or "unknown", 300)),
             ("Stripe status", esc(issue.stripe_status or "—", 40)),
             ("Payment", f"`{esc(issue.stripe_id, 60)}`"),
             ("Failures", str(failures))]
    blocks.append(fields(pairs))
    blocks += _facts(issue)
    if issue.link_url:
        url = issue.link_url.replace("|", "%7C").replace(">", "%3E")
        blocks.append(section(f"*Payment link:* <{url}|{esc(url, 200)}>\n"
                              "Send it to the customer; it can be paid once."))

    def buttons(value: str, code: str) -> list[dict[str, Any]]:
        shown = [button("Retry", ids.RETRY_PAYMENT, value, style="primary",
                        confirm_dialog=confirm(
                            "Retry this payment?", f"Charge {amount} again for booking {code} "
                            "with the same payment method.", "Retry", "Cancel"))]
        if not issue.link_url:
            shown.append(button("Send payment link", ids.PAYMENT_LINK, value))
        shown.append(button("Cancel booking", ids.CANCEL_BOOKING, value, style="danger",
                            confirm_dialog=confirm(
                                "Cancel this booking?",
                                f"Set booking {code} to VOID in Checkfront. The customer is "
                                "not notified.", "Cancel booking", "Keep it", style="danger")))
        return shown

    return _with_tail(
        issue, blocks, buttons,
        footer=f"Failed payment · issue #{issue.id} · first failed "
               f"{date_token(issue.created_at)}",
        text=f"Payment failed: {amount} for booking "
             f"{esc(issue.booking_code or 'unknown', 60)}: {esc(issue.reason or 'unknown', 120)}")


def _facts(issue: PaymentIssue) -> list[dict[str, Any]]:
    return line_sections([f"• {esc(f, 400)}" for f in issue.facts],
                         title="What the bot knows", max_sections=1)


def _with_tail(issue: PaymentIssue, blocks: list[dict[str, Any]],
               buttons: Callable[[str, str], list[dict[str, Any]]], *, footer: str,
               text: str) -> Message:
    """What both issue cards end with: the outcome so far, the buttons while the issue is open
    (given the button value and the booking code for the confirm dialogs) and the footer; when
    the card is too long, the blocks before them are cut, never these."""
    tail = line_sections(_outcome_lines(issue), max_sections=1)
    if issue.state == IssueState.OPEN:
        code = plain(issue.booking_code or "unknown booking", 60)
        tail.append(actions(*buttons(issue_value(issue), code)))
    tail.append(context(footer))
    return Message(fallback(text), fit(blocks + tail, len(tail)))


def dispute_line(issue: PaymentIssue) -> str:
    """One line for a list of disputes (digest, home tab), linked to its card when known."""
    link = archive_link(issue.slack_channel, issue.slack_ts) \
        if issue.slack_channel and issue.slack_ts else None
    name = f"<{link}|{esc(issue.stripe_id, 60)}>" if link else f"`{esc(issue.stripe_id, 60)}`"
    due = date_token(issue.due_by) if issue.due_by else "unknown"
    return (f"• {name} · {esc(issue.booking_code or 'booking not found', 60)} · "
            f"{money(issue.amount, issue.currency)} · {esc(issue.reason or 'general', 40)} · "
            f"{esc(issue.stripe_status or 'open', 40)} · evidence due {due}")
