"""Daily reconciliation over real HTTP: the Stripe and Checkfront stand-ins, the bot's own
refunds, refunds made outside it and ledger rows prepared by hand for each kind of problem."""

from __future__ import annotations

import argparse
import itertools
import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.cli import report_commands
from bot.cli.world import STRIPE_WEBHOOK_SECRET, Item, World
from bot.slack.ui.digest import render_text
from services.deps import Deps
from services.finance.days import day_window
from services.finance.reconcile import reconcile_day
from services.finance.runs import (
    AMOUNT_MISMATCH,
    CHECKFRONT_NOT_UPDATED,
    CURRENCY_MISMATCH,
    EXTERNAL,
    FAILED,
    MATCHED,
    MISSING_IN_STRIPE,
    STALE_PENDING,
    load_run,
    open_discrepancies,
    resolve_discrepancy,
)
from services.refunds import cases
from services.refunds.models import Status
from services.store.db import now_iso

pytestmark = pytest.mark.both_backends

TZ = ZoneInfo("America/New_York")
_keys = itertools.count(1)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=TZ)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def past_day(days_ago: int = 3) -> date:
    return datetime.now(TZ).date() - timedelta(days=days_ago)


async def bot_refund(world: World, code: str, when: datetime) -> str:
    """A cancellation the bot refunds itself; its Stripe refund and ledger row dated `when`."""
    world.paid_booking(code, [Item("kayak-tour", "60.00", hours_ahead=72)])
    await world.cancel(code)
    await world.settle()
    case = await cases.latest_for_booking(world.bot.svc.store, code)
    assert case is not None and case.status == Status.REFUNDED
    row = await world.bot.svc.store.fetch_one(
        "SELECT stripe_refund_id FROM executions WHERE case_id = ?", (case.id,))
    assert row is not None
    refund_id = str(row["stripe_refund_id"])
    await date_refund(world, refund_id, when)
    return refund_id


async def date_refund(world: World, refund_id: str, when: datetime) -> None:
    world.stripe.backdate(refund_id, int(when.timestamp()))
    async with world.bot.svc.store.transaction() as tx:
        await tx.execute("UPDATE executions SET created_at = ?, called_at = ? "
                         "WHERE stripe_refund_id = ?", (iso(when), iso(when), refund_id))
        await tx.execute("UPDATE cases SET cancelled_at = ? WHERE id = (SELECT case_id FROM "
                         "executions WHERE stripe_refund_id = ?)",
                         (iso(when - timedelta(minutes=90)), refund_id))


async def outside_refund(world: World, amount: int, when: datetime, *,
                         metadata: dict[str, str] | None = None,
                         payment: str | None = None) -> tuple[str, str]:
    """A refund made in the dashboard (not by the bot): returns (refund id, payment id)."""
    svc = world.bot.svc
    assert svc.stripe is not None
    pi = payment or world.stripe.add_payment(max(amount, 10_000), "USD").id
    refund = await svc.stripe.create_refund(
        payment_ref=pi, amount=amount, currency="USD",
        idempotency_key=f"dashboard-{next(_keys)}", metadata=metadata or {})
    world.stripe.backdate(refund.id, int(when.timestamp()))
    return refund.id, pi


async def insert_case(svc: Deps, code: str, status: str = "refunded") -> int:
    async with svc.store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT INTO cases (booking_id, booking_code, status, currency, cancelled_at, source, "
            "created_at, updated_at) VALUES (?, ?, ?, 'USD', ?, 'cli', ?, ?) RETURNING id",
            (code, code, status, now_iso(), now_iso(), now_iso()))
        return int((await cursor.fetchone())["id"])


async def insert_execution(svc: Deps, case_id: int, *, payment: str, amount: int,
                           when: datetime, status: str, refund_id: str | None,
                           currency: str = "USD", called: bool = True) -> int:
    async with svc.store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT INTO executions (case_id, payment_ref, amount, currency, attempt, "
            "idempotency_key, status, stripe_refund_id, called_at, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?) RETURNING id",
            (case_id, payment, amount, currency, f"test-key-{next(_keys)}", status, refund_id,
             iso(when) if called else None, iso(when), iso(when)))
        return int((await cursor.fetchone())["id"])


