"""Schedules as the settings write them: "HH:MM" (every day at that local time), "mon 08:00"
(that weekday, that local time) or a five-field crontab, in the business's timezone; and when
such a schedule last fired. APScheduler 3 counts crontab weekdays from Monday = 0: write
weekdays by name (mon-fri) to avoid the difference."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_HH_MM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DAY_HH_MM = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)\s+([01]?\d|2[0-3]):([0-5]\d)$", re.I)


def parse_schedule(spec: str, tz: ZoneInfo) -> CronTrigger:
    """A schedule: "07:00" (every day at that local time) or a crontab "m h dom mon dow"."""
    text = spec.strip()
    match = _HH_MM.match(text)
    if match:
        return CronTrigger(hour=int(match[1]), minute=int(match[2]), timezone=tz)
    weekly = _DAY_HH_MM.match(text)   # "mon 08:00": that weekday, that local time
    if weekly:
        return CronTrigger(day_of_week=weekly[1].lower(), hour=int(weekly[2]),
                           minute=int(weekly[3]), timezone=tz)
    try:
        return CronTrigger.from_crontab(text, timezone=tz)
    except ValueError as exc:
        raise ValueError(f"not a schedule (HH:MM or a crontab line): {spec!r}: {exc}") from None


def last_fire(trigger: CronTrigger, now: datetime, lookback: timedelta = timedelta(days=35)
              ) -> datetime | None:
    """The most recent time the schedule fired at or before `now` (within `lookback`)."""
    moment = trigger.get_next_fire_time(None, now - lookback)
    last = None
    for _ in range(100_000):
        if moment is None or moment > now:
            break
        last = moment
        moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return last


def due_day(trigger: CronTrigger, now: datetime, tz: ZoneInfo) -> date | None:
    """The business day the latest scheduled run at or before `now` reconciles (the day
    before that run)."""
    fired = last_fire(trigger, now)
    return fired.astimezone(tz).date() - timedelta(days=1) if fired else None
