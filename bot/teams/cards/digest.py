"""The Teams cards for the whole business rather than one case: the automation-paused alert with
Resume, the daily digest (with its chart as an image), and the answers to commands.

The digest says what the Slack digest says (`bot.slack.ui.digest.digest_message`), from the same
inputs. Its chart is the PNG the Slack digest uploads (`bot.slack.ui.chart.chart_png`), given
here as bytes and put in the card as a `data:image/png;base64,…` URI: an Adaptive Card Image
takes a data URI from schema 1.2, Teams shows pictures up to 1024×1024 pixels and 1 MB, and the
bot message size limit leaves base64 images out. A PNG over those limits (or none) leaves the
chart out and the card says so. An https URL to the chart may be given instead.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Any

from bot.teams.cards import kit
from bot.teams.cards.refund import RESUME
from bot.teams.cards.text import amounts, md, money, when, who
from services.disputes.issues import PaymentIssue
from services.finance.anomaly import Anomaly
from services.finance.runs import ReconRun
from services.finance.stats import DayStats
from services.intake.events import EventRow
from services.money import MoneyError
from services.refunds.automation import Automation

IMAGE_BYTES = 1024 * 1024     # Teams: a picture up to 1 MB
IMAGE_SIDE = 1024             # … and 1024×1024 pixels
_PNG = b"\x89PNG\r\n\x1a\n"


def automation_card(paused: bool, reason: str, by: str, details: list[str], *,
                    resumed_by: str | None = None,
                    resumed_at: str | None = None) -> dict[str, Any]:
    """The pause alert with Resume (verb `resume`, no case); the resumed line; or, given
    `resumed_by`, the pause alert as it reads once automation resumed (no button)."""
    if not paused:
        line = f"▶️ Automation resumed by {who(by)}" + (f": {md(reason, 500)}"
                                                       if reason.strip() else "")
        return kit.card([kit.text(line)], fallback=f"Automation resumed: {md(reason, 200)}")
    said = f"⏸️ Automatic refunds were paused by {who(by)}: " \
        f"**{md(reason or 'no reason given', 1000)}**"
    if resumed_by is not None:
        return kit.card([kit.heading("Automation paused, then resumed"), kit.text(said),
                         kit.text(f"▶️ Resumed by {who(resumed_by)} at {when(resumed_at)}",
                                  subtle=True)],
                        fallback="Automation resumed (it was paused: "
                                 f"{md(reason or 'no reason given', 150)})")
    body = [kit.heading("Automation paused"), kit.text(said),
            kit.text("Every new case waits for a person until automation resumes."),
            *kit.section("Details", [md(d, 400) for d in details], limit=10)]
    return kit.card(body, [kit.execute("Resume automation", RESUME, {}, style="positive",
                                       inputs="none")],
                    fallback=f"Automation paused: {md(reason or 'no reason given', 200)}")


def png_size(png: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header; None when it is not a PNG."""
    if len(png) < 24 or not png.startswith(_PNG) or png[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def chart_image(png: bytes | None = None, url: str | None = None) -> dict[str, Any] | None:
    """The chart as an Image element, or None when there is none Teams would show."""
    alt = "Refunds per day, the last 14 days"
    if url and url.startswith("https://"):
        return kit.image(url, alt)
    if not png or len(png) > IMAGE_BYTES:
        return None
    size = png_size(png)
    if size is None or max(size) > IMAGE_SIDE:
        return None
    return kit.image("data:image/png;base64," + base64.b64encode(png).decode("ascii"), alt)


def _money(minor: int, currency: str) -> str:
    try:
        return money(minor, currency)
    except MoneyError:
        return md(f"{minor} {currency}", 40)


def digest_card(run: ReconRun, stats: DayStats, anomalies: list[Anomaly],
                automation: Automation, disputes: Sequence[PaymentIssue] = (),
                failed_events: Sequence[EventRow] = (), *, chart_png: bytes | None = None,
                chart_url: str | None = None) -> dict[str, Any]:
    """The daily digest for the digest channel."""
    day = run.day.isoformat()
    refunds = [f"{md(cur, 8)}: {n} refund(s), **{_money(total, cur)}**"
               for cur, (n, total) in stats.refunds.items()] or ["none"]
    d = stats.decisions
    refunds.append(f"{d.get('auto_approve', 0)} automatic · {d.get('approve', 0)} approved by "
                   f"a person · {d.get('deny', 0)} denied")
    if stats.median_minutes_to_refund is not None:
        hours, minutes = divmod(stats.median_minutes_to_refund, 60)
        refunds.append(f"median cancellation → refund: {hours} h {minutes} min")
    recon = [f"{kind.replace('_', ' ')}: {count}" for kind, count in sorted(run.counts.items())
             if count]
    recon += [f"totals {md(cur, 8)}: "
              + ", ".join(f"{md(k.replace('_', ' '), 40)} {_money(v, cur)}"
                          for k, v in figures.items())
              for cur, figures in run.totals.items()]
    recon += _settlement_lines(run)
    problems = [f"⚠️ {md(p.kind.replace('_', ' '), 40)} · {md(p.booking_code or '?', 60)} · "
                + (_money(p.amount, p.currency) if p.amount is not None and p.currency else "")
                + f" — {md(amounts(p.detail, p.currency), 300)}" for p in run.open_errors]
    problems += [f"✅ resolved: {md(p.kind.replace('_', ' '), 40)} · "
                 f"{md(p.booking_code or '?', 60)}" for p in run.resolved]
    alerts = [("🚨 " if a.blocking else "") + md(a.reason, 300) for a in anomalies]
    state = (f"⏸️ **Automation paused** by {who(automation.by)}: "
             f"{md(automation.reason or 'no reason given', 300)}"
             if automation.paused else "▶️ Automation running")
    waiting = [f"case #{i} · {md(code, 60)} waiting since {when(since)}"
               for i, code, since in stats.waiting]
    open_disputes = [f"{md(x.stripe_id, 60)} · {md(x.booking_code or 'booking not found', 60)} "
                     f"· {_money(x.amount, x.currency)} · {md(x.reason or 'general', 40)} · "
                     f"evidence due {when(x.due_by)}" for x in disputes]
    failed = [f"event #{row.row_id} · {md(row.source, 20)} {md(row.kind, 60)} · "
              f"{md(row.last_error or 'failed', 200)}" for row in failed_events]
    body: list[dict[str, Any]] = [kit.heading(f"Refund digest · {day}")]
    body += kit.section("Refunds", refunds)
    chart = chart_image(chart_png, chart_url)
    if chart is not None:
        body.append(chart)
    elif chart_png or chart_url:
        body.append(kit.text("(The chart was too large to show here.)", subtle=True))
    body += kit.section("Reconciliation", recon or ["nothing to reconcile"])
    body += kit.section("Open discrepancies", problems)
    body += kit.section("Anomalies", alerts or ["none"])
    body.append(kit.text(state, spacing="Medium"))
    body += kit.section("Waiting for approval over 24 h", waiting)
    body += kit.section("Open disputes", open_disputes)
    body += kit.section(f"Webhook events not processed ({len(failed)})", failed)
    body.append(kit.text(f"{md(run.tz, 60)} day · {run.stripe_count} Stripe refunds read · "
                         f"ran {when(run.ran_at)}", subtle=True))
    summary = f"Refund digest {day}: {len(run.open_errors)} open discrepancies, " \
        f"{len(anomalies)} anomalies" + (", automation paused" if automation.paused else "")
    return kit.card(body, fallback=summary)


def _settlement_lines(run: ReconRun) -> list[str]:
    """The run's settlement figures, as the Slack digest shows them: Stripe fees lost to
    refunds, refunds missing from payouts, refund failures Stripe reversed (none for a run
    that did not settle)."""
    lines = []
    for cur, f in (getattr(run, "settlement", None) or {}).items():
        lines.append(f"Stripe fees lost to refunds {md(cur, 8)}: **{_money(f.fees_lost, cur)}** "
                     f"({f.refunds} refund(s) settled, {f.in_payout} in a payout)")
        if f.missing_from_payout:
            lines.append(f"⚠️ refunds missing from payouts {md(cur, 8)}: "
                         f"{f.missing_from_payout} ({_money(f.missing_amount, cur)})")
        if f.failures:
            lines.append(f"refund failures reversed {md(cur, 8)}: {f.failures} "
                         f"({_money(f.failures_amount, cur)}), {f.unmatched_failures} not "
                         "matched in our ledger")
    return lines


def answer_card(title: str, lines: Sequence[str] = (), *, note: str | None = None,
                trusted: bool = False) -> dict[str, Any]:
    """A command's answer: a title, lines, a note. The lines are escaped unless `trusted` (the
    caller built them from escaped pieces, e.g. with `text.md`)."""
    shown = list(lines) if trusted else [md(line, 600) for line in lines]
    body = [kit.heading(md(title, 150))]
    body += [kit.text(line, spacing="Small") for line in shown]
    if note:
        body.append(kit.text(md(note, 600), subtle=True))
    return kit.card(body, fallback=md(title, 150))
