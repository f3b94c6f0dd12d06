"""The daily digest in Teams: one Adaptive Card in the digest channel, through the Teams outbox.

The same figures as Slack's digest (`bot.slack.ui.digest.digest_text`: the day's refunds,
what waits, anomalies, automation, disputes, stuck events) and the same chart, shown as an
Image element (a PNG data URI) when it fits Teams' card size; otherwise the card says where to
find it (the Slack digest or `python -m bot report`).
"""

from __future__ import annotations

import base64
from zoneinfo import ZoneInfo

from bot.slack.ui.chart import CHART_DAYS, chart_png
from bot.slack.ui.digest import digest_text
from bot.teams import card_content as cards
from bot.teams.outbox import TeamsOutbox
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
        text = digest_text(run, stats, anomalies, await automation_state(store),
                           await open_disputes(store), await failed(store))
        image = None
        if self.chart:
            png = chart_png(await refunds_per_day(store, run.day, self.tz, CHART_DAYS))
            if png is not None and len(png) <= MAX_IMAGE_BYTES:
                image = "data:image/png;base64," + base64.b64encode(png).decode()
        await self.outbox.add(self.channel, "digest", None,
                              {"card": cards.digest_card(text, image)})
