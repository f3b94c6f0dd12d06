"""The daily digest in Slack: yesterday's refunds, the reconciliation, anomalies, whether
automation is paused, cases waiting too long and disputes still open (with links to their
cards), and a small chart of refunds per day over the last two weeks."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.cli.report_commands import digest_text
from bot.slack.card_state import card_links
from bot.slack.notifier import Channels
from bot.slack.outbox import Outbox
from bot.slack.ui.disputes import dispute_line
from bot.slack.ui.kit import (
    Message,
    clip,
    context,
    divider,
    header,
    line_sections,
    section,
)
from services.deps import Deps
from services.disputes.issues import PaymentIssue, open_disputes
from services.finance.anomaly import Anomaly
from services.finance.reconcile import DayStats, ReconRun, day_stats, day_window
from services.money import display
from services.refunds.automation import Automation, automation_state

log = logging.getLogger(__name__)
CHART_DAYS = 14


def digest_message(run: ReconRun, stats: DayStats, anomalies: list[Anomaly],
                   automation: Automation, card_links: dict[int, str],
                   disputes: Sequence[PaymentIssue] = ()) -> Message:
    day = run.day.isoformat()
    refunds = [f"• {cur}: {n} refund(s), *{display(total, cur)}*"
               for cur, (n, total) in stats.refunds.items()] or ["• none"]
    d = stats.decisions
    refunds.append(f"• {d.get('auto_approve', 0)} automatic · {d.get('approve', 0)} approved "
                   f"by a person · {d.get('deny', 0)} denied")
    if stats.median_minutes_to_refund is not None:
        hours, minutes = divmod(stats.median_minutes_to_refund, 60)
        refunds.append(f"• median cancellation → refund: {hours} h {minutes} min")
    recon = [f"• {kind.replace('_', ' ')}: {count}" for kind, count in sorted(run.counts.items())
             if count]
    recon += [f"• totals {cur}: " + ", ".join(f"{k} {display(v, cur)}" for k, v in figures.items())
              for cur, figures in run.totals.items()]
    problems = [f"• :warning: {p.kind.replace('_', ' ')} · {p.booking_code or '?'} · "
                f"{display(p.amount, p.currency) if p.amount is not None and p.currency else ''}"
                f" — {p.detail}" for p in run.open_errors]
    problems += [f"• :white_check_mark: resolved: {p.kind.replace('_', ' ')} · "
                 f"{p.booking_code or '?'}" for p in run.resolved]
    alerts = [f"• {':rotating_light: ' if a.blocking else ''}{a.reason}" for a in anomalies]
    state = (f":double_vertical_bar: *Automation paused* by {automation.by}: {automation.reason}"
             if automation.paused else ":arrow_forward: Automation running")
    waiting = [f"• <{card_links[i]}|case #{i}> {code} waiting since {since[:16]} UTC"
               if i in card_links else f"• case #{i} {code} waiting since {since[:16]} UTC"
               for i, code, since in stats.waiting]
    open_disputes = [dispute_line(issue) for issue in disputes]
    blocks: list[dict[str, Any]] = [header(f"Refund digest · {day}")]
    blocks += line_sections(refunds, title="*Refunds*")
    blocks.append(divider())
    blocks += line_sections(recon or ["• nothing to reconcile"], title="*Reconciliation*")
    if problems:
        blocks += line_sections(problems, title="*Open discrepancies*")
    blocks += line_sections(alerts or ["• none"], title="*Anomalies*")
    blocks.append(section(state))
    if waiting:
        blocks += line_sections(waiting, title="*Waiting for approval over 24 h*")
    if open_disputes:
        blocks += line_sections(open_disputes, title="*Open disputes*")
    blocks.append(context(f"{run.tz} day · {run.stripe_count} Stripe refunds read · "
                          f"ran {run.ran_at[:16]} UTC"))
    text = clip(f"Refund digest {day}: {len(run.open_errors)} open discrepancies, "
                f"{len(anomalies)} anomalies" + (", automation paused" if automation.paused
                                                 else ""), 300)
    return Message(text=text, blocks=blocks[:50])


async def refunds_per_day(svc: Deps, last_day: date, tz: ZoneInfo,
                          days: int = CHART_DAYS) -> list[tuple[date, int]]:
    counts = []
    for offset in range(days - 1, -1, -1):
        day = last_day - timedelta(days=offset)
        start, end = day_window(day, tz)
        row = await svc.store.fetch_one(
            "SELECT COUNT(*) AS n FROM executions WHERE status IN ('pending', 'succeeded') "
            "AND created_at >= ? AND created_at < ?", (start.isoformat(), end.isoformat()))
        counts.append((day, int(row["n"]) if row else 0))
    return counts


def chart_png(series: list[tuple[date, int]]) -> bytes | None:
    """A small bar chart; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return None
    figure, axes = pyplot.subplots(figsize=(6, 2.4), dpi=100)
    axes.bar([d.strftime("%d %b") for d, _ in series], [n for _, n in series], color="#1d4e5f")
    axes.set_title("Refunds per day", fontsize=10)
    axes.tick_params(axis="x", labelrotation=60, labelsize=7)
    axes.tick_params(axis="y", labelsize=7)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return buffer.getvalue()


class DigestPoster:
    """The scheduler's `on_digest`: the digest goes to the digest channel (or the log)."""

    def __init__(self, svc: Deps, tz: ZoneInfo, outbox: Outbox | None = None,
                 channels: Channels | None = None, chart: bool = True) -> None:
        self.svc, self.tz, self.outbox, self.channels, self.chart = svc, tz, outbox, channels, chart

    async def __call__(self, run: ReconRun, anomalies: list[Anomaly]) -> None:
        stats = await day_stats(self.svc.store, run.day, self.tz)
        automation = await automation_state(self.svc.store)
        if self.outbox is None or self.channels is None:
            log.info("%s", digest_text(run, stats, anomalies, automation,
                                       await open_disputes(self.svc.store)))
            return
        links = await card_links(self.svc.store, [case_id for case_id, _, _ in stats.waiting])
        message = digest_message(run, stats, anomalies, automation, links,
                                 await open_disputes(self.svc.store))
        await self.outbox.add(self.channels.digest, "alert", None,
                              {"text": message.text, "blocks": message.blocks})
        if self.chart:
            png = chart_png(await refunds_per_day(self.svc, run.day, self.tz))
            if png is not None:
                await self.outbox.add(self.channels.digest, "file", None, {
                    "filename": f"refunds-{run.day.isoformat()}.png",
                    "title": f"Refunds per day to {run.day.isoformat()}",
                    "content_b64": base64.b64encode(png).decode()})
