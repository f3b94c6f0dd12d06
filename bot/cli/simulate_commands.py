"""`simulate --policies NEW.yml [--from D --to D] [--format text|csv|json]`: the stored cases
replayed under a proposed policy file (`services.finance.simulate`), before anyone edits the
live one. Nothing is written.

The dates are business days (`--tz`, else BUSINESS_TIMEZONE, else UTC), both included, and
pick cases by their cancellation time. A policy file that cannot be used is answered with what
is wrong (line, policy, field) and exit status 2. `text` prints the figures per currency and
product, then per policy, then the biggest changes; `csv` one line per case whose refund or
decision would change; `json` everything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.cli.report_commands import _day, _zone
from services.finance.days import day_window
from services.finance.simulate import Simulation, Tally, biggest_overall, read_policies, simulate
from services.money import format_minor
from services.quoting.policy import PolicyError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("simulate", help="replay past cases under a proposed "
                                 "policy file")
    parser.add_argument("--policies", required=True, help="the proposed policy YAML file")
    parser.add_argument("--from", dest="first", type=_day, default=None,
                        help="first business day of cancellations, YYYY-MM-DD")
    parser.add_argument("--to", dest="last", type=_day, default=None,
                        help="last business day of cancellations, YYYY-MM-DD (included)")
    parser.add_argument("--tz", type=_zone, default=None,
                        help="business timezone (default: BUSINESS_TIMEZONE, else UTC)")
    parser.add_argument("--format", choices=("text", "csv", "json"), default="text")
    parser.set_defaults(handler=lambda args: asyncio.run(cmd_simulate(args)))


def read_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not a UTF-8 text file") from None


def window(first: date | None, last: date | None,
           zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    start = day_window(first, zone)[0] if first is not None else None
    end = day_window(last, zone)[1] if last is not None else None
    return start, end


async def cmd_simulate(args: argparse.Namespace) -> int:
    proposed = read_policies(read_file(args.policies), args.policies)   # before the store opens
    from bot.app import Bot
    from bot.settings import load_settings

    settings = load_settings()
    start, end = window(args.first, args.last, args.tz or settings.zone)
    bot = await Bot.create(settings)
    try:
        result = await simulate(bot.svc, proposed, start=start, end=end)
    finally:
        await bot.close()
    if args.format == "csv":
        print(result.csv(), end="")
    elif args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(render_text(result))
    return 0


COLUMNS = ("", "cases", "changed", "refund before", "refund after", "change", "refunded",
           "fees before", "fees after", "kept before", "kept after", "auto before",
           "auto after", "person before", "person after")


def _row(name: str, t: Tally) -> list[str]:
    def money(minor: int) -> str:
        return format_minor(minor, t.currency)
    return [name, str(t.cases), str(t.changed), money(t.refund_before), money(t.refund_after),
            money(t.refund_after - t.refund_before), money(t.refunded), money(t.fees_before),
            money(t.fees_after), money(t.retained_before), money(t.retained_after),
            t.rate(t.auto_before, t.cases), t.rate(t.auto_after, t.cases),
            str(t.person_before), str(t.person_after)]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
            for row in rows]


def render_text(result: Simulation) -> str:
    span = (f"{result.first.date() if result.first else 'the first case'} to "
            f"{result.end.date() if result.end else 'now'}")
    lines = [f"Simulation of {result.source} (digest {result.digest}) over {result.cases} "
             f"case(s) cancelled from {span}.",
             "Before: each case's current quote; after: its re-quote under the proposed file; "
             "refunded: what has left for it. Amounts per currency; rates are of the cases."]
    if not result.cases:
        lines.append("No cases in range.")
    for currency in sorted(result.totals):
        lines += ["", f"{currency}:"]
        rows = [list(COLUMNS)]
        rows += [_row(product, t) for (cur, product), t in sorted(result.products.items())
                 if cur == currency]
        rows.append(_row("all products", result.totals[currency]))
        lines += _table(rows)
        rows = [["policies", *COLUMNS[1:]]]
        rows += [_row(policies, t) for (cur, policies), t in sorted(result.policies.items())
                 if cur == currency]
        lines += ["", *_table(rows)]
    changes = list(biggest_overall(result))
    if changes:
        lines += ["", "Biggest changes:"]
        lines += [f"  case {c.case_id} {c.booking_code} ({c.product}): "
                  f"{format_minor(c.before, c.currency)} -> {format_minor(c.after, c.currency)} "
                  f"{c.currency} ({'+' if c.delta > 0 else ''}"
                  f"{format_minor(c.delta, c.currency)})" for c in changes]
    if result.unquotable:
        lines += ["", "The proposed file cannot quote (a person must decide these):"]
        lines += [f"  {n} case(s): {reason}" for reason, n in sorted(result.unquotable.items())]
    if result.unreadable:
        lines.append(f"{result.unreadable} stored case(s) could not be read and were left out.")
    return "\n".join(lines)