def by_kind(run_discrepancies: list) -> dict[str, list[str | None]]:
    found: dict[str, list[str | None]] = {}
    for d in run_discrepancies:
        found.setdefault(d.kind, []).append(d.booking_code)
    return found


async def test_every_kind_of_discrepancy_is_found(world: World) -> None:
    svc = world.bot.svc
    day = past_day()
    await bot_refund(world, "MATCH-1", local(day, 12))
    await bot_refund(world, "CF-1", local(day, 13))
    world.checkfront.booking("CF-1").status = "PAID"  # someone re-opened it by hand

    small, _ = await outside_refund(world, 2_000, local(day, 9))
    big, _ = await outside_refund(world, 60_000, local(day, 10),
                                  metadata={"booking_code": "BIG-EXT"})
    amount_ref, amount_pi = await outside_refund(world, 4_000, local(day, 11))
    currency_ref, currency_pi = await outside_refund(world, 3_000, local(day, 11, 30))
    failed_ref, failed_pi = await outside_refund(world, 2_500, local(day, 14))
    world.stripe.settle_refund(failed_ref, "failed", "expired_or_canceled_card")
    world.stripe.set_refund_mode("pending")
    stale_ref, stale_pi = await outside_refund(world, 1_500, local(day, 8))
    world.stripe.set_refund_mode("succeeded")
    planned_pi = world.stripe.add_payment(9_000, "USD").id
    await world.settle()  # webhooks of the refunds above have landed before the ledger rows

    for code, payment, amount, status, refund_id, currency in (
        ("AMT-1", amount_pi, 4_100, "succeeded", amount_ref, "USD"),
        ("CUR-1", currency_pi, 3_000, "succeeded", currency_ref, "EUR"),
        ("FAIL-1", failed_pi, 2_500, "failed", failed_ref, "USD"),
        ("STALE-1", stale_pi, 1_500, "pending", stale_ref, "USD"),
        ("MISS-1", "pi_gone", 7_000, "succeeded", "re_never_made", "USD"),
    ):
        case_id = await insert_case(svc, code)
        await insert_execution(svc, case_id, payment=payment, amount=amount,
                               when=local(day, 15), status=status, refund_id=refund_id,
                               currency=currency)
    planned_case = await insert_case(svc, "PLAN-1", status="executing")
    await insert_execution(svc, planned_case, payment=planned_pi, amount=3_000,
                           when=local(day, 16), status="planned", refund_id=None)
    lost_case = await insert_case(svc, "LOST-1", status="executing")  # called, nothing made
    await insert_execution(svc, lost_case, payment=world.stripe.add_payment(5_000, "USD").id,
                           amount=2_000, when=local(day, 17), status="planned", refund_id=None)
    never_case = await insert_case(svc, "NEVER-1", status="executing")  # planned, never sent
    await insert_execution(svc, never_case, payment="pi_never_called", amount=1_000,
                           when=local(day, 18), status="planned", refund_id=None, called=False)
    # the bot's call went out but both its answer and the webhook were lost
    world.stripe.configure_webhook(f"{world.bot_url}/webhooks/stripe", STRIPE_WEBHOOK_SECRET,
                                   events=["payment_intent.payment_failed"])
    await outside_refund(world, 3_000, local(day, 16, 1), payment=planned_pi,
                         metadata={"case_id": str(planned_case)})

    run = await reconcile_day(svc, day, TZ)

    assert run.stripe_count == 9
    assert run.counts[MATCHED] == 3  # two bot refunds and the planned row answered late
    found = by_kind(run.discrepancies)
    assert found[CHECKFRONT_NOT_UPDATED] == ["CF-1"]
    assert sorted(found[EXTERNAL], key=str) == ["BIG-EXT", None]
    assert found[AMOUNT_MISMATCH] == ["AMT-1"]
    assert found[CURRENCY_MISMATCH] == ["CUR-1"]
    assert found[FAILED] == ["FAIL-1"]
    assert sorted(found[STALE_PENDING]) == ["NEVER-1", "STALE-1"]
    assert sorted(found[MISSING_IN_STRIPE]) == ["LOST-1", "MISS-1"]
    externals = {d.refund_id: d for d in run.discrepancies if d.kind == EXTERNAL}
    assert externals[small].error is False          # small dashboard refund: recorded only
    assert externals[big].error is True             # above the 500.00 escalation limit
    assert {d.kind for d in run.open_errors} == {
        CHECKFRONT_NOT_UPDATED, EXTERNAL, AMOUNT_MISMATCH, CURRENCY_MISMATCH, FAILED,
        STALE_PENDING, MISSING_IN_STRIPE}
    usd = run.totals["USD"]
    assert usd["matched"] == 5_000 + 5_000 + 3_000
    assert usd["external"] == 2_000 + 60_000
    assert usd["failed"] == 2_500
    assert usd["refunded"] == 5_000 * 2 + 2_000 + 60_000 + 4_000 + 3_000 + 1_500 + 3_000
    text = render_text(run)
    assert "Checkfront not updated: CF-1 50.00 USD" in text
    assert "amount mismatch: AMT-1 40.00 USD" in text and "our ledger says 41.00 USD" in text


