"""`python -m bot review [--week YYYY-Www]`: the weekly review as plain text (by default the
last whole week): decisions by product and mode, agreement, adjustments and denials with their
reasons, the slowest approvals, and the mode changes on offer (`services.finance.agreement`).
Exit status 0; 2 for a week that is not one.
"""

from __future__ import annotations

import argparse
import asyncio

from bot.cli.report_commands import _zone
from bot.settings import load_settings
from bot.slack.ui.review import review_text
from services.finance.agreement import build_review, last_week, parse_week
from services.quoting.policy import load_policies
from services.refunds import modes
from services.store.db import Store, utcnow


def _week(text: str) -> str:
    try:
        year, week = parse_week(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"{year}-W{week:02d}"


def register(commands: argparse._SubParsersAction) -> None:
    review = commands.add_parser("review", help="print the weekly review (agreement per "
                                 "product, the mode changes on offer)")
    review.add_argument("--week", type=_week, default=None,
                        help="ISO week, YYYY-Www (default: the last whole week)")
    review.add_argument("--tz", type=_zone, default=None,
                        help="business timezone (default: the BUSINESS_TIMEZONE setting)")
    review.set_defaults(handler=lambda args: asyncio.run(cmd_review(args)))


async def cmd_review(args: argparse.Namespace) -> int:
    settings = load_settings()
    book = load_policies(settings.policy_file)
    zone = args.tz or settings.zone
    week = args.week or last_week(utcnow(), zone)
    async with Store(settings.database_path) as store:
        review = await build_review(store, book, settings.mode, settings.promotion_rules(),
                                    week, zone)
        print(review_text(review, await modes.answered(store, week)))
    return 0
