"""The scheduled side: the daily reconciliation and digest, the anomaly check, retries of
Checkfront write-backs that failed, the sweep that runs approved cases a crash left
unexecuted, and the reminders and escalations of cases left waiting for a person (all three
every five minutes).

APScheduler 3 (`AsyncIOScheduler`, in-memory job store). Every job has `coalesce=True`,
`max_instances=1` and a `misfire_grace_time`, so a late wake-up runs a job once and a job never
overlaps itself. The memory job store forgets everything on restart, so the last business day
the daily job reconciled is kept in the `state` table; `catch_up` (and the scheduler itself at
start-up, with `run_missed_on_start`) runs a missed daily job once. The `ScheduledJobs` object
owns one lock per job, and with that state makes a second run of the same day through it a
no-op, whoever starts it; the app builds one (in `build_scheduler`). It also owns the anomaly
breaker, so the daily job and the anomaly job pause automation once between them.

A daily run reconciles every business day after the last reconciled one up to the day its
schedule is due for (at most `MAX_CATCH_UP_DAYS`), checks anomalies, then calls `on_digest`
once with the newest run: one digest however many days were caught up.

The reminder job gives each waiting card one reminder past `remind_after` and one escalation
past `escalate_after` (services.refunds.reminders stores each as given, so restarts and
overlapping runs give none twice); `on_nudge` posts it (bot.slack.nudges).

The weekly review job (`review_at`, e.g. "mon 08:00") calls `on_review` with the last whole ISO
week before its run, once a week: the week reviewed is kept in the `state` table, so a restart
or a second run does not post it twice.

Several instances on one store: each scheduled run is taken as a leased job row per (job,
slot) (`services.store.leases`, `job:<job>:<slot>`), so a schedule runs once across all
instances whichever fires first. The slot of a daily run is the business day it reconciles
(so the start-up catch-up of two instances is one run too); of the other jobs, the time their
schedule last fired. The holder renews the lease while the job runs and marks the slot done
when it ends. A failed run of the daily reconciliation or the weekly review (Stripe or the
store unreachable at the hour) is not counted: its lease is let go and the slot is tried again,
by whichever instance takes it, after `retry_failed_after` (5 minutes, doubling each failure,
at most an hour), so the day's digest comes late rather than not at all. A run cut short
(the instance stopping) is not counted either: the next to take the slot runs it. A failed
run of the jobs that fire every few minutes is counted: their next firing tries again. An
instance that finds the slot held by another, not done, comes back when that lease would
have passed: a leader killed mid-run renews nothing, and the slot is taken and run by
another instance.
Direct calls of the job bodies (`catch_up`, the command line, tests) are not gated: they are
explicit runs.

Schedules are "HH:MM", "mon 08:00" or a five-field crontab in the business's timezone
(bot/schedules.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.schedules import due_day, last_fire, parse_schedule
from services.clients.checkfront_errors import CheckfrontError
from services.clients.stripe_errors import StripeGatewayError
from services.deps import Deps
from services.finance.agreement import last_week
from services.finance.anomaly import DEFAULT, Anomaly, AnomalyConfig, check
from services.finance.anomaly_log import record, seen_between
from services.finance.breaker import Breaker
from services.finance.days import day_window
from services.finance.reconcile import reconcile_day
from services.finance.runs import ReconRun
from services.intake.events import purge_payloads
from services.refunds import reminders
from services.refunds.decisions import run_approved
from services.refunds.reminders import Nudge
from services.refunds.writeback import retry_due
from services.store import leases
from services.store.db import now_iso, set_state, utcnow

log = logging.getLogger(__name__)

DAILY_JOB = "daily-reconcile"
ANOMALY_JOB = "anomaly-check"
WRITEBACK_JOB = "checkfront-writebacks"
WRITEBACK_EVERY = "*/5 * * * *"
APPROVED_JOB = "approved-sweep"
APPROVED_EVERY = "*/5 * * * *"
REMINDER_JOB = "waiting-reminders"
REMINDER_EVERY = "*/5 * * * *"
REVIEW_JOB = "weekly-review"
RETRIED_WHEN_FAILED = frozenset({DAILY_JOB, REVIEW_JOB})   # once a day or week: a failure waits
REVIEW_STATE = "scheduler.review"
DEFAULT_REVIEW_AT = "mon 08:00"
DAILY_STATE = "scheduler.daily"
ANOMALY_STATE = "scheduler.anomaly"
DEFAULT_DAILY_AT = "07:00"
DEFAULT_ANOMALY_EVERY = "*/15 * * * *"
DEFAULT_MISFIRE_GRACE = 3600     # seconds a late daily run may still start
ANOMALY_MISFIRE_GRACE = 300
MAX_CATCH_UP_DAYS = 7
KEEP_SLOTS = timedelta(days=7)   # done job slots older than this are forgotten daily
RETRY_FAILED_AFTER = timedelta(minutes=5)   # a failed daily run or review: tried again after,
RETRY_FAILED_AT_MOST = timedelta(hours=1)   # doubling each time, up to this

OnDigest = Callable[[ReconRun, list[Anomaly]], Awaitable[None]]
OnNudge = Callable[[Nudge], Awaitable[None]]
OnReview = Callable[[str], Awaitable[None]]   # the ISO week to review, "2025-W14"
# a daily run failed: (its day, why in a few words, when it is tried again)
OnDailyFailed = Callable[[str, str, datetime], Awaitable[None]]


def failure_reason(error: Exception) -> str:
    """A failed run's cause in a few words for the chat: which service and the error's kind,
    never its message (which may quote a request)."""
    if isinstance(error, StripeGatewayError):
        return f"Stripe: {error.kind}"
    if isinstance(error, CheckfrontError):
        return f"Checkfront: {type(error).__name__}"
    return type(error).__name__


@dataclass
class ScheduledJobs:
    """The job bodies; the scheduler, `catch_up` and the command line all call these.

    Build one per store and keep it: its locks keep a job from running twice at once and its
    breaker pauses automation once, only among the calls made through this object.
    """

    svc: Deps
    tz: ZoneInfo
    daily_at: str = DEFAULT_DAILY_AT
    on_digest: OnDigest | None = None
    anomaly_config: AnomalyConfig = DEFAULT
    check_checkfront: bool = True
    on_nudge: OnNudge | None = None
    remind_after: timedelta | None = None     # None: no reminders
    escalate_after: timedelta | None = None   # None: no escalations
    on_review: OnReview | None = None
    review_at: str = DEFAULT_REVIEW_AT
    retry_failed_after: timedelta = RETRY_FAILED_AFTER
    on_daily_failed: OnDailyFailed | None = None
    _failures: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _review_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _daily_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _anomaly_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _reminder_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _running: set[str] = field(default_factory=set, init=False, repr=False)
    scheduler: AsyncIOScheduler | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.trigger = parse_schedule(self.daily_at, self.tz)
        self.breaker = Breaker(self.svc)

    def slot_of(self, job: str, trigger: CronTrigger, now: datetime) -> str:
        """Which run of `job` a firing at `now` is: the business day a daily run reconciles,
        the latest time the schedule fired at or before `now` for the others."""
        if job == DAILY_JOB:
            day = due_day(trigger, now, self.tz)
            return day.isoformat() if day else "none"
        fired = last_fire(trigger, now, timedelta(days=2)) or last_fire(trigger, now)
        return fired.astimezone(UTC).isoformat(timespec="minutes") if fired else "none"

    def scheduled(self, job: str, body: Callable[[datetime], Awaitable[Any]],
                  trigger: CronTrigger) -> Callable[[], Awaitable[Any]]:
        """`body` as the scheduler runs it: once per slot across all instances (`once`)."""

        async def run() -> Any:
            now = utcnow()
            return await self.once(job, self.slot_of(job, trigger, now), lambda: body(now))

        run.__name__ = run.__qualname__ = f"scheduled_{job.replace('-', '_')}"
        return run

    async def once(self, job: str, slot: str, body: Callable[[], Awaitable[Any]]) -> Any:
        """Run `body` for (`job`, `slot`) when this instance takes the slot's lease; None when
        another instance has it (it comes back once that lease would have passed) or ran it."""
        name = f"{leases.JOB}{job}:{slot}"
        store = self.svc.store
        if name in self._running:
            return None
        held = await leases.take(store, name, utcnow())
        if not held.held:
            if not held.done:
                self._come_back(job, slot, body, name)
            return None
        self._running.add(name)
        renewing = asyncio.create_task(self._renew(name), name=f"lease:{name}")
        ended, error = False, None
        try:
            result = await body()
            ended = True
            return result
        except Exception as exc:
            error = exc
            raise   # the scheduler logs it
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            self._running.discard(name)
            if ended or (error is not None and job not in RETRIED_WHEN_FAILED):
                self._failures.pop(name, None)
                await leases.finish(store, name, utcnow())
            else:   # failed, to be tried again; or cut short (shutting down): not run
                try:
                    await leases.release(store, name)   # any instance may take it again
                except Exception:   # the store itself may be what failed: the lease passes
                    log.exception("letting the lease of %s go failed", name)
                if error is not None:
                    await self._failed(job, slot, body, name, error)

    async def _failed(self, job: str, slot: str, body: Callable[[], Awaitable[Any]],
                      name: str, error: Exception) -> None:
        """Try the slot again later; of a daily run, tell the digest channel (the first
        failure of the day: the poster's row is once a day)."""
        after = self._retry_delay(name)
        self._come_back(job, slot, body, name, after=after)
        if job != DAILY_JOB or self.on_daily_failed is None:
            return
        try:
            await self.on_daily_failed(slot, failure_reason(error), utcnow() + after)
        except Exception:   # the alert must not hide the failure it reports
            log.exception("the digest channel could not be told that %s failed", name)

    def _retry_delay(self, name: str) -> timedelta:
        """How long a failed slot waits before it is tried again: doubling, at most an hour."""
        failures = self._failures[name] = self._failures.get(name, 0) + 1
        return min(self.retry_failed_after * 2 ** (failures - 1), RETRY_FAILED_AT_MOST)

    async def _renew(self, name: str) -> None:
        me = leases.this()
        while True:
            await asyncio.sleep(me.lease.total_seconds() / 3)
            try:
                await leases.take(self.svc.store, name, utcnow(), me)
            except Exception:
                log.exception("renewing the lease of %s failed", name)

    def _come_back(self, job: str, slot: str, body: Callable[[], Awaitable[Any]],
                   name: str, after: timedelta | None = None) -> None:
        """Try the slot again `after` from now, by default once its holder's lease would have
        passed (that holder may be killed mid-run): a one-off run on this scheduler."""
        if self.scheduler is None or not self.scheduler.running:
            return
        if after is None:
            after = leases.this().lease + timedelta(seconds=1)
        at = datetime.now(self.tz) + after

        async def again() -> Any:
            return await self.once(job, slot, body)

        self.scheduler.add_job(again, trigger="date", run_date=at, id=f"again:{name}",
                               name=f"{job} {slot}, if its holder is gone",
                               replace_existing=True, misfire_grace_time=None)

    async def daily(self, now: datetime | None = None) -> ReconRun | None:
        """Reconcile the days not yet reconciled up to the due one, then digest; None when
        there was nothing to do."""
        async with self._daily_lock:
            now = now or utcnow()
            await purge_payloads(self.svc.store, self.svc.config.raw_event_retention, now)
            await leases.purge_done(self.svc.store, now - KEEP_SLOTS)
            target = due_day(self.trigger, now, self.tz)
            if target is None:
                return None
            state = await self.svc.store.get_state(DAILY_STATE) or {}
            last = date.fromisoformat(state["day"]) if state.get("day") else None
            if last is not None and last >= target:
                return None
            first = target - timedelta(days=MAX_CATCH_UP_DAYS - 1)
            if last is not None:
                first = max(first, last + timedelta(days=1))
            run: ReconRun | None = None
            day = first
            while day <= target:
                run = await reconcile_day(self.svc, day, self.tz, now=now,
                                          check_checkfront=self.check_checkfront)
                log.info("reconciled %s: %s", day, run.counts)
                day += timedelta(days=1)
            assert run is not None
            anomalies = await self._anomalies(now, target)
            if self.on_digest is not None:
                await self.on_digest(run, anomalies)
            async with self.svc.store.transaction() as tx:
                await set_state(tx, DAILY_STATE, {
                    "day": target.isoformat(), "at": now_iso(),
                    "days": (target - first).days + 1})
            return run

    async def _anomalies(self, now: datetime, day: date) -> list[Anomaly]:
        """What the detector sees now, plus what it recorded during the reconciled day."""
        current = await self._check(now)
        start, end = day_window(day, self.tz)
        earlier = await seen_between(self.svc.store, start, end)
        keys = {a.key for a in current}
        return current + [a for a in earlier if a.key not in keys]

    async def review(self, now: datetime | None = None) -> str | None:
        """Post the review of the last whole week before the latest scheduled run, unless it
        was posted already; the week posted, or None."""
        if self.on_review is None:
            return None
        async with self._review_lock:
            now = now or utcnow()
            fired = last_fire(parse_schedule(self.review_at, self.tz), now)
            if fired is None:
                return None
            week = last_week(fired, self.tz)
            state = await self.svc.store.get_state(REVIEW_STATE) or {}
            if state.get("week") == week:
                return None
            await self.on_review(week)
            async with self.svc.store.transaction() as tx:
                await set_state(tx, REVIEW_STATE, {"week": week, "at": now_iso()})
            return week

    async def writebacks(self, now: datetime | None = None) -> list[int]:
        """Checkfront write-backs that failed and are due again."""
        return await retry_due(self.svc, now)

    async def approved_sweep(self, now: datetime | None = None) -> list[int]:
        """Approved cases a crash left unexecuted: run them (the ids it ran)."""
        return await run_approved(self.svc, now)

    async def reminders(self, now: datetime | None = None) -> list[Nudge]:
        """Remind and escalate the cases waiting too long, each once (the nudges given)."""
        if self.on_nudge is None or self.remind_after is None:
            return []
        async with self._reminder_lock:
            owed = await reminders.due(self.svc.store, now or utcnow(),
                                       remind_after=self.remind_after,
                                       escalate_after=self.escalate_after)
            for nudge in owed:
                await self.on_nudge(nudge)   # idempotent: a crash before `mark` posts once
                await reminders.mark(self.svc.store, nudge)
            return owed

    async def anomaly(self, now: datetime | None = None) -> list[Anomaly]:
        """One anomaly check; skipped (empty) while another is still running."""
        if self._anomaly_lock.locked():
            return []
        async with self._anomaly_lock:
            found = await self._check(now or utcnow())
            async with self.svc.store.transaction() as tx:
                await set_state(tx, ANOMALY_STATE, {"at": now_iso(), "found": len(found)})
            return found

    async def _check(self, now: datetime) -> list[Anomaly]:
        found = await record(self.svc.store, await check(
            self.svc, now, tz=self.tz, config=self.anomaly_config), now)
        if await self.breaker.trip_if_needed(found):
            log.warning("automation paused by the anomaly detector: %s",
                        "; ".join(a.kind for a in found if a.blocking))
        return found


def build_scheduler(
    svc: Deps,
    *,
    tz: ZoneInfo,
    daily_at: str = DEFAULT_DAILY_AT,
    on_digest: OnDigest | None = None,
    anomaly_every: str = DEFAULT_ANOMALY_EVERY,
    misfire_grace_time: int = DEFAULT_MISFIRE_GRACE,
    run_missed_on_start: bool = True,
    anomaly_config: AnomalyConfig = DEFAULT,
    on_nudge: OnNudge | None = None,
    remind_after: timedelta | None = None,
    escalate_after: timedelta | None = None,
    on_review: OnReview | None = None,
    review_at: str = DEFAULT_REVIEW_AT,
    retry_failed_after: timedelta = RETRY_FAILED_AFTER,
    on_daily_failed: OnDailyFailed | None = None,
) -> AsyncIOScheduler:
    """The scheduler with its jobs, not started (`start()` it inside the event loop).

    With `run_missed_on_start`, the daily job's first run is at start-up: it does the work of
    `catch_up` (nothing when the due day is already reconciled), then follows its schedule.
    """
    jobs = ScheduledJobs(svc, tz, daily_at, on_digest, anomaly_config, on_nudge=on_nudge,
                         remind_after=remind_after, escalate_after=escalate_after,
                         on_review=on_review, review_at=review_at,
                         retry_failed_after=retry_failed_after,
                         on_daily_failed=on_daily_failed)
    scheduler = AsyncIOScheduler(timezone=tz, job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": misfire_grace_time})
    jobs.scheduler = scheduler
    extra = {"next_run_time": datetime.now(tz)} if run_missed_on_start else {}
    short = min(misfire_grace_time, ANOMALY_MISFIRE_GRACE)
    scheduler.add_job(jobs.scheduled(DAILY_JOB, jobs.daily, jobs.trigger), trigger=jobs.trigger,
                      id=DAILY_JOB, name="daily reconciliation and digest",
                      replace_existing=True, **extra)
    every: list[tuple[str, Callable[[datetime], Awaitable[Any]], str, str]] = [
        (ANOMALY_JOB, jobs.anomaly, anomaly_every, "anomaly check"),
        (WRITEBACK_JOB, jobs.writebacks, WRITEBACK_EVERY, "Checkfront write-back retries"),
        (APPROVED_JOB, jobs.approved_sweep, APPROVED_EVERY, "approved cases left unexecuted")]
    if on_nudge is not None and remind_after is not None:
        every.append((REMINDER_JOB, jobs.reminders, REMINDER_EVERY,
                      "reminders of cases waiting for a person"))
    for job, body, spec, title in every:
        trigger = parse_schedule(spec, tz)
        scheduler.add_job(jobs.scheduled(job, body, trigger), trigger=trigger, id=job,
                          name=title, replace_existing=True, misfire_grace_time=short)
    if on_review is not None:
        trigger = parse_schedule(review_at, tz)
        scheduler.add_job(jobs.scheduled(REVIEW_JOB, jobs.review, trigger), trigger=trigger,
                          id=REVIEW_JOB, name="weekly review", replace_existing=True)
    return scheduler


async def catch_up(
    svc: Deps,
    *,
    tz: ZoneInfo,
    daily_at: str = DEFAULT_DAILY_AT,
    on_digest: OnDigest | None = None,
    now: datetime | None = None,
    anomaly_config: AnomalyConfig = DEFAULT,
) -> ReconRun | None:
    """At start-up: run the daily job once if its last due run was missed; None otherwise.

    It builds jobs of its own, so it is not serialised with another `ScheduledJobs` (such as a
    running scheduler's) on the same store; call `daily` on that object instead."""
    return await ScheduledJobs(svc, tz, daily_at, on_digest, anomaly_config).daily(now)
