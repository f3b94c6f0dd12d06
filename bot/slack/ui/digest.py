"""The daily digest and the reconciliation report, rendered: Block Kit for the digest channel,
plain text for the log and the command line.

Pure functions from the day's run, figures, anomalies, automation state, open disputes and
webhook events that failed to a `Message` or a string; no store, no network. In the Block Kit
digest every text from a booking, a person, Stripe or Checkfront is escaped (`kit.esc`), times
are `kit.date_token`s and amounts `kit.money`; the plain-text digest is for the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from bot.slack.ui.departure import offer_button
from bot.slack.ui.disputes import dispute_line
from bot.slack.ui.intake import RETRY_COMMAND, failed_line, failed_text
from bot.slack.ui.kit import (
    MARKUP,
    Message,
    actions,
    clip,
    context,
    date_token,
    divider,
    esc,
    header,
    line_sections,
    section,
)
from bot.text import (
    anomaly_line,
    automation_line,
    digest_recon_lines,
    digest_refund_lines,
    digest_summary,
    money_or_raw,
    problem_line,
    resolved_line,
)
from services.disputes.issues import PaymentIssue
from services.finance.anomaly import Anomaly
from services.finance.journal import Journal
from services.finance.runs import (
    AMOUNT_MISMATCH,
    CHECKFRONT_NOT_UPDATED,
    CURRENCY_MISMATCH,
    EXTERNAL,
    FAILED,
    KINDS,
    MATCHED,
    MISSING_FROM_PAYOUT,
    MISSING_IN_STRIPE,
    STALE_PENDING,
    UNMATCHED_REFUND_FAILURE,
    Discrepancy,
    ReconRun,
    SettlementFigures,
)
from services.finance.stats import DayStats
from services.intake.events import EventRow
from services.money import MoneyError, display
from services.refunds.automation import Automation

LABELS = {
    MATCHED: "matched", EXTERNAL: "external", MISSING_IN_STRIPE: "missing in Stripe",
    AMOUNT_MISMATCH: "amount mismatch", CURRENCY_MISMATCH: "currency mismatch",
    FAILED: "failed", STALE_PENDING: "stale pending",
    CHECKFRONT_NOT_UPDATED: "Checkfront not updated",
    MISSING_FROM_PAYOUT: "missing from payout",
    UNMATCHED_REFUND_FAILURE: "refund failure not in our ledger",
}


# ---- Block Kit --------------------------------------------------------------------------------

def digest_message(run: ReconRun, stats: DayStats, anomalies: list[Anomaly],
                   automation: Automation, card_links: dict[int, str],
                   disputes: Sequence[PaymentIssue] = (),
                   failed_events: Sequence[EventRow] = ()) -> Message:
    """The digest for the digest channel; `card_links` links waiting cases to their cards."""
    day = run.day.isoformat()
    refunds = _bullets(digest_refund_lines(stats, MARKUP))
    recon = _bullets(digest_recon_lines(run, MARKUP))
    problems = _bullets([problem_line(p, MARKUP) for p in run.open_errors]
                        + [resolved_line(p, MARKUP) for p in run.resolved])
    alerts = _bullets([anomaly_line(a, MARKUP) for a in anomalies])
    state = automation_line(automation, MARKUP)
    waiting = [f"• {_case_link(i, card_links.get(i))} `{esc(code, 60)}` waiting since "
               f"{date_token(since)}" for i, code, since in stats.waiting]
    open_disputes = [dispute_line(issue) for issue in disputes]
    blocks: list[dict[str, Any]] = [header(f"Refund digest · {day}")]
    blocks += line_sections(refunds, title="Refunds")
    blocks.append(divider())
    blocks += line_sections(recon or ["• nothing to reconcile"], title="Reconciliation")
    if problems:
        blocks += line_sections(problems, title="Open discrepancies")
    blocks += line_sections(alerts or ["• none"], title="Anomalies")
    offers = [b for b in (offer_button(a.numbers) for a in anomalies) if b is not None]
    if offers:   # a spike mostly for one departure: its card, one click away
        blocks.append(actions(*offers[:5]))
    blocks.append(section(state))
    if waiting:
        blocks += line_sections(waiting, title="Waiting for approval over 24 h")
    if open_disputes:
        blocks += line_sections(open_disputes, title="Open disputes")
    if failed_events:
        blocks += line_sections(
            [*(failed_line(row) for row in failed_events),
             f"_Retry one from its card, or with `{RETRY_COMMAND} N`._"],
            title=f"Webhook events not processed ({len(failed_events)})")
    blocks.append(context(f"{esc(run.tz, 60)} day · {run.stripe_count} Stripe refunds read · "
                          f"ran {date_token(run.ran_at)}"))
    summary = digest_summary(run, anomalies, automation)
    if failed_events:
        summary += f", {len(failed_events)} webhook event" \
            f"{'' if len(failed_events) == 1 else 's'} failed"
    text = clip(summary, 300)
    return Message(text=text, blocks=blocks[:50])


def _bullets(lines: list[str]) -> list[str]:
    return [f"• {line}" for line in lines]


def _settled(run: ReconRun) -> dict[str, SettlementFigures]:
    """The run's settlement figures; none for a run (or a stand-in of one) that did not
    settle."""
    return getattr(run, "settlement", None) or {}


def _case_link(case_id: int, link: str | None) -> str:
    return f"<{link}|case #{case_id}>" if link else f"case #{case_id}"


def journal_comment(day: date, journals: Sequence[Journal], left_out: Sequence[Journal]) -> str:
    """The comment on the digest's journal file: what each currency's journal holds."""
    lines = [f"*Journal for {esc(day.isoformat(), 10)}*"]
    for j in journals:
        what = "not in this file (the format carries no currency)" if j in left_out else \
            f"{len(j.lines)} lines"
        lines.append(f"• {money_or_raw(j.stripe + j.by_hand, j.currency, MARKUP)} refunded in "
                     f"{j.cases} case(s), {money_or_raw(j.fees, j.currency, MARKUP)} fees "
                     f"retained: {what}")
    return "\n".join(lines)


# ---- plain text -------------------------------------------------------------------------------

def digest_text(run: ReconRun, stats: DayStats, anomalies: list[Anomaly],
                automation: Automation, disputes: Sequence[PaymentIssue] = (),
                failed_events: Sequence[EventRow] = ()) -> str:
    """The daily digest as plain text (the Slack digest carries the same sections)."""
    lines = [f"Daily digest for {run.day.isoformat()} ({run.tz})", "", "Refunds:"]
    if not stats.refunds:
        lines.append("  none")
    for currency, (count, total) in stats.refunds.items():
        lines.append(f"  {currency}: {count} refund(s), {display(total, currency)}")
    d = stats.decisions
    lines.append(f"  decisions: {d.get('auto_approve', 0)} automatic, {d.get('approve', 0)} "
                 f"approved by a person, {d.get('deny', 0)} denied")
    if stats.median_minutes_to_refund is not None:
        lines.append(f"  median time from cancellation to refund: "
                     f"{_duration(stats.median_minutes_to_refund)}")
    lines += ["", render_text(run), "", "Anomalies:"]
    lines += [f"  - {'BLOCKING ' if a.blocking else ''}{a.reason}" for a in anomalies] or \
        ["  none"]
    lines.append("Automation: " + (f"PAUSED by {automation.by} ({automation.reason})"
                                   if automation.paused else "running"))
    lines += ["", "Cases waiting for approval for more than 24 hours:"]
    lines += [f"  - case {case_id} ({code}) since {since[:16]}"
              for case_id, code, since in stats.waiting] or ["  none"]
    lines += ["", "Open disputes:"]
    lines += [f"  - {d.stripe_id} {d.booking_code or '(booking not found)'} "
              f"{display(d.amount, d.currency)} {d.reason or 'general'}, "
              f"{d.stripe_status or 'open'}, evidence due {(d.due_by or 'unknown')[:16]}"
              for d in disputes] or ["  none"]
    lines += ["", "Webhook events not processed:"]
    lines += [f"  - {failed_text(row)}" for row in failed_events] or ["  none"]
    return "\n".join(lines)


def render_text(run: ReconRun) -> str:
    """The reconciliation run as plain text for the command line."""
    local = ZoneInfo(run.tz)
    start = run.window_start.astimezone(local)
    end = run.window_end.astimezone(local)
    lines = [
        f"Reconciliation for {run.day.isoformat()} ({run.tz}, {start:%Y-%m-%d %H:%M} to "
        f"{end:%Y-%m-%d %H:%M} local)",
        f"Stripe refunds in the window: {run.stripe_count}",
        "Counts: " + ", ".join(f"{LABELS[k]} {run.counts.get(k, 0)}" for k in KINDS),
    ]
    if run.totals:
        lines.append("Totals:")
        for currency, figures in run.totals.items():
            parts = ", ".join(f"{name} {_amount(v, currency)}" for name, v in figures.items())
            lines.append(f"  {currency}: {parts}")
    if _settled(run):
        lines.append("Settlement:")
        for currency, f in _settled(run).items():
            lines.append(f"  {currency}: Stripe fees lost to refunds "
                         f"{_amount(f.fees_lost, currency)} (processing fees kept "
                         f"{_amount(f.fees_kept, currency)}, refund fees "
                         f"{_amount(f.refund_fees, currency)}); {f.refunds} refund(s) of "
                         f"{_amount(f.refunded, currency)} settled, {f.in_payout} in a payout; "
                         f"missing from payouts {f.missing_from_payout} "
                         f"({_amount(f.missing_amount, currency)}); refund failures "
                         f"{f.failures} ({_amount(f.failures_amount, currency)}), "
                         f"{f.unmatched_failures} not matched in our ledger")
    problems = [d for d in run.discrepancies if d.error]
    lines.append(f"Discrepancies ({len(problems)}):" if problems else "No discrepancies.")
    lines += [_line(d) for d in problems]
    info = run.informational
    if info:
        lines.append(f"Informational ({len(info)}):")
        lines += [_line(d) for d in info]
    if run.resolved:
        lines.append(f"Resolved by this run ({len(run.resolved)}):")
        lines += [_line(d) for d in run.resolved]
    if run.notes:
        lines.append("Notes:")
        lines += [f"  - {n}" for n in run.notes]
    return "\n".join(lines)


def _line(d: Discrepancy) -> str:
    state = f" [resolved {d.resolved_at[:16]}]" if d.resolved_at else ""
    since = f" (since {d.day})" if d.day else ""
    return (f"  - {LABELS.get(d.kind, d.kind)}: {d.booking_code or '?'} {d.money}{since}: "
            f"{d.detail}{state}")


def _amount(minor: int, currency: str) -> str:
    try:
        return display(minor, currency)
    except MoneyError:
        return f"{minor} {currency}"


def _duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if hours else f"{rest} min"