async def test_rerun_replaces_the_day_and_a_fix_shows_as_resolved(world: World) -> None:
    svc = world.bot.svc
    day = past_day()
    await bot_refund(world, "CF-2", local(day, 10))
    world.checkfront.booking("CF-2").status = "PAID"
    ref, pi = await outside_refund(world, 4_000, local(day, 11))
    await world.settle()
    case_id = await insert_case(svc, "AMT-2")
    exec_id = await insert_execution(svc, case_id, payment=pi, amount=4_500,
                                     when=local(day, 11), status="succeeded", refund_id=ref)

    first = await reconcile_day(svc, day, TZ)
    again = await reconcile_day(svc, day, TZ)

    assert again.counts == first.counts and again.totals == first.totals
    assert [(d.id, d.key, d.first_seen) for d in again.discrepancies] == \
        [(d.id, d.key, d.first_seen) for d in first.discrepancies]
    rows = await svc.store.fetch_all("SELECT day, runs FROM recon_runs")
    assert [(r["day"], r["runs"]) for r in rows] == [(day.isoformat(), 2)]
    count = await svc.store.fetch_one("SELECT COUNT(*) AS n FROM recon_discrepancies")
    assert count is not None and count["n"] == 2

    # the ledger is corrected: re-running the same day resolves the mismatch
    async with svc.store.transaction() as tx:
        await tx.execute("UPDATE executions SET amount = 4000 WHERE id = ?", (exec_id,))
    third = await reconcile_day(svc, day, TZ)
    assert [d.kind for d in third.resolved] == [AMOUNT_MISMATCH]
    assert [d.kind for d in third.open_errors] == [CHECKFRONT_NOT_UPDATED]

    # Checkfront is fixed the next day: the next day's run resolves the older problem
    world.checkfront.booking("CF-2").status = "STOP"
    next_day = await reconcile_day(svc, day + timedelta(days=1), TZ)
    assert [(d.kind, d.booking_code) for d in next_day.resolved] == \
        [(CHECKFRONT_NOT_UPDATED, "CF-2")]
    assert await open_discrepancies(svc.store) == []
    stored = await load_run(svc.store, day)
    assert stored is not None
    assert all(d.resolved_at for d in stored.discrepancies)
    assert "resolved" in render_text(stored)


async def test_day_boundary_in_the_business_timezone(world: World) -> None:
    svc = world.bot.svc
    day = past_day()
    late = local(day, 23, 30)        # 03:30 or 04:30 UTC on the next calendar day
    early = local(day + timedelta(days=1), 0, 30)
    before = local(day, 0, 0) - timedelta(seconds=1)
    refs = {}
    for name, when in (("late", late), ("early", early), ("before", before)):
        refs[name], pi = await outside_refund(world, 1_000, when)
        case_id = await insert_case(svc, f"TZ-{name}")
        await insert_execution(svc, case_id, payment=pi, amount=1_000, when=when,
                               status="succeeded", refund_id=refs[name])
    await world.settle()

    start, end = day_window(day, TZ)
    assert start == local(day, 0).astimezone(UTC) and end - start in (
        timedelta(hours=23), timedelta(hours=24), timedelta(hours=25))
    on_day = await reconcile_day(svc, day, TZ)
    following = await reconcile_day(svc, day + timedelta(days=1), TZ)

    assert (on_day.stripe_count, on_day.counts[MATCHED]) == (1, 1)
    assert on_day.discrepancies == []   # the neighbours' ledger rows are not "missing" here
    assert (following.stripe_count, following.counts[MATCHED]) == (1, 1)


