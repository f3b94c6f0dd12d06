"""Owns the thread reply under a decided card: what happened to the refund, step by step.

A pure function from the case and its audit entries to the reply's mrkdwn text. It says who
decided and when, each Stripe refund (its id is the reference people quote to Stripe) with its
amount, what Stripe refused and why, what was refunded by hand (amount, method, reference),
and whether Checkfront was updated. Idempotency keys,
quote versions and other internal ids stay in the audit. Every text from a person, Stripe or
Checkfront is escaped (`kit.esc`), times are `kit.date_token`s, amounts `kit.money`.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.slack.ui.kit import amounts_in, date_token, esc, money, who
from services.money import MoneyError, to_minor
from services.refunds.manual import METHODS
from services.refunds.models import Case
from services.store.audit import AuditEntry

THREAD_REASON = 600  # characters of a reason or an error shown in the thread


def _amount(text: object, currency: str) -> str:
    """An amount as the audit keeps it (a decimal string) in `money`'s form."""
    try:
        return money(to_minor(str(text), currency), currency)
    except (MoneyError, ValueError):
        return esc(text, 40)


def _step(entry: AuditEntry, currency: str) -> str | None:
    d = entry.detail
    if entry.action == "stripe.refund":
        status = str(d.get("status") or "")
        state = "" if status == "succeeded" else f" ({esc(status, 30)})"
        return (f"• Stripe refund `{esc(d.get('refund_id'), 60)}` of "
                f"{_amount(d.get('amount'), currency)} to payment "
                f"`{esc(d.get('payment'), 60)}`{state}")
    if entry.action == "stripe.refund_error":
        return (f"• Stripe refused the refund on payment `{esc(d.get('payment'), 60)}`: "
                f"{esc(amounts_in(str(d.get('error') or 'no reason given'), currency), 600)}")
    if entry.action == "checkfront.written":
        return f"• Checkfront updated {date_token(entry.at)}"
    if entry.action == "checkfront.writeback_failed":
        return (f"• Checkfront not updated yet ({esc(d.get('error') or 'no reason given', 200)})"
                "; the bot retries it")
    if entry.action == "case.refunded_by_hand":
        ref = f", reference `{esc(d.get('reference'), 100)}`" if d.get("reference") else ""
        method = esc(METHODS.get(str(d.get("method")), str(d.get("method"))), 40)
        return (f"• Refunded by hand: {_amount(d.get('amount'), currency)} by {method}{ref}, "
                f"recorded by {who(entry.actor)} at {date_token(entry.at)}")
    if entry.action in ("case.approved", "case.denied"):
        reason = d.get("reason")
        said = f": {esc(amounts_in(str(reason), currency), THREAD_REASON)}" if reason else ""
        return (f"• {entry.action.split('.', 1)[1].capitalize()} by {who(entry.actor)} at "
                f"{date_token(entry.at)}{said}")
    return None


def thread_reply(case: Case, entries: Iterable[AuditEntry]) -> str:
    """The reply's text: the outcome line, then one line per step that matters to people."""
    status = case.status.value.replace("_", " ")
    why = f" — {esc(amounts_in(case.status_reason, case.currency), THREAD_REASON)}" \
        if case.status_reason else ""
    lines = [f"Case #{case.id} `{esc(case.booking_code, 60)}`: *{status}*{why}"]
    lines += [line for entry in entries if (line := _step(entry, case.currency)) is not None]
    return "\n".join(lines)
