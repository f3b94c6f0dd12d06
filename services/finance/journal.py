"""The books: one business day's refunds as journal lines, a balanced journal per currency.

For every case whose money moved that day (a Stripe refund created that day that moved money,
`ledger.SETTLED`; a refund made by hand recorded that day, `services.refunds.manual`) the
journal reverses what the refund gave back, by the accounts of the case's quote:

- debit each revenue account, per tax code, with the refunded amount before tax (an account
  and a tax code per policy: `gl_account` and `tax_code` in the policy file, else the book's
  defaults; a policy no longer in the file takes the defaults);
- debit the tax payable account, per tax code, with the tax refunded;
- credit the Stripe clearing account with what Stripe refunded, and the by-hand account
  (cash or bank) with what was refunded by hand;
- the cancellation fee the policy retained moves from the revenue accounts to the fees
  account (debit revenue, credit fees), on the day the case's first refund moved money. The
  fee stays taxed: it is taken from the revenue lines only, never from the tax.

A case's refund is shared out over its quote's lines in proportion to what each line gives
back (its refund and its tax), by largest remainder in integer minor units, so an adjusted or
partial refund, or one paid partly by hand on a later day, still debits exactly what it
credits. The lines are summed per account and tax code: a journal has a few lines a day,
whatever the number of refunds, and names no booking or customer.

One journal per currency. Xero's manual journals and QuickBooks Online's journal entry import
carry no currency, so those two formats write the business's currency only (the policy
file's `currency`) and name what they left out; the plain CSV writes every currency, with a
currency column. Amounts are written from minor units as exact decimals, never floats.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from zoneinfo import ZoneInfo

from services.errors import DomainError
from services.finance.days import day_window
from services.finance.report import csv_cell
from services.money import format_minor, normalize_currency
from services.quoting.policy import PolicyBook
from services.quoting.quote import Quote
from services.refunds import cases, ledger, manual
from services.refunds.ledger import SETTLED
from services.refunds.models import CaseError
from services.store.db import Store, iso_utc


class JournalError(DomainError, ValueError):
    """A journal that cannot be written in the format asked for."""


class Format(StrEnum):
    XERO = "xero"
    QUICKBOOKS = "quickbooks"
    CSV = "csv"


# Xero's manual journal import template (mandatory columns marked `*`; Amount positive for a
# debit, negative for a credit; dates dd/mm/yyyy; at most 300 lines a file)
XERO_COLUMNS = ("*Narration", "*Date", "Description", "*AccountCode", "*TaxRate", "*Amount",
                "TrackingName1", "TrackingOption1", "TrackingName2", "TrackingOption2")
XERO_MAX_LINES = 300
# QuickBooks Online's journal entry import (Settings > Import data > Journal Entries)
QUICKBOOKS_COLUMNS = ("Journal No.", "Journal Date", "Account Name", "Description", "Debits",
                      "Credits")
CSV_COLUMNS = ("date", "journal", "currency", "account", "tax_code", "description", "debit",
               "credit")


@dataclass(frozen=True)
class Accounts:
    """The accounts a refund credits, and where the tax and the fees go (from settings)."""

    stripe: str = "Stripe clearing"
    by_hand: str = "Cash and bank"
    tax: str = "Sales tax payable"
    fees: str = "Cancellation fees"
    no_tax: str = "Tax Exempt"   # the tax rate written on lines that carry no tax


@dataclass(frozen=True)
class Line:
    account: str
    tax_code: str
    description: str
    debit: int = 0    # minor units of the journal's currency; one of the two is 0
    credit: int = 0


@dataclass
class Journal:
    day: date
    currency: str
    lines: list[Line] = field(default_factory=list)
    cases: int = 0
    stripe: int = 0      # minor units refunded through Stripe
    by_hand: int = 0     # and by hand
    fees: int = 0        # cancellation fees retained

    @property
    def debits(self) -> int:
        return sum(line.debit for line in self.lines)

    @property
    def credits(self) -> int:
        return sum(line.credit for line in self.lines)

    @property
    def balanced(self) -> bool:
        return self.debits == self.credits

    @property
    def narration(self) -> str:
        return f"Refunds {self.day.isoformat()} ({self.currency})"


def share(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights` (not all zero, none negative) by largest
    remainder: integers that add up to `total` exactly; ties go to the earlier weight."""
    whole = sum(weights)
    if whole <= 0 or any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative and not all zero")
    parts = [total * w // whole for w in weights]
    rest = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[:rest]:
        parts[i] += 1
    return parts


@dataclass(frozen=True)
class _Part:
    """What one quote line gives back, and where it is booked."""

    account: str
    tax_code: str
    net: int
    tax: int


def _parts(quote: Quote | None, book: PolicyBook) -> list[_Part]:
    policies = {p.id: p for p in book.policies}
    parts: list[_Part] = []
    for line in quote.lines if quote is not None else ():
        policy = policies.get(line.policy_id)
        account = (policy.gl_account if policy else None) or book.gl_account
        tax_code = (policy.tax_code if policy else None) or book.tax_code
        parts.append(_Part(account, tax_code, max(line.refund, 0), max(line.tax_refund, 0)))
    if not any(p.net or p.tax for p in parts):   # nothing to weigh by: the book's defaults
        parts = [_Part(book.gl_account, book.tax_code, 1, 0)]
    return parts


class _Sums:
    """Journal lines summed by (kind, account, tax code), in the order first seen."""

    def __init__(self) -> None:
        self.debits: dict[tuple[str, str, str], int] = {}
        self.credits: dict[tuple[str, str, str], int] = {}

    def debit(self, key: tuple[str, str, str], amount: int) -> None:
        if amount:
            self.debits[key] = self.debits.get(key, 0) + amount

    def credit(self, key: tuple[str, str, str], amount: int) -> None:
        if amount:
            self.credits[key] = self.credits.get(key, 0) + amount

    def lines(self) -> list[Line]:
        out = [Line(account, tax, text, debit=amount)
               for (text, account, tax), amount in self.debits.items()]
        out += [Line(account, tax, text, credit=amount)
                for (text, account, tax), amount in self.credits.items()]
        return out


async def day_journals(store: Store, book: PolicyBook, day: date, tz: ZoneInfo,
                       accounts: Accounts = Accounts()) -> list[Journal]:
    """The day's journals, one per currency (the business's first, then by code); a day
    without refunds has none."""
    start, end = day_window(day, tz)
    first, last = iso_utc(start), iso_utc(end)
    stripe_day: dict[int, int] = {}
    for row in await ledger.report_rows(store, start.isoformat(), end.isoformat()):
        if row["status"] in SETTLED:
            case_id = int(row["case_id"])
            stripe_day[case_id] = stripe_day.get(case_id, 0) + int(row["amount"])
    by_hand_day = {m.case_id: m.amount for m in await manual.between(store, start, end)}

    sums: dict[str, _Sums] = {}
    journals: dict[str, Journal] = {}
    for case_id in sorted(stripe_day.keys() | by_hand_day.keys()):
        case = await cases.get(store, case_id)
        currency = normalize_currency(case.currency)
        try:
            quote: Quote | None = (await cases.current_quote(store, case)).quote
        except CaseError:
            quote = None
        stripe, by_hand = stripe_day.get(case_id, 0), by_hand_day.get(case_id, 0)
        fee = 0
        if quote is not None and quote.fee > 0 and \
                await _first_refund_day(store, case_id, first, last):
            fee = min(quote.fee, max(quote.retained, 0))
        journal = journals.setdefault(currency, Journal(day, currency))
        journal.cases += 1
        journal.stripe += stripe
        journal.by_hand += by_hand
        journal.fees += fee
        _book_case(sums.setdefault(currency, _Sums()), _parts(quote, book), accounts,
                   stripe=stripe, by_hand=by_hand, fee=fee)

    out = []
    for currency in sorted(journals, key=lambda c: (c != book.currency, c)):
        journal = journals[currency]
        journal.lines = sums[currency].lines()
        if not journal.balanced:   # by construction it is; never write one that is not
            raise JournalError(f"the {currency} journal of {day} does not balance")
        out.append(journal)
    return out


def _book_case(sums: _Sums, parts: list[_Part], accounts: Accounts, *, stripe: int,
               by_hand: int, fee: int) -> None:
    refunded = stripe + by_hand
    weights = [w for p in parts for w in (p.net, p.tax)]
    for n, amount in enumerate(share(refunded, weights)):
        part = parts[n // 2]
        if n % 2 == 0:
            sums.debit(("Refunds", part.account, part.tax_code), amount)
        else:
            sums.debit(("Tax refunded", accounts.tax, part.tax_code), amount)
    if fee:
        nets = [p.net for p in parts]
        if not any(nets):
            nets = [p.tax for p in parts]   # a quote of tax only: the fee from its lines
        for part, amount in zip(parts, share(fee, nets), strict=True):
            sums.debit(("Cancellation fees retained", part.account, part.tax_code), amount)
        sums.credit(("Cancellation fees retained", accounts.fees, accounts.no_tax), fee)
    sums.credit(("Refunds through Stripe", accounts.stripe, accounts.no_tax), stripe)
    sums.credit(("Refunds made by hand", accounts.by_hand, accounts.no_tax), by_hand)


async def _first_refund_day(store: Store, case_id: int, start: str, end: str) -> bool:
    """Whether the case's first refund that moved money (through Stripe or by hand) falls in
    [start, end): the day its fee is booked."""
    times = [e.created_at for e in await ledger.settled(store, case_id)]
    by_hand = await manual.of_case(store, case_id)
    if by_hand is not None:
        times.append(by_hand.recorded_at)
    return bool(times) and start <= min(times) < end


def _amount(minor: int, currency: str) -> str:
    return format_minor(minor, currency)


def export(journals: Sequence[Journal], fmt: Format | str, currency: str,
           no_tax: str = Accounts.no_tax) -> tuple[str, list[Journal]]:
    """The journals as a file in `fmt`, and those it left out (the accounting formats carry no
    currency: they write `currency`'s journal only). `no_tax`: the Xero tax rate, one that
    adds no tax, written on every line (the tax is a line of its own)."""
    fmt = Format(fmt)
    if fmt is Format.CSV:
        return _csv(journals), []
    kept = [j for j in journals if j.currency == currency]
    left = [j for j in journals if j.currency != currency]
    return (_xero(kept, no_tax) if fmt is Format.XERO else _quickbooks(kept)), left


def _writer(out: io.StringIO, header: Sequence[str]) -> csv.writer:  # type: ignore[valid-type]
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    return writer


def _xero(journals: Sequence[Journal], no_tax: str) -> str:
    out = io.StringIO()
    writer = _writer(out, XERO_COLUMNS)
    count = 0
    for journal in journals:
        when = journal.day.strftime("%d/%m/%Y")
        for line in journal.lines:
            count += 1
            signed = line.debit if line.debit else -line.credit
            # tax is a line of its own: a rate that adds none, the code in the description
            writer.writerow([csv_cell(journal.narration), when,
                             csv_cell(f"{line.description} ({line.tax_code})"),
                             csv_cell(line.account), csv_cell(no_tax),
                             _amount(signed, journal.currency), "", "", "", ""])
    if count > XERO_MAX_LINES:
        raise JournalError(f"Xero imports at most {XERO_MAX_LINES} lines a file; this journal "
                           f"has {count}")
    return out.getvalue()


def _quickbooks(journals: Sequence[Journal]) -> str:
    out = io.StringIO()
    writer = _writer(out, QUICKBOOKS_COLUMNS)
    for journal in journals:
        number = f"RF-{journal.day.strftime('%Y%m%d')}-{journal.currency}"
        when = journal.day.strftime("%m/%d/%Y")
        for line in journal.lines:
            writer.writerow([number, when, csv_cell(line.account),
                             csv_cell(f"{line.description} ({line.tax_code})"),
                             _amount(line.debit, journal.currency) if line.debit else "",
                             _amount(line.credit, journal.currency) if line.credit else ""])
    return out.getvalue()


def _csv(journals: Sequence[Journal]) -> str:
    out = io.StringIO()
    writer = _writer(out, CSV_COLUMNS)
    for journal in journals:
        for line in journal.lines:
            writer.writerow([journal.day.isoformat(), csv_cell(journal.narration),
                             journal.currency, csv_cell(line.account),
                             csv_cell(line.tax_code), csv_cell(line.description),
                             _amount(line.debit, journal.currency) if line.debit else "",
                             _amount(line.credit, journal.currency) if line.credit else ""])
    return out.getvalue()
