"""Text every chat platform shares: clipping, masking contact and card data in free text,
reading a stored time, showing the bare amounts inside a service's text as money, and the
sentences and figures of a case's outcome and of the daily digest.

Each platform escapes for its own markup on top (Slack: `bot.slack.ui.kit.esc`, Teams:
`bot.teams.cards.text.md`): the shared sentences take a `Markup`, the platform's escaping, bold,
code, people, times and icons, and give back lines in that platform's markup. Blocks and card
elements stay each renderer's own (`bot.slack.ui`, `bot.teams.cards`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.finance.anomaly import Anomaly
from services.finance.runs import Discrepancy, ReconRun
from services.finance.stats import DayStats
from services.money import MoneyError, display, exponent, to_minor
from services.refunds.automation import Automation
from services.refunds.ledger import SETTLED
from services.refunds.models import Case, Status

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")  # lookbehind: linear time
_PHONE = re.compile(r"\+\d[\d\s().-]{6,}\d")
# card numbers: 13-19 digits together, in groups of four, or Amex's 4-6-5 (not date ranges)
_CARD = re.compile(r"\b(?:\d{13,19}|(?:\d{4}[ -]){3}\d{1,7}|\d{4}[ -]\d{6}[ -]\d{5})\b")


def clip(text: str, limit: int) -> str:
    """At most `limit` characters; a cut ends with an ellipsis."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def scrub(text: str) -> str:
    """Mask what looks like contact or card data in free text."""
    if "@" in text:
        text = _EMAIL.sub("[email hidden]", text)
    text = _CARD.sub("[number hidden]", text)
    return _PHONE.sub("[phone hidden]", text)


