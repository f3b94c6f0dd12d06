"""Posting the daily digest: the message and its chart go to the digest channel through the
outbox (or the digest goes to the log when Slack is not configured).

The digest carries yesterday's refunds, the reconciliation, anomalies, whether automation is
paused, cases waiting too long and disputes still open (with links to their cards), webhook
events that failed, and a small chart of refunds per day over the last two weeks;
`bot.slack.ui.digest` and `bot.slack.ui.chart` render them. With DIGEST_JOURNAL on, the day's
journal for the books (`services.finance.journal`) is attached as a file as well.
"""

from __future__ import annotations

import base64
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.slack.card_state import card_links
from bot.slack.notifier import Channels
from bot.slack.outbox import Outbox
from bot.slack.ui.chart import CHART_DAYS, chart_png
from bot.slack.ui.digest import digest_message, digest_text, journal_comment
from bot.slack.ui.kit import esc, section
from bot.text import daily_failed_text
from services.deps import Deps
from services.disputes.issues import open_disputes
from services.finance.anomaly import Anomaly
from services.finance.journal import Accounts, Format, day_journals, export
from services.finance.runs import ReconRun
from services.finance.stats import day_stats, refunds_per_day
from services.intake.events import failed
from services.refunds.automation import automation_state

log = logging.getLogger(__name__)


class DigestPoster:
    """The scheduler's `on_digest`: the digest goes to the digest channel (or the log)."""

    def __init__(self, svc: Deps, tz: ZoneInfo, outbox: Outbox | None = None,
                 channels: Channels | None = None, chart: bool = True,
                 journal: Accounts | None = None, journal_format: str = "csv") -> None:
        self.svc, self.tz, self.outbox, self.channels, self.chart = svc, tz, outbox, channels, chart
        self.journal, self.journal_format = journal, Format(journal_format)

    async def __call__(self, run: ReconRun, anomalies: list[Anomaly]) -> None:
        stats = await day_stats(self.svc.store, run.day, self.tz)
        automation = await automation_state(self.svc.store)
        failed_events = await failed(self.svc.store)
        if self.outbox is None or self.channels is None:
            log.info("%s", digest_text(run, stats, anomalies, automation,
                                       await open_disputes(self.svc.store), failed_events))
            return
        links = await card_links(self.svc.store, [case_id for case_id, _, _ in stats.waiting])
        message = digest_message(run, stats, anomalies, automation, links,
                                 await open_disputes(self.svc.store), failed_events)
        day = run.day.isoformat()   # one digest a day, however often the day is reconciled
        await self.outbox.add(self.channels.digest, "alert", None,
                              {"text": message.text, "blocks": message.blocks},
                              once=f"digest:{day}")
        if self.chart:
            series = await refunds_per_day(self.svc.store, run.day, self.tz, CHART_DAYS)
            png = chart_png(series)
            if png is not None:
                await self.outbox.add(self.channels.digest, "file", None, {
                    "filename": f"refunds-{run.day.isoformat()}.png",
                    "title": f"Refunds per day to {run.day.isoformat()}",
                    "content_b64": base64.b64encode(png).decode()}, once=f"chart:{day}")
        if self.journal is not None:
            await self._attach_journal(run)

    async def run_failed(self, day: str, reason: str, retry_at: datetime) -> None:
        """The scheduler's `on_daily_failed`: the digest channel hears, once a day, that the
        day's run failed and when it is tried again (the log only, without Slack)."""
        text = daily_failed_text(day, reason, retry_at, self.tz)
        if self.outbox is None or self.channels is None:
            log.warning("%s", text)
            return
        await self.outbox.add(self.channels.digest, "alert", None,
                              {"text": text, "blocks": [section(f":warning: {esc(text)}")]},
                              once=f"daily-failed:{day}")

    async def _attach_journal(self, run: ReconRun) -> None:
        assert self.outbox is not None and self.channels is not None and self.journal
        book = self.svc.book
        journals = await day_journals(self.svc.store, book, run.day, self.tz, self.journal)
        if not journals:
            return
        text, left_out = export(journals, self.journal_format, book.currency,
                                self.journal.no_tax)
        day = run.day.isoformat()
        await self.outbox.add_file(
            self.channels.digest, filename=f"journal-{day}-{self.journal_format.value}.csv",
            title=f"Journal {day}", content=text.encode(),
            comment=journal_comment(run.day, journals, left_out),
            once=f"journal:{day}:{self.journal_format.value}")
