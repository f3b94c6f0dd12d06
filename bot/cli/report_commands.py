"""Report sub-commands: `reconcile --date D` and `digest --date D`, run by hand for any day.

They run the same code as the scheduled jobs (the reconciliation of a day replaces its stored
result) and print the report; they do not move the schedule's own record of the last run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.settings import load_settings
from bot.slack.ui.digest import digest_text, render_text
from services.disputes.issues import open_disputes
from services.finance.anomaly import check
from services.finance.anomaly_log import record, seen_between
from services.finance.days import day_window
from services.finance.reconcile import reconcile_day
from services.finance.stats import day_stats
from services.intake.events import failed
from services.money import display
from services.refunds.automation import automation_state
from services.store.db import utcnow


def register(commands: argparse._SubParsersAction) -> None:
    reconcile = commands.add_parser("reconcile", help="reconcile one day: Stripe, ledger, "
                                    "Checkfront")
    _day_options(reconcile)
    reconcile.set_defaults(handler=lambda args: asyncio.run(cmd_reconcile(args)))

    digest = commands.add_parser("digest", help="reconcile one day and print its digest")
    _day_options(digest)
    digest.set_defaults(handler=lambda args: asyncio.run(cmd_digest(args)))


def _day_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", required=True, type=_day, help="business day, YYYY-MM-DD")
    parser.add_argument("--tz", type=_zone, default=None,
                        help="business timezone, e.g. Europe/Lisbon (default: the "
                        "BUSINESS_TIMEZONE setting, else UTC)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _zone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"not a timezone name: {text!r}") from None


async def _bot_and_zone(args: argparse.Namespace) -> tuple[Any, ZoneInfo]:
    from bot.app import Bot

    settings = load_settings()
    zone = args.tz or settings.zone
    return await Bot.create(settings), zone


async def cmd_reconcile(args: argparse.Namespace) -> int:
    bot, zone = await _bot_and_zone(args)
    try:
        run = await reconcile_day(bot.svc, args.date, zone)
    finally:
        await bot.close()
    print(json.dumps(run.to_dict(), indent=2) if args.json else render_text(run))
    return 1 if run.open_errors else 0


async def cmd_digest(args: argparse.Namespace) -> int:
    bot, zone = await _bot_and_zone(args)
    try:
        svc = bot.svc
        run = await reconcile_day(svc, args.date, zone)
        stats = await day_stats(svc.store, args.date, zone)
        start, end = day_window(args.date, zone)
        anomalies = await seen_between(svc.store, start, end)
        if args.date >= utcnow().astimezone(zone).date():
            seen = {a.key for a in anomalies}
            current = await record(svc.store, await check(svc, utcnow(), tz=zone), utcnow())
            anomalies += [a for a in current if a.key not in seen]
        automation = await automation_state(svc.store)
        disputes = await open_disputes(svc.store)
        failed_events = await failed(svc.store)
    finally:
        await bot.close()
    if args.json:
        print(json.dumps({"reconciliation": run.to_dict(), "stats": stats.to_dict(),
                          "anomalies": [a.to_dict() for a in anomalies],
                          "automation": automation.__dict__,
                          "open_disputes": [{
                              "dispute": d.stripe_id, "booking_code": d.booking_code,
                              "amount": display(d.amount, d.currency), "reason": d.reason,
                              "status": d.stripe_status, "due_by": d.due_by}
                              for d in disputes],
                          "failed_events": [{
                              "event": e.row_id, "source": e.source, "kind": e.kind,
                              "about": e.subject, "attempts": e.attempts,
                              "error": e.last_error, "failed_at": e.failed_at}
                              for e in failed_events]}, indent=2))
    else:
        print(digest_text(run, stats, anomalies, automation, disputes, failed_events))
    return 0
