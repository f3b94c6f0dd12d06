"""Webhook event sub-commands: `events list [--failed]` and `events retry ID`.

`list` shows the events that were not processed: failed ones (dead letters, and outages past
the retry bound) and, without `--failed`, those waiting for an automatic retry. `retry` runs
one failed event again now, with the same code the worker and the card's Retry use, and
prints how it ended: exit status 0 when it was processed, 1 when it failed or is kept for a
retry again, 2 when it cannot be retried (unknown, already processed, not failed).
"""

from __future__ import annotations

import argparse
import asyncio

from bot.settings import load_settings, load_store_settings
from bot.slack.ui.intake import failed_text
from services.intake import events
from services.intake.routing import retry_failed
from services.store.db import open_store


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("events", help="webhook events not processed: list, retry")
    sub = group.add_subparsers(dest="events_command", required=True)
    listing = sub.add_parser("list", help="failed events and those waiting for a retry")
    listing.add_argument("--failed", action="store_true", help="only the failed ones")
    listing.set_defaults(handler=lambda args: asyncio.run(cmd_list(args)))
    retry = sub.add_parser("retry", help="process a failed event again now")
    retry.add_argument("event", type=int, help="the event number (#12 in the list)")
    retry.add_argument("--by", default="cli", help="who retries (recorded in the audit)")
    retry.set_defaults(handler=lambda args: asyncio.run(cmd_retry(args)))


async def cmd_list(args: argparse.Namespace) -> int:
    async with open_store(load_store_settings().store_target()) as store:
        rows = await events.failed(store)
        if not args.failed:
            rows += await events.retrying(store)
    for row in rows:
        print(failed_text(row))
    if not rows:
        print("no failed events" if args.failed else "no events waiting")
    return 0


async def cmd_retry(args: argparse.Namespace) -> int:
    from bot.app import Bot

    bot = await Bot.create(load_settings())
    try:
        outcome = await retry_failed(bot.svc, args.event, by=args.by)
    finally:
        await bot.close()
    print(f"event #{args.event}: {outcome}")
    return 1 if outcome.startswith(("retrying:", "failed:")) else 0