async def test_ledger_row_dated_a_day_early_is_reconciled_once(world: World) -> None:
    """The bot planned at 23:59:59, Stripe dated the refund after midnight: no day reports it
    missing, and only the day Stripe dated it counts it."""
    svc = world.bot.svc
    day = past_day()
    ref, pi = await outside_refund(world, 1_000, local(day + timedelta(days=1), 0, 0))
    await world.settle()
    case_id = await insert_case(svc, "EDGE-1")
    await insert_execution(svc, case_id, payment=pi, amount=1_000,
                           when=local(day, 23, 59) + timedelta(seconds=59),
                           status="succeeded", refund_id=ref)

    first = await reconcile_day(svc, day, TZ)
    second = await reconcile_day(svc, day + timedelta(days=1), TZ)

    assert first.counts[MATCHED] == 0 and first.discrepancies == []
    assert any("neighbouring day" in n for n in first.notes)
    assert second.counts[MATCHED] == 1 and second.discrepancies == []


async def test_a_person_can_close_an_external_refund_and_it_stays_closed(world: World) -> None:
    svc = world.bot.svc
    day = past_day()
    await outside_refund(world, 70_000, local(day, 9), metadata={"booking_code": "BIG-2"})
    await world.settle()
    run = await reconcile_day(svc, day, TZ)
    [problem] = run.open_errors
    assert problem.id is not None

    assert await resolve_discrepancy(svc.store, problem.id, by="maria",
                                     note="goodwill refund agreed with the owner")
    rerun = await reconcile_day(svc, day, TZ)

    assert rerun.open_errors == []
    assert await open_discrepancies(svc.store) == []


async def test_reconcile_and_digest_commands_print_the_report(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    settings = world.bot.settings
    for name in ("database_path", "policy_file", "checkfront_host", "stripe_api_base"):
        monkeypatch.setenv(name.upper(), str(getattr(settings, name)))
    for name in ("checkfront_api_key", "checkfront_api_secret", "checkfront_webhook_secret",
                 "stripe_secret_key", "stripe_webhook_secret"):
        monkeypatch.setenv(name.upper(), getattr(settings, name).get_secret_value())
    day = past_day()
    await bot_refund(world, "CLI-1", local(day, 10))
    await outside_refund(world, 80_000, local(day, 11), metadata={"booking_code": "CLI-BIG"})
    await world.settle()
    parser = argparse.ArgumentParser()
    report_commands.register(parser.add_subparsers(dest="command"))

    status = await report_commands.cmd_reconcile(parser.parse_args(
        ["reconcile", "--date", day.isoformat(), "--tz", "America/New_York"]))
    text = capsys.readouterr().out
    assert status == 1  # an open discrepancy
    assert f"Reconciliation for {day.isoformat()} (America/New_York" in text
    assert "external: CLI-BIG 800.00 USD" in text

    status = await report_commands.cmd_reconcile(parser.parse_args(
        ["reconcile", "--date", day.isoformat(), "--tz", "America/New_York", "--json"]))
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["matched"] == 1 and data["totals"]["USD"]["external"] == 80_000

    assert await report_commands.cmd_digest(parser.parse_args(
        ["digest", "--date", day.isoformat(), "--tz", "America/New_York"])) == 0
    digest = capsys.readouterr().out
    assert "USD: 1 refund(s), 50.00 USD" in digest
    assert "1 automatic, 0 approved by a person, 0 denied" in digest
    assert "median time from cancellation to refund: 1 h 30 min" in digest
    assert "Automation: running" in digest

    with pytest.raises(SystemExit):
        parser.parse_args(["reconcile", "--date", "yesterday"])
