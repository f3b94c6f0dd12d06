"""`python -m bot journal --date D [--format xero|quickbooks|csv] [--out FILE]`: the day's
refunds as journal lines for the books (`services.finance.journal`).

The accounts come from the policy file (`gl_account`, `tax_code`, per policy and for the book)
and the JOURNAL_* settings. Written to FILE, or to stdout. Exit status 0; 1 when the format
left out refunds in another currency than the business's (named on stderr; `--format csv`
writes every currency); 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bot.cli.report_commands import _day, _zone
from bot.settings import load_settings
from services.finance.journal import Format, day_journals, export
from services.money import display
from services.quoting.policy import load_policies
from services.store.db import open_store


def register(commands: argparse._SubParsersAction) -> None:
    journal = commands.add_parser("journal", help="write one day's refunds as journal lines "
                                  "(Xero, QuickBooks Online or CSV)")
    journal.add_argument("--date", required=True, type=_day, help="business day, YYYY-MM-DD")
    journal.add_argument("--format", choices=[f.value for f in Format], default=None,
                         help="file format (default: the JOURNAL_FORMAT setting, else csv)")
    journal.add_argument("--out", type=Path, default=None, help="write to this file "
                         "(default: stdout)")
    journal.add_argument("--tz", type=_zone, default=None,
                         help="business timezone (default: the BUSINESS_TIMEZONE setting)")
    journal.set_defaults(handler=lambda args: asyncio.run(cmd_journal(args)))


async def cmd_journal(args: argparse.Namespace) -> int:
    settings = load_settings()
    book = load_policies(settings.policy_file)
    fmt = Format(args.format or settings.journal_format)
    accounts = settings.journal_accounts()
    async with open_store(settings.store_target()) as store:
        journals = await day_journals(store, book, args.date, args.tz or settings.zone,
                                      accounts)
    text, left_out = export(journals, fmt, book.currency, accounts.no_tax)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8", newline="")
    for journal in journals:
        state = "left out" if journal in left_out else "written"
        print(f"{journal.currency}: {journal.cases} case(s), "
              f"{display(journal.stripe, journal.currency)} through Stripe, "
              f"{display(journal.by_hand, journal.currency)} by hand, "
              f"{display(journal.fees, journal.currency)} fees retained; "
              f"{len(journal.lines)} lines, {state}", file=sys.stderr)
    if not journals:
        print(f"no refunds on {args.date.isoformat()}", file=sys.stderr)
    if left_out:
        print(f"{fmt.value} journals carry no currency: refunds in "
              f"{', '.join(j.currency for j in left_out)} were left out (use --format csv)",
              file=sys.stderr)
        return 1
    return 0
