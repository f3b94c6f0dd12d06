"""`python -m bot ...`: the operator's command line.

Bad input ends with exit status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from bot import logs
from bot.cli import (
    case_commands,
    doctor,
    event_commands,
    journal_commands,
    report_commands,
    review_commands,
    simulate_commands,
    store_commands,
    teams_package,
)
from bot.cli.render import quote_table
from bot.settings import SettingsError, load_log_settings
from services.errors import DomainError
from services.quoting.booking_read import parse_snapshot
from services.quoting.engine import build_quote
from services.quoting.policy import load_policies


class UsageError(Exception):
    """Bad input from the operator: reported on one line, exit status 2."""


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"not an ISO-8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise UsageError(f"time needs a timezone (e.g. 2026-11-24T10:00:00Z): {text!r}")
    return moment


def cmd_quote(args: argparse.Namespace) -> int:
    cancelled_at = parse_time(args.cancelled_at)
    book = load_policies(args.policies)
    try:
        raw = json.loads(Path(args.booking).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{args.booking}: cannot read booking file ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{args.booking}: not valid JSON (line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{args.booking}: not a UTF-8 text file") from None
    snapshot = parse_snapshot(raw, default_currency=book.currency)
    quote = build_quote(snapshot, book, cancelled_at, waiver=args.waiver)
    if args.json:
        print(json.dumps(quote.to_dict(), indent=2))
    else:
        print(quote_table(quote))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    quote = commands.add_parser("quote", help="quote a refund for a booking file")
    quote.add_argument("--booking", required=True, help="booking snapshot JSON file")
    quote.add_argument("--policies", required=True, help="policy YAML file")
    quote.add_argument("--cancelled-at", required=True, help="ISO-8601 time with timezone")
    quote.add_argument("--waiver", help="waiver code, e.g. WEATHER")
    quote.add_argument("--json", action="store_true", help="print one JSON object")
    quote.set_defaults(handler=cmd_quote)

    case_commands.register(commands)
    event_commands.register(commands)
    _register_demo(commands)
    report_commands.register(commands)
    doctor.register(commands)
    store_commands.register(commands)
    journal_commands.register(commands)
    simulate_commands.register(commands)
    teams_package.register(commands)
    review_commands.register(commands)
    return parser


def _register_demo(commands: argparse._SubParsersAction) -> None:
    """`demo`, its module loaded only when it runs: it brings every stand-in (and Microsoft's
    Teams SDK) with it, which no other command needs."""
    parser = commands.add_parser("demo", help="run the local end-to-end demo")
    parser.add_argument("--keep", help="keep the demo database in this folder")

    def run(args: argparse.Namespace) -> None:
        from bot.cli import demo
        asyncio.run(demo.run(args.keep))

    parser.set_defaults(handler=run)


# what an operator can mend: reported on one line with exit status 2, never a traceback
INPUT_ERRORS = (UsageError, SettingsError, DomainError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command != "serve":   # `serve` sets up its own logging, json by default
            logs.setup(level="WARNING", fmt=load_log_settings().log_format or "text")
        return int(args.handler(args))
    except INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