def parse_time(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_BARE_AMOUNT = re.compile(r"(?<![\w.,])(\d+)\.(\d+)(?![\w.,%]| ?[A-Z]{3}\b)")


def amounts_in(text: str, currency: str) -> str:
    """A service text ("refund 1525.00 is over the escalation limit 1500.00") with each bare
    decimal amount in the currency's exponent shown as `money` ("1,525.00 USD"); anything else,
    and currencies without decimals, as it was."""
    try:
        places = exponent(currency)
    except MoneyError:
        return text
    if not places or "." not in text:
        return text

    def shown(match: re.Match[str]) -> str:
        if len(match.group(2)) != places:
            return match.group(0)
        return display(to_minor(match.group(0), currency), currency)

    return _BARE_AMOUNT.sub(shown, text)


# --- the shared sentences, in a platform's markup ------------------------------------------

@dataclass(frozen=True)
class Markup:
    """How one platform writes what the shared sentences leave to it: free text escaped
    (`escape(text, limit)`), bold, code, a person, a time, and the icon of each kind of line
    (`ICONS` names them)."""

    escape: Callable[[object, int], str]
    bold: Callable[[str], str]
    code: Callable[[str], str]
    who: Callable[[str | None], str]
    when: Callable[[str | None], str]
    icons: Mapping[str, str]

    def icon(self, name: str) -> str:
        return self.icons[name]


ICONS = frozenset({"approved", "denied", "skipped", "refunding", "stripe", "failed", "waiting",
                   "warning", "resolved", "alarm", "paused", "running"})


def money_or_raw(minor: int, currency: str, markup: Markup) -> str:
    """`money`, or the bare figures (escaped) when the currency is not one we know."""
    try:
        return display(minor, currency)
    except MoneyError:
        return markup.escape(f"{minor} {currency}", 40)


# the outcome of a case

def final_amount(case: Case) -> int:
    """What the case refunds: the approved amount (adjusted or not), else the quote's."""
    return case.approved_amount if case.approved_amount is not None else case.refund_amount


def moved(refunds: Sequence[Mapping[str, Any]]) -> int:
    """What Stripe's refunds of a case moved (those settled), minor units."""
    return sum(int(r.get("amount") or 0) for r in refunds if r.get("status") in SETTLED)


def outcome_title(case: Case, refunds: Sequence[Mapping[str, Any]], by_hand: int = 0) -> str:
    """The outcome and the one amount that moved (or is to move). `by_hand`: the amount
    recorded as refunded by hand (minor units)."""
    c, final, went = case.currency, final_amount(case), moved(refunds)
    if case.status == Status.PARTIALLY_REFUNDED:
        if went:
            return f"Refunded {display(went, c)} through Stripe"
        return f"Approved — refund {display(max(final - went, 0), c)} by hand"
    if case.status == Status.REFUNDED_BY_HAND:
        return f"Refunded {display(went + by_hand, c)}"
    if case.status == Status.REFUNDED:
        return f"Refunded {display(went or final, c)}"
    return {
        Status.APPROVED: f"Refund approved · {display(final, c)}",
        Status.AUTO_APPROVED: f"Refund auto-approved · {display(final, c)}",
        Status.EXECUTING: f"Refunding {display(final, c)}…",
        Status.FAILED: f"Refund failed · {display(final, c)}",
        Status.DENIED: f"Refund denied · {display(case.refund_amount, c)}",
        Status.SKIPPED: "Nothing to refund",
        Status.PENDING_APPROVAL: f"Refund waiting for approval · {display(final, c)}",
        Status.QUOTED: f"Refund quoted · {display(final, c)}",
    }[case.status]


def refund_list(refunds: Sequence[Mapping[str, Any]], currency: str, markup: Markup, *,
                amounts: bool) -> str:
    """Stripe's refund ids (ten at most), each with its amount when `amounts` and its status
    when it did not succeed."""
    shown = []
    for r in refunds[:10]:
        said = [display(int(r.get("amount") or 0), currency)] if amounts else []
        status = "" if r.get("status") == "succeeded" else markup.escape(r.get("status"), 20)
        said += [status] if status else []
        shown.append(markup.code(markup.escape(r.get("stripe_refund_id"), 60))
                     + (f" ({', '.join(said)})" if said else ""))
    more = f" …and {len(refunds) - 10} more" if len(refunds) > 10 else ""
    return ", ".join(shown) + more


def outcome_lines(case: Case, decided_by: str | None, decided_at: str | None,
                  refunds: Sequence[Mapping[str, Any]], decision_reason: str | None,
                  markup: Markup) -> list[str]:
    """Who decided (and what an adjusted amount was adjusted from) and what moved, each amount
    once (the title's is not repeated). What is left by hand is each platform's to say: the
    way to record it differs."""
    c, status = case.currency, case.status
    final, went = final_amount(case), moved(refunds)
    icon, esc = markup.icon, markup.escape
    rows = []
    if decided_by and status not in (Status.DENIED, Status.SKIPPED, Status.QUOTED,
                                      Status.PENDING_APPROVAL):
        adjusted = ""
        if case.approved_amount is not None and case.approved_amount != case.refund_amount:
            why = decision_reason or (case.status_reason if status == Status.APPROVED else None)
            adjusted = f" (adjusted from {display(case.refund_amount, c)}" + \
                (f": {esc(why, 300)})" if why else ")")
        rows.append(f"{icon('approved')} Approved by {markup.who(decided_by)} at "
                    f"{markup.when(decided_at)}{adjusted}")
    several = len(refunds) > 1 or status in (Status.FAILED, Status.EXECUTING,
                                             Status.REFUNDED_BY_HAND)
    if status == Status.DENIED:
        by = f" by {markup.who(decided_by)} at {markup.when(decided_at)}" if decided_by else ""
        reason = decision_reason or case.status_reason or "no reason given"
        rows.append(f"{icon('denied')} Denied{by}: {esc(reason, 600)}")
    elif status == Status.SKIPPED:
        rows.append(f"{icon('skipped')} Skipped: "
                    f"{esc(amounts_in(case.status_reason or '—', c), 600)}")
    elif status == Status.EXECUTING:
        rows.append(f"{icon('refunding')} Refunding through Stripe…")
        if refunds:
            rows.append(f"So far: {refund_list(refunds, c, markup, amounts=True)}")
    elif status in (Status.REFUNDED, Status.PARTIALLY_REFUNDED, Status.REFUNDED_BY_HAND) \
            and refunds:
        rows.append(f"{icon('stripe')} Through Stripe: "
                    f"{refund_list(refunds, c, markup, amounts=several)}")
    elif status == Status.FAILED:
        rows.append(f"{icon('failed')} {markup.bold('Refund failed:')} "
                    f"{esc(amounts_in(case.status_reason or 'no reason given', c), 600)}")
        if refunds:
            rows.append(f"Stripe refunds so far: {refund_list(refunds, c, markup, amounts=True)}")
        if went:
            rows.append(f"Left to refund: {display(max(final - went, 0), c)}")
    elif status in (Status.PENDING_APPROVAL, Status.QUOTED):
        rows.append(f"{icon('waiting')} Waiting for a decision.")
    return rows


# the daily digest

def digest_refund_lines(stats: DayStats, markup: Markup) -> list[str]:
    """The day's refunds per currency, the decisions, the median time to refund."""
    lines = [f"{markup.escape(cur, 8)}: {n} refund(s), {markup.bold(display(total, cur))}"
             for cur, (n, total) in stats.refunds.items()] or ["none"]
    d = stats.decisions
    lines.append(f"{d.get('auto_approve', 0)} automatic · {d.get('approve', 0)} approved by "
                 f"a person · {d.get('deny', 0)} denied")
    if stats.median_minutes_to_refund is not None:
        hours, minutes = divmod(stats.median_minutes_to_refund, 60)
        lines.append(f"median cancellation → refund: {hours} h {minutes} min")
    return lines


def digest_recon_lines(run: ReconRun, markup: Markup) -> list[str]:
    """The run's counts, totals per currency and settlement figures (none: nothing to show)."""
    esc = markup.escape
    lines = [f"{kind.replace('_', ' ')}: {count}" for kind, count in sorted(run.counts.items())
             if count]
    lines += [f"totals {esc(cur, 8)}: "
              + ", ".join(f"{esc(k.replace('_', ' '), 40)} {money_or_raw(v, cur, markup)}"
                          for k, v in figures.items())
              for cur, figures in run.totals.items()]
    return lines + settlement_lines(run, markup)


def settlement_lines(run: ReconRun, markup: Markup) -> list[str]:
    """The run's settlement figures (when it settled): Stripe fees lost to refunds, refunds
    missing from payouts, refund failures Stripe reversed."""
    esc, lines = markup.escape, []
    for cur, f in (getattr(run, "settlement", None) or {}).items():
        lines.append(f"Stripe fees lost to refunds {esc(cur, 8)}: "
                     f"{markup.bold(money_or_raw(f.fees_lost, cur, markup))}"
                     f" ({f.refunds} refund(s) settled, {f.in_payout} in a payout)")
        if f.missing_from_payout:
            lines.append(f"{markup.icon('warning')} refunds missing from payouts {esc(cur, 8)}: "
                         f"{f.missing_from_payout} "
                         f"({money_or_raw(f.missing_amount, cur, markup)})")
        if f.failures:
            lines.append(f"refund failures reversed {esc(cur, 8)}: {f.failures} "
                         f"({money_or_raw(f.failures_amount, cur, markup)}), "
                         f"{f.unmatched_failures} not matched in our ledger")
    return lines


def problem_line(p: Discrepancy, markup: Markup) -> str:
    """An open discrepancy: its kind, booking, amount and what is wrong."""
    esc = markup.escape
    amount = money_or_raw(p.amount, p.currency, markup) \
        if p.amount is not None and p.currency else ""
    detail = amounts_in(p.detail, p.currency) if p.currency else p.detail
    return (f"{markup.icon('warning')} {esc(p.kind.replace('_', ' '), 40)} · "
            f"{esc(p.booking_code or '?', 60)} · {amount} — {esc(detail, 300)}")


def resolved_line(p: Discrepancy, markup: Markup) -> str:
    return (f"{markup.icon('resolved')} resolved: {markup.escape(p.kind.replace('_', ' '), 40)} "
            f"· {markup.escape(p.booking_code or '?', 60)}")


def anomaly_line(a: Anomaly, markup: Markup) -> str:
    return (f"{markup.icon('alarm')} " if a.blocking else "") + markup.escape(a.reason, 300)


def automation_line(automation: Automation, markup: Markup) -> str:
    if not automation.paused:
        return f"{markup.icon('running')} Automation running"
    return (f"{markup.icon('paused')} {markup.bold('Automation paused')} by "
            f"{markup.who(automation.by)}: "
            f"{markup.escape(automation.reason or 'no reason given', 300)}")


def digest_summary(run: ReconRun, anomalies: Sequence[Anomaly], automation: Automation) -> str:
    """The digest's fallback text: the day, its open discrepancies and anomalies."""
    return (f"Refund digest {run.day.isoformat()}: {len(run.open_errors)} open discrepancies, "
            f"{len(anomalies)} anomalies" + (", automation paused" if automation.paused else ""))


def daily_failed_text(day: str, reason: str, retry_at: datetime, tz: ZoneInfo) -> str:
    """What the digest channel is told when the daily run fails: the day, why (a kind, never a
    payload) and when it is tried again, in the business's time."""
    try:
        shown = date.fromisoformat(day).strftime("%a %d %b %Y")
    except ValueError:
        shown = day
    again = retry_at.astimezone(tz).strftime("%H:%M")
    return (f"The reconciliation and digest for {shown} could not run ({reason}). It is tried "
            f"again at {again} ({tz.key}); the digest follows once it runs.")
