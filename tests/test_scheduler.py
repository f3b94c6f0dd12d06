"""The scheduler: a missed daily run happens once at start-up, never twice, never overlapping;
schedules are read in the business's timezone."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    JobEvent,
)

from bot.cli.world import World
from bot.scheduler import (
    ANOMALY_JOB,
    DAILY_JOB,
    DAILY_STATE,
    ScheduledJobs,
    build_scheduler,
    catch_up,
    failure_reason,
)
from bot.schedules import due_day, parse_schedule
from services.finance.anomaly import Anomaly
from services.finance.runs import ReconRun, load_run
from services.refunds.automation import automation_state
from services.store.db import now_iso, set_state

TZ = ZoneInfo("America/New_York")


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=TZ)


class Digests:
    def __init__(self, hold: asyncio.Event | None = None) -> None:
        self.posted: list[tuple[date, list[Anomaly]]] = []
        self.entered = asyncio.Event()
        self.hold = hold

    async def __call__(self, run: ReconRun, anomalies: list[Anomaly]) -> None:
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        self.posted.append((run.day, anomalies))


async def last_reconciled(world: World, day: date) -> None:
    async with world.bot.svc.store.transaction() as tx:
        await set_state(tx, DAILY_STATE, {"day": day.isoformat(), "at": "earlier"})


def test_due_day_follows_the_local_schedule() -> None:
    daily = parse_schedule("07:00", TZ)
    today = date(2026, 3, 9)   # the day after the US switch to summer time
    assert due_day(daily, local(today, 6, 59), TZ) == date(2026, 3, 7)
    assert due_day(daily, local(today, 7, 0), TZ) == date(2026, 3, 8)
    weekdays = parse_schedule("30 6 * * mon-fri", TZ)
    sunday = date(2026, 3, 8)
    assert due_day(weekdays, local(sunday, 12), TZ) == date(2026, 3, 5)  # Friday's run


async def test_a_missed_daily_run_executes_once_at_start_up(world: World) -> None:
    svc = world.bot.svc
    today = datetime.now(TZ).date()
    await last_reconciled(world, today - timedelta(days=4))  # down for three mornings
    assert svc.stripe is not None
    pi = world.stripe.add_payment(5_000, "USD").id
    refund = await svc.stripe.create_refund(payment_ref=pi, amount=1_000, currency="USD",
                                            idempotency_key="by-hand-1", metadata={})
    world.stripe.backdate(refund.id, int(local(today - timedelta(days=2), 15).timestamp()))
    digests = Digests()

    first = await catch_up(svc, tz=TZ, on_digest=digests, now=local(today, 9))
    second = await catch_up(svc, tz=TZ, on_digest=digests, now=local(today, 9, 5))

    assert first is not None and first.day == today - timedelta(days=1)
    assert second is None
    assert [day for day, _ in digests.posted] == [today - timedelta(days=1)]
    days = await svc.store.fetch_all("SELECT day, runs FROM recon_runs ORDER BY day")
    assert [(r["day"], r["runs"]) for r in days] == [
        ((today - timedelta(days=n)).isoformat(), 1) for n in (3, 2, 1)]
    assert (await svc.store.get_state(DAILY_STATE))["day"] == first.day.isoformat()
    missed = await load_run(svc.store, today - timedelta(days=2))
    assert missed is not None and missed.stripe_count == 1
    assert [d.refund_id for d in missed.discrepancies] == [refund.id]  # recorded as external


async def test_before_the_daily_time_nothing_is_missed(world: World) -> None:
    today = datetime.now(TZ).date()
    await last_reconciled(world, today - timedelta(days=2))
    digests = Digests()
    assert await catch_up(world.bot.svc, tz=TZ, on_digest=digests,
                          now=local(today, 6, 30)) is None
    assert digests.posted == []


async def test_two_starts_at_once_make_one_run(world: World) -> None:
    today = datetime.now(TZ).date()
    await last_reconciled(world, today - timedelta(days=2))
    digests = Digests()
    now = local(today, 8)
    jobs = ScheduledJobs(world.bot.svc, TZ, on_digest=digests)   # one per store, as the app

    results = await asyncio.gather(jobs.daily(now), jobs.daily(now))

    assert sorted(r is None for r in results) == [False, True]
    assert len(digests.posted) == 1


async def test_the_scheduler_never_runs_the_daily_job_twice_at_once(world: World) -> None:
    release = asyncio.Event()
    digests = Digests(hold=release)
    scheduler = build_scheduler(world.bot.svc, tz=TZ, on_digest=digests)
    events: list[JobEvent] = []
    scheduler.add_listener(events.append, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_EXECUTED)

    scheduler.start()   # nothing reconciled yet: the start-up run does the due day
    try:
        daily = scheduler.get_job(DAILY_JOB)
        assert (daily.coalesce, daily.max_instances, daily.misfire_grace_time) == \
            (True, 1, 3600)
        assert scheduler.get_job(ANOMALY_JOB).max_instances == 1
        await asyncio.wait_for(digests.entered.wait(), 10)
        scheduler.modify_job(DAILY_JOB, next_run_time=datetime.now(TZ))  # fires again now
        for _ in range(1000):
            if any(e.code == EVENT_JOB_MAX_INSTANCES for e in events):
                break
            await asyncio.sleep(0.01)
        release.set()
        for _ in range(1000):
            if any(e.code == EVENT_JOB_EXECUTED for e in events):
                break
            await asyncio.sleep(0.01)
        next_run = scheduler.get_job(DAILY_JOB).next_run_time.astimezone(TZ)
    finally:
        scheduler.shutdown(wait=False)

    assert [e.code for e in events] == [EVENT_JOB_MAX_INSTANCES, EVENT_JOB_EXECUTED]
    due = due_day(parse_schedule("07:00", TZ), datetime.now(TZ), TZ)
    assert [day for day, _ in digests.posted] == [due]
    assert next_run.time() == time(7, 0) and next_run > datetime.now(TZ)


async def test_anomaly_checks_do_not_overlap_and_trip_once(world: World) -> None:
    svc = world.bot.svc
    now = now_iso()
    async with svc.store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT INTO cases (booking_id, booking_code, status, currency, cancelled_at, "
            "source, created_at, updated_at) VALUES ('1', 'F-1', 'failed', 'USD', ?, 'cli', ?, ?)",
            (now, now, now))
        for attempt in (1, 2, 3):
            await tx.execute(
                "INSERT INTO executions (case_id, payment_ref, amount, currency, attempt, "
                "idempotency_key, status, failure_reason, called_at, created_at, updated_at) "
                "VALUES (?, 'pi_x', 100, 'USD', ?, ?, 'failed', 'declined', ?, ?, ?)",
                (cursor.lastrowid, attempt, f"key-{attempt}", now, now, now))
    jobs = ScheduledJobs(svc, TZ)

    results = await asyncio.gather(jobs.anomaly(), jobs.anomaly())

    assert sorted(len(r) for r in results) == [0, 1]   # the second found the first running
    assert (await automation_state(svc.store)).paused
    rows = await svc.store.fetch_all(
        "SELECT actor FROM audit_log WHERE action = 'automation.paused'")
    assert [r["actor"] for r in rows] == ["anomaly-detector"]
    assert (await svc.store.get_state("scheduler.anomaly"))["found"] == 1


async def test_a_daily_run_that_fails_is_tried_again_and_digests_its_day(world: World) -> None:
    """Stripe answers 500 to every listing at the daily time: the run fails, its slot is not
    counted as run, and it is tried again (sooner each time than a day) until it digests."""
    svc = world.bot.svc
    digests = Digests()
    world.stripe.inject("500", method="GET", path="/v1/refunds", times=10_000)
    scheduler = build_scheduler(svc, tz=TZ, on_digest=digests,
                                retry_failed_after=timedelta(seconds=0.2))
    errors: list[JobEvent] = []
    scheduler.add_listener(errors.append, EVENT_JOB_ERROR)
    scheduler.start()   # the start-up run does the due day
    try:
        for _ in range(400):
            if errors:
                break
            await asyncio.sleep(0.05)
        assert errors, "the daily run did not fail"
        slot = await svc.store.fetch_one(
            "SELECT done_at FROM leases WHERE name LIKE 'job:daily-reconcile:%'")
        assert slot is not None and slot["done_at"] is None   # not counted as run
        assert digests.posted == []
        world.stripe.faults.clear()   # Stripe is back
        for _ in range(400):
            if digests.posted:
                break
            await asyncio.sleep(0.05)
    finally:
        scheduler.shutdown(wait=False)

    due = due_day(parse_schedule("07:00", TZ), datetime.now(TZ), TZ)
    assert [day for day, _ in digests.posted] == [due]
    assert (await svc.store.get_state(DAILY_STATE))["day"] == due.isoformat()


def test_a_failed_slot_waits_longer_each_time_up_to_an_hour(world: World) -> None:
    jobs = ScheduledJobs(world.bot.svc, TZ)
    waits = [jobs._retry_delay("job:daily-reconcile:2026-12-01") for _ in range(6)]
    assert [w.total_seconds() / 60 for w in waits] == [5, 10, 20, 40, 60, 60]
    assert jobs._retry_delay("job:weekly-review:2026-W48") == timedelta(minutes=5)   # its own


async def test_a_run_cut_short_by_a_shutdown_is_not_counted_as_run(world: World) -> None:
    svc = world.bot.svc
    jobs = ScheduledJobs(svc, TZ)
    started = asyncio.Event()

    async def long_run() -> None:
        started.set()
        await asyncio.sleep(60)

    running = asyncio.create_task(jobs.once(DAILY_JOB, "2026-12-01", long_run))
    await asyncio.wait_for(started.wait(), 5)
    running.cancel()   # the instance stops mid-run
    with contextlib.suppress(asyncio.CancelledError):
        await running
    slot = await svc.store.fetch_one(
        "SELECT done_at FROM leases WHERE name = 'job:daily-reconcile:2026-12-01'")
    assert slot is not None and slot["done_at"] is None   # free for the next start to run
    ran: list[bool] = []

    async def short_run() -> None:
        ran.append(True)

    await ScheduledJobs(svc, TZ).once(DAILY_JOB, "2026-12-01", short_run)   # another instance
    assert ran == [True]


def test_a_failure_is_told_by_its_kind_never_its_message() -> None:
    from services.clients.checkfront_errors import CheckfrontUnavailable
    from services.clients.stripe_errors import StripeGatewayError
    assert failure_reason(StripeGatewayError(
        "unavailable", "POST /v1/refunds for ana@example.test failed")) == "Stripe: unavailable"
    assert failure_reason(CheckfrontUnavailable("booking of Ana Silva")) == \
        "Checkfront: CheckfrontUnavailable"
    assert failure_reason(RuntimeError("ana@example.test")) == "RuntimeError"
