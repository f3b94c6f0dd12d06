"""The daily digest in Teams: one Adaptive Card in the digest channel, through the Teams outbox.

The same figures as Slack's digest, from the same inputs (the day's refunds, reconciliation,
anomalies, automation, what waits, disputes, stuck events), drawn by `bot.teams.cards.digest_card`
with the same chart as Slack's (`bot.slack.ui.chart.chart_png`) inside it as a PNG data URI.
A bot message to Teams must stay under about 28 KB, card included, so a chart over
`MAX_IMAGE_BYTES` is left out and the card says so (the Slack digest and `python -m bot
report` still have it).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from bot.slack.ui.chart import CHART_DAYS, chart_png
from bot.teams import cards
from bot.teams.outbox import TeamsOutbox
from bot.text import daily_failed_text
from services.deps import Deps
from services.disputes.issues import open_disputes
from services.finance.anomaly import Anomaly
from services.finance.runs import ReconRun
from services.finance.stats import day_stats, refunds_per_day
from services.intake.events import failed
from services.refunds.automation import automation_state

MAX_IMAGE_BYTES = 20_000   # Teams refuses a message over ~28 KB; the chart must leave room


class TeamsDigestPoster:
    def __init__(self, svc: Deps, tz: ZoneInfo, outbox: TeamsOutbox, channel: str,
                 chart: bool = True) -> None:
        self.svc, self.tz, self.outbox, self.channel, self.chart = svc, tz, outbox, channel, chart

    async def __call__(self, run: ReconRun, anomalies: list[Anomaly]) -> None:
        store = self.svc.store
        stats = await day_stats(store, run.day, self.tz)
        png = chart_png(await refunds_per_day(store, run.day, self.tz, CHART_DAYS)) \
            if self.chart else None
        card = cards.digest_card(run, stats, anomalies, await automation_state(store),
                                 await open_disputes(store), await failed(store),
                                 chart_png=png if png and len(png) <= MAX_IMAGE_BYTES
                                 else None)
        if png and len(png) > MAX_IMAGE_BYTES:
            card["body"].insert(2, {"type": "TextBlock", "wrap": True, "isSubtle": True,
                                    "text": "(The chart was too large to show here.)"})
        await self.outbox.add(self.channel, "digest", None, {"card": card},
                              once=f"digest:{run.day.isoformat()}")   # one a day, as in Slack

    async def run_failed(self, day: str, reason: str, retry_at: datetime) -> None:
        """As the Slack poster's: the digest channel hears once a day that the run failed."""
        text = daily_failed_text(day, reason, retry_at, self.tz)
        await self.outbox.add(self.channel, "alert", None,
                              {"card": cards.answer_card("Daily reconciliation delayed", [text])},
                              once=f"daily-failed:{day}")
