"""Refund reports over a date range: the figures and one CSV row per refund, read from the
executions ledger on the store's read-only connection (a long report holds up no writer), the
rows turned into lines a few hundred at a time so the event loop keeps serving requests.

The CSV is opened in spreadsheets: a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage
return would be read as a formula, so such a cell gets a leading `'` (OWASP's CSV injection
advice), line breaks inside a cell become spaces, and the writer quotes whatever needs quoting.
The bot's own amounts are never negative, so no figure changes.

`waiver` is the case's waiver code and `involuntary` says `yes` for a case opened from a
cancellation the policy file's waiver rules matched (the operator cancelled), else `no`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

from services.errors import DomainError
from services.finance.days import day_window
from services.money import format_minor
from services.refunds import ledger
from services.refunds.ledger import SETTLED
from services.store.db import Store

MAX_DAYS = 366
YIELD_EVERY = 500  # rows turned into CSV lines between two turns of the event loop
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = ("refunded_at", "booking", "case", "currency", "quoted", "refunded", "policies",
           "decision", "decided_by", "stripe_refund_id", "payment", "status", "waiver",
           "involuntary")


class ReportError(DomainError, ValueError):
    pass


@dataclass
class RangeReport:
    first: date
    last: date
    rows: list[dict[str, str]]
    totals: dict[str, tuple[int, int]] = field(default_factory=dict)  # currency -> count, minor
    decisions: dict[str, int] = field(default_factory=dict)

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: csv_cell(value) for key, value in row.items()}
                         for row in self.rows)
        return out.getvalue()


def csv_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: a leading `'` when it would start a formula, and no
    line break of its own (the writer ends lines with a bare newline and would not quote a CR)."""
    if value.startswith(FORMULA_START):
        value = "'" + value
    if "\r" in value or "\n" in value:
        value = value.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return value


async def range_report(store: Store, first: date, last: date, tz: ZoneInfo) -> RangeReport:
    if last < first:
        raise ReportError("the end date is before the start date")
    if (last - first).days + 1 > MAX_DAYS:
        raise ReportError(f"a report covers at most {MAX_DAYS} days")
    start, _ = day_window(first, tz)
    _, end = day_window(last, tz)
    rows = await ledger.report_rows(store, start.isoformat(), end.isoformat())
    report = RangeReport(first, last, [])
    # many rows share their policies and their amounts: each distinct one is read once
    policies: dict[str | None, str] = {}
    money: dict[tuple[int, str], str] = {}

    def amount(minor: int, currency: str) -> str:
        text = money.get((minor, currency))
        if text is None:
            text = money[(minor, currency)] = format_minor(minor, currency)
        return text

    for n, r in enumerate(rows):
        if n and not n % YIELD_EVERY:
            await asyncio.sleep(0)   # a long report lets intake and the worker run meanwhile
        ids = r["policy_ids"]
        if ids not in policies:
            policies[ids] = " ".join(json.loads(ids)) if ids else ""
        report.rows.append({
            "refunded_at": r["created_at"][:19] + "Z", "booking": r["booking_code"],
            "case": str(r["case_id"]), "currency": r["currency"],
            "quoted": amount(r["refund_amount"], r["currency"]),
            "refunded": amount(r["amount"], r["currency"]),
            "policies": policies[ids],
            "decision": r["decision"] or "", "decided_by": r["decided_by"] or "",
            "stripe_refund_id": r["stripe_refund_id"], "payment": r["payment_ref"],
            "status": r["status"], "waiver": r["waiver"] or "",
            "involuntary": "yes" if r["involuntary"] else "no"})
        if r["status"] in SETTLED:
            count, total = report.totals.get(r["currency"], (0, 0))
            report.totals[r["currency"]] = (count + 1, total + r["amount"])
        if r["decision"]:
            report.decisions[r["decision"]] = report.decisions.get(r["decision"], 0) + 1
    return report
