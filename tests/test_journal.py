"""The books get a journal (issue 13, part 4): a day's refunds as balanced journal lines, in
Xero's and QuickBooks Online's import formats and as CSV, from the CLI and on the digest."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.cli.main import main
from bot.cli.world import DIGEST, Item, World
from bot.slack.digest import DigestPoster
from services.finance.journal import (
    CSV_COLUMNS,
    QUICKBOOKS_COLUMNS,
    XERO_COLUMNS,
    Accounts,
    Journal,
    JournalError,
    day_journals,
    export,
    share,
)
from services.finance.reconcile import reconcile_day
from services.quoting.policy import PolicyError, parse_policies
from services.refunds import cases, decisions, manual
from services.refunds.models import Status
from services.store.db import Store, iso_utc, one, utcnow
from tests.quote_fixtures import booking, item, policies, policy, quote
from tests.slack_text_checks import unsafe
from tests.test_cli_ops import env_of
from tests.test_cli_ops import run as run_cli

UTC_ZONE = ZoneInfo("UTC")
MONTH = date(2026, 11, 1)


# ---- the published headers ----------------------------------------------------------------

def test_headers_are_the_published_ones() -> None:
    # Xero's manual journal import template, mandatory columns starred
    assert ",".join(XERO_COLUMNS) == ("*Narration,*Date,Description,*AccountCode,*TaxRate,"
                                      "*Amount,TrackingName1,TrackingOption1,TrackingName2,"
                                      "TrackingOption2")
    # QuickBooks Online's journal entry import
    assert ",".join(QUICKBOOKS_COLUMNS) == ("Journal No.,Journal Date,Account Name,Description,"
                                            "Debits,Credits")
    empty, _ = export([], "xero", "USD")
    assert empty == ",".join(XERO_COLUMNS) + "\r\n"
    empty, _ = export([], "quickbooks", "USD")
    assert empty == ",".join(QUICKBOOKS_COLUMNS) + "\r\n"
    empty, _ = export([], "csv", "USD")
    assert empty == ",".join(CSV_COLUMNS) + "\r\n"


# ---- shares --------------------------------------------------------------------------------

@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=12)
       .filter(lambda ws: sum(ws) > 0))
def test_share_adds_up_exactly_and_follows_the_weights(total: int, weights: list[int]) -> None:
    parts = share(total, weights)
    assert sum(parts) == total and all(p >= 0 for p in parts)
    whole = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert abs(part * whole - total * weight) < whole   # within one minor unit
        if weight == 0:
            assert part == 0


def test_share_refuses_weights_that_weigh_nothing() -> None:
    with pytest.raises(ValueError):
        share(100, [0, 0])


# ---- the policy file's accounts -------------------------------------------------------------

def test_policy_accounts_default_to_the_books_and_refuse_empty_names() -> None:
    data = policies(policy("a", default=True), policy("b", skus=["x"]))
    data["policies"][1]["gl_account"] = "210"
    data["policies"][1]["tax_code"] = "GST on Income"
    book = parse_policies(data)
    assert (book.gl_account, book.tax_code) == ("Sales", "Tax Exempt")
    assert (book.by_id("a").gl_account, book.by_id("b").gl_account) == (None, "210")
    data["policies"][1]["gl_account"] = ""
    with pytest.raises(PolicyError, match="policy b: gl_account"):
        parse_policies(data)


# ---- a generated month over the store ---------------------------------------------------------

BOOK = policies(
    {**policy("tours", skus=["kayak"], fee="10.00"), "gl_account": "200",
     "tax_code": "Tax on Sales"},
    {**policy("charter", skus=["charter"], fee="50.00", refund_tax=False),
     "gl_account": "210"},
    policy("other", default=True),
)
BOOK["tax_code"] = "GST on Income"
CURRENCIES = ("USD", "USD", "USD", "EUR", "JPY")
ACCOUNTS = Accounts(stripe="090", by_hand="091", tax="820", fees="260", no_tax="No Tax")


def _month_moment(rng: random.Random, day: int | None = None) -> datetime:
    when = datetime.combine(MONTH, datetime.min.time(), tzinfo=UTC)
    return when + timedelta(days=rng.randrange(30) if day is None else day,
                            seconds=rng.randrange(86400))


def _quote_of(rng: random.Random, currency: str, code: str) -> Any:
    lines = []
    places = 0 if currency == "JPY" else 2
    for n in range(rng.randint(1, 3)):
        sku = rng.choice(["kayak", "charter", "museum"])
        net = rng.randint(1, 400) * (100 if places == 0 else 1) + rng.randint(0, 99)
        tax = rng.choice([0, net // 10, net // 7])
        unit = Decimal(1) if places == 0 else Decimal("0.01")
        lines.append(item(sku, str((net + tax) * unit), str(tax * unit),
                          hours=rng.choice([10, 30, 60, 200]), line_id=str(n + 1)))
    book = {**BOOK, "currency": currency,
            "auto_approve_max": "200" if currency == "JPY" else "200.00",
            "escalate_over": "500" if currency == "JPY" else "500.00"}
    if currency == "JPY":
        book["policies"] = [{**p, "cancellation_fee": "1000"} if "cancellation_fee" in p else p
                            for p in book["policies"]]
    return quote(booking(lines, currency=currency, code=code), book)


async def _fill_month(store: Store, seed: int) -> dict[str, Any]:
    """Cases with their quotes, Stripe refunds (some failed or rejected, some in two parts)
    and refunds by hand, at random times of the month; what moved, per day and currency."""
    rng = random.Random(seed)
    expected: dict[str, Any] = {"stripe": {}, "by_hand": {}, "fees": {}}
    async with store.transaction() as tx:
        for n in range(120):
            currency = rng.choice(CURRENCIES)
            code = f"GEN-{n}"
            q = _quote_of(rng, currency, code)
            if q.total_refund <= 0:
                continue
            approved = q.total_refund if rng.random() < 0.7 else \
                rng.randint(1, q.total_refund)
            by_hand = 0 if rng.random() < 0.6 else rng.randint(1, approved)
            stripe = approved - by_hand
            first = _month_moment(rng, rng.randrange(27))
            status = Status.REFUNDED_BY_HAND if by_hand else Status.REFUNDED
            row = await one(
                tx, "INSERT INTO cases (booking_id, booking_code, booking_key, status, currency, "
                "cancelled_at, source, quote_version, refund_amount, approved_amount, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'cli', ?, ?, ?, ?, ?) "
                "RETURNING id",
                (str(n), code, code, status.value, currency, iso_utc(first), q.version,
                 q.total_refund, approved, iso_utc(first), iso_utc(first)))
            assert row is not None
            case_id = row[0]
            await tx.execute(
                "INSERT INTO quotes (case_id, version, created_at, snapshot, quote) "
                "VALUES (?, ?, ?, '{}', ?)",
                (case_id, q.version, iso_utc(first), json.dumps(q.to_dict())))
            parts = [stripe] if stripe < 2 or rng.random() < 0.7 else \
                [stripe // 3, stripe - stripe // 3]
            at = first
            moved_first: datetime | None = None
            for attempt, amount in enumerate(p for p in parts if p):
                for failed in ([True] if rng.random() < 0.15 else []) + [False]:
                    status_text = rng.choice(["failed", "rejected"]) if failed else \
                        rng.choice(["succeeded", "succeeded", "pending"])
                    key = f"{case_id}-{attempt}-{failed}"
                    await tx.execute(
                        "INSERT INTO executions (case_id, payment_ref, amount, currency, "
                        "attempt, idempotency_key, status, stripe_refund_id, created_at, "
                        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (case_id, f"pi_{key}", amount, currency, attempt * 2 + failed, key,
                         status_text, f"re_{key}", iso_utc(at), iso_utc(at)))
                    if not failed:
                        moved_first = moved_first or at
                        _add(expected["stripe"], at, currency, amount)
                at += timedelta(hours=rng.randint(1, 60))
            if by_hand:
                hand_at = at + timedelta(hours=rng.randint(0, 72))
                await tx.execute(
                    "INSERT INTO manual_refunds (case_id, amount, currency, method, "
                    "recorded_by, recorded_at) VALUES (?, ?, ?, 'cash', 'U0FIONA', ?)",
                    (case_id, by_hand, currency, iso_utc(hand_at)))
                _add(expected["by_hand"], hand_at, currency, by_hand)
                moved_first = moved_first or hand_at
            assert moved_first is not None
            _add(expected["fees"], moved_first, currency, min(q.fee, max(q.retained, 0)))
    return expected


def _add(into: dict[tuple[date, str], int], at: datetime, currency: str, amount: int) -> None:
    key = (at.date(), currency)
    into[key] = into.get(key, 0) + amount


def _balances(text: str, fmt: str) -> dict[str, tuple[Decimal, Decimal]]:
    """Per journal of an exported file: (debits, credits), read back as the importer would."""
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    sums: dict[str, tuple[Decimal, Decimal]] = {}
    for row in rows:
        if fmt == "xero":
            key, amount = row["*Narration"] + row["*Date"], Decimal(row["*Amount"])
            debit, credit = max(amount, Decimal(0)), max(-amount, Decimal(0))
            assert row["*AccountCode"] and row["*TaxRate"]
        elif fmt == "quickbooks":
            key = row["Journal No."] + row["Journal Date"]
            debit = Decimal(row["Debits"] or 0)
            credit = Decimal(row["Credits"] or 0)
            assert bool(row["Debits"]) != bool(row["Credits"]) and row["Account Name"]
        else:
            key = row["journal"] + row["currency"]
            debit, credit = Decimal(row["debit"] or 0), Decimal(row["credit"] or 0)
        assert debit >= 0 and credit >= 0 and (debit == 0 or credit == 0)
        d, c = sums.get(key, (Decimal(0), Decimal(0)))
        sums[key] = (d + debit, c + credit)
    return sums


async def test_every_day_of_a_generated_month_balances_in_every_format(tmp_path: Path) -> None:
    book = parse_policies({**BOOK, "currency": "USD"})
    async with Store(tmp_path / "month.db") as store:
        expected = await _fill_month(store, seed=13)
        seen = {"stripe": 0, "by_hand": 0, "fees": 0}
        days_with_journals = 0
        for offset in range(31):   # the month, and the first day after it
            day = MONTH + timedelta(days=offset)
            journals = await day_journals(store, book, day, UTC_ZONE, ACCOUNTS)
            days_with_journals += bool(journals)
            currencies = [j.currency for j in journals]
            assert "USD" not in currencies or currencies[0] == "USD"
            assert currencies[1:] == sorted(currencies[1:])
            for j in journals:
                assert j.balanced and j.debits > 0, (day, j.currency)
                assert j.stripe == expected["stripe"].get((day, j.currency), 0)
                assert j.by_hand == expected["by_hand"].get((day, j.currency), 0)
                assert j.fees == expected["fees"].get((day, j.currency), 0)
                credits = {line.account: line.credit for line in j.lines if line.credit}
                assert credits.get("090", 0) == j.stripe and credits.get("091", 0) == j.by_hand
                assert credits.get("260", 0) == j.fees
                assert all(line.debit >= 0 and line.credit >= 0 for line in j.lines)
                for key in seen:
                    seen[key] += getattr(j, key)
            for fmt in ("xero", "quickbooks", "csv"):
                text, left_out = export(journals, fmt, "USD")
                sums = _balances(text, fmt)
                assert all(d == c for d, c in sums.values()), (day, fmt, sums)
                written = [j for j in journals if j not in left_out]
                assert len(sums) == len(written)
                assert fmt == "csv" or all(j.currency != "USD" for j in left_out)
        assert days_with_journals >= 25
        for key in seen:
            assert seen[key] == sum(expected[key].values()) > 0


async def test_a_day_is_the_business_days_window_and_names_no_booking(tmp_path: Path) -> None:
    book = parse_policies({**BOOK, "currency": "USD"})
    async with Store(tmp_path / "month.db") as store:
        await _fill_month(store, seed=5)
        west = ZoneInfo("America/Los_Angeles")   # the month has a DST change there
        totals = []
        for zone, first in ((UTC_ZONE, 0), (west, -1)):
            total = 0
            for d in range(first, 40):
                for j in await day_journals(store, book, MONTH + timedelta(days=d), zone):
                    total += j.stripe if j.currency == "USD" else 0
            totals.append(total)
        in_utc, in_la = totals
        assert in_utc == in_la > 0
        text, _ = export(await day_journals(store, book, MONTH + timedelta(days=3), UTC_ZONE),
                         "csv", "USD")
        assert "GEN-" not in text


# ---- one worked journal, by hand ----------------------------------------------------------------

async def test_a_refund_with_tax_and_a_fee_and_a_part_by_hand_as_xero_and_quickbooks(
        tmp_path: Path) -> None:
    book = parse_policies({**BOOK, "currency": "USD"})
    # kayak 110.00 with 10.00 tax, 200h notice: 100% back, less the 10.00 fee: 100.00
    q = quote(booking([item("kayak", "110.00", "10.00", hours=200)], code="ONE-1"),
              {**BOOK, "currency": "USD"})
    assert (q.total_refund, q.fee) == (10000, 1000)
    day = datetime(2026, 11, 5, 9, tzinfo=UTC)
    async with Store(tmp_path / "one.db") as store:
        async with store.transaction() as tx:
            await tx.execute(
                "INSERT INTO cases (id, booking_id, booking_code, booking_key, status, "
                "currency, cancelled_at, source, quote_version, refund_amount, "
                "approved_amount, created_at, updated_at) VALUES (1, '1', 'ONE-1', 'ONE-1', "
                "'refunded_by_hand', 'USD', ?, 'cli', ?, 10000, 10000, ?, ?)",
                (iso_utc(day), q.version, iso_utc(day), iso_utc(day)))
            await tx.execute("INSERT INTO quotes (case_id, version, created_at, snapshot, "
                             "quote) VALUES (1, ?, ?, '{}', ?)",
                             (q.version, iso_utc(day), json.dumps(q.to_dict())))
            await tx.execute(
                "INSERT INTO executions (case_id, payment_ref, amount, currency, attempt, "
                "idempotency_key, status, stripe_refund_id, created_at, updated_at) VALUES "
                "(1, 'pi_1', 6000, 'USD', 1, 'k1', 'succeeded', 're_1', ?, ?)",
                (iso_utc(day), iso_utc(day)))
            await tx.execute(
                "INSERT INTO manual_refunds (case_id, amount, currency, method, recorded_by, "
                "recorded_at) VALUES (1, 4000, 'USD', 'bank_transfer', 'U0FIONA', ?)",
                (iso_utc(day + timedelta(days=1)),))
        first = await day_journals(store, book, day.date(), UTC_ZONE, ACCOUNTS)
        second = await day_journals(store, book, day.date() + timedelta(days=1), UTC_ZONE,
                                    ACCOUNTS)
    xero, _ = export(first, "xero", "USD", ACCOUNTS.no_tax)
    assert xero.splitlines()[1:] == [
        # 60.00 refunded of 110.00 given back (100 + 10 tax): 54.55 revenue, 5.45 tax
        "Refunds 2026-11-05 (USD),05/11/2026,Refunds (Tax on Sales),200,No Tax,54.55,,,,",
        "Refunds 2026-11-05 (USD),05/11/2026,Tax refunded (Tax on Sales),820,No Tax,5.45,,,,",
        "Refunds 2026-11-05 (USD),05/11/2026,Cancellation fees retained (Tax on Sales),200,"
        "No Tax,10.00,,,,",
        "Refunds 2026-11-05 (USD),05/11/2026,Cancellation fees retained (No Tax),260,No Tax,"
        "-10.00,,,,",
        "Refunds 2026-11-05 (USD),05/11/2026,Refunds through Stripe (No Tax),090,No Tax,"
        "-60.00,,,,",
    ]
    quickbooks, _ = export(second, "quickbooks", "USD")
    assert quickbooks.splitlines()[1:] == [
        "RF-20261106-USD,11/06/2026,200,Refunds (Tax on Sales),36.36,",
        "RF-20261106-USD,11/06/2026,820,Tax refunded (Tax on Sales),3.64,",
        "RF-20261106-USD,11/06/2026,091,Refunds made by hand (No Tax),,40.00",
    ]
    assert second[0].fees == 0   # the fee was booked with the first refund


def test_xero_refuses_a_file_longer_than_its_import_takes() -> None:
    from services.finance.journal import Line
    big = Journal(MONTH, "USD", [Line(str(n), "T", "x", debit=1) for n in range(301)])
    with pytest.raises(JournalError, match="300 lines"):
        export([big], "xero", "USD")


# ---- end to end: the CLI against the world, and the digest -----------------------------------

async def _refunded_day(world: World) -> None:
    """Two refunds through Stripe (one with a fee) and one by hand, today."""
    world.paid_booking("JRN-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    world.paid_booking("JRN-2", [Item("bike-tour", "52.50", "2.50", hours_ahead=72)])
    world.paid_booking("JRN-3", [Item("kayak-tour", "210.00", "10.00", 50)], payments=[])
    world.checkfront.add_transaction("JRN-3", amount="210.00", transaction_id="POS-JRN-3",
                                     gateway_id="Cash")
    for code in ("JRN-1", "JRN-2", "JRN-3"):
        await world.cancel(code)
    await world.settle()
    svc = world.bot.svc
    cash = await cases.find_open(svc.store, "JRN-3")
    assert cash is not None and cash.status == Status.PENDING_APPROVAL
    cash = await decisions.approve(svc, cash.id, by="U0FIONA")
    assert cash.status == Status.PARTIALLY_REFUNDED
    left = await manual.left_by_hand(svc.store, cash)
    await manual.mark_refunded(svc.store, cash.id, by="U0FIONA", amount=left, method="cash",
                               reference="TILL 42")
    await world.settle()


async def test_cli_journal_writes_the_worlds_day_in_both_formats(
        world: World, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    await _refunded_day(world)
    refunds = sum(r.amount for r in world.stripe.refunds)
    assert refunds == 9500 + 4250   # 105.00 and 52.50, each less the 10.00 fee
    today = utcnow().date().isoformat()
    out = Path(world.bot.settings.database_path).parent / "journal.csv"

    code, _, err = await run_cli(world, "journal", "--date", today, "--format", "xero",
                                 "--out", str(out))
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(XERO_COLUMNS)
    sums = _balances(text, "xero")
    assert len(sums) == 1 and all(d == c for d, c in sums.values())
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    credits = {r["*AccountCode"]: -Decimal(r["*Amount"]) for r in rows
               if Decimal(r["*Amount"]) < 0}
    assert credits["Stripe clearing"] == Decimal(refunds) / 100
    assert credits["Cash and bank"] == Decimal("200.00")   # 210.00 less the fee, by hand
    assert credits["Cancellation fees"] == Decimal("30.00")
    assert "USD: 3 case(s)" in err

    # the same command in this process (a second process would only cost time)
    for name, value in env_of(world).items():
        monkeypatch.setenv(name, value)

    async def journal(*args: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, ["journal", *args])
        found = capsys.readouterr()
        return code, found.out, found.err

    code, stdout, err = await journal("--date", today, "--format", "quickbooks")
    assert code == 0, err
    assert stdout.splitlines()[0] == ",".join(QUICKBOOKS_COLUMNS)
    assert all(d == c for d, c in _balances(stdout, "quickbooks").values())
    accounts = {r["Account Name"] for r in csv.DictReader(io.StringIO(stdout, newline=""))}
    assert accounts == {"Sales", "Sales tax payable", "Stripe clearing", "Cash and bank",
                        "Cancellation fees"}   # the example file names none: the defaults

    code, stdout, err = await journal("--date", "2001-01-01")
    assert code == 0 and stdout == ",".join(CSV_COLUMNS) + "\r\n" and "no refunds" in err
    with pytest.raises(SystemExit) as bad:
        await journal("--date", "yesterday")
    assert bad.value.code == 2 and "not a date" in capsys.readouterr().err


async def test_digest_attaches_the_journal_when_the_setting_is_on(sworld: World) -> None:
    assert sworld.slack is not None and sworld.bot.slack is not None
    await _refunded_day(sworld)
    tz = UTC_ZONE
    run = await reconcile_day(sworld.bot.svc, utcnow().date(), tz)
    channels = sworld.bot.slack.notifier.channels

    off = DigestPoster(sworld.bot.svc, tz, sworld.bot.slack.outbox, channels, chart=False)
    await off(run, [])
    await sworld.settle()
    assert not [f for f in sworld.slack.files.values() if f.completed]

    on = DigestPoster(sworld.bot.svc, tz, sworld.bot.slack.outbox, channels, chart=False,
                      journal=Accounts(), journal_format="xero")
    sworld.slack.calls.clear()
    await on(run, [])
    await sworld.settle()
    files = [f for f in sworld.slack.files.values() if f.completed]
    assert len(files) == 1 and files[0].channel == DIGEST and files[0].content is not None
    text = files[0].content.decode()
    assert text.splitlines()[0] == ",".join(XERO_COLUMNS)
    assert all(d == c for d, c in _balances(text, "xero").values())
    uploads = [c for c in sworld.slack.calls if c.method.startswith("files.")]
    assert uploads and not [p for c in sworld.slack.calls for p in unsafe(c.params)]
    comments = [c.params.get("initial_comment") for c in uploads
                if c.params.get("initial_comment")]
    assert comments and "Journal for" in comments[0] and "3 case(s)" in comments[0]

