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
from bot.teams.cards.text import MARKUP, md, when, who
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
from services.finance.runs import ReconRun
from services.finance.stats import DayStats
from services.intake.events import EventRow
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


def digest_card(run: ReconRun, stats: DayStats, anomalies: list[Anomaly],
                automation: Automation, disputes: Sequence[PaymentIssue] = (),
                failed_events: Sequence[EventRow] = (), *, chart_png: bytes | None = None,
                chart_url: str | None = None) -> dict[str, Any]:
    """The daily digest for the digest channel."""
    day = run.day.isoformat()
    refunds = digest_refund_lines(stats, MARKUP)
    recon = digest_recon_lines(run, MARKUP)
    problems = [problem_line(p, MARKUP) for p in run.open_errors]
    problems += [resolved_line(p, MARKUP) for p in run.resolved]
    alerts = [anomaly_line(a, MARKUP) for a in anomalies]
    state = automation_line(automation, MARKUP)
    waiting = [f"case #{i} · {md(code, 60)} waiting since {when(since)}"
               for i, code, since in stats.waiting]
    open_disputes = [f"{md(x.stripe_id, 60)} · {md(x.booking_code or 'booking not found', 60)} "
                     f"· {money_or_raw(x.amount, x.currency, MARKUP)} · "
                     f"{md(x.reason or 'general', 40)} · "
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
    return kit.card(body, fallback=digest_summary(run, anomalies, automation))


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
