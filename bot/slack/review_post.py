"""Posting the weekly review: built from the store (`services.finance.agreement`), rendered
(`bot.slack.ui.review`) and queued for the digest channel through the outbox, or written to the
log when Slack is not configured. The scheduler's weekly job calls it once a week.
"""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from bot.slack.notifier import Channels
from bot.slack.outbox import Outbox
from bot.slack.ui.review import review_message, review_text
from services.deps import Deps
from services.finance.agreement import Rules, build_review
from services.refunds import modes

log = logging.getLogger(__name__)


class ReviewPoster:
    """The scheduler's `on_review`: the week's review to the digest channel (or the log)."""

    def __init__(self, svc: Deps, tz: ZoneInfo, rules: Rules, outbox: Outbox | None = None,
                 channels: Channels | None = None) -> None:
        self.svc, self.tz, self.rules, self.outbox, self.channels = svc, tz, rules, outbox, \
            channels

    async def __call__(self, week: str) -> None:
        svc = self.svc
        review = await build_review(svc.store, svc.book, svc.config.mode, self.rules, week,
                                    self.tz)
        answered = await modes.answered(svc.store, week)
        if self.outbox is None or self.channels is None or not self.channels.digest:
            log.info("%s", review_text(review, answered))
            return
        message = review_message(review, answered)
        await self.outbox.add(self.channels.digest, "alert", None,
                              {"text": message.text, "blocks": message.blocks},
                              once=f"review:{week}")
