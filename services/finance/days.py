"""Business days: the UTC window of one local day, midnight to the next midnight.

A business day is a calendar day in the business's timezone, so it lasts 23 or 25 hours on a
DST change. The reconciliation, the digest's figures and the range reports all count a day this
way.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def day_window(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a business day in UTC: local midnight to the next local midnight."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)
