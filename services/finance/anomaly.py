"""Anomaly detection over the store: the rules, their thresholds and what each one found.

Signals, each with a plain-language reason and its numbers:

- refund_count (blocking): refunds the bot made in the last hour against the same hour of
  the day over the last 14 days. Method: Poisson upper tail. Hourly refund counts are small
  integers with many zero hours; their MAD is often 0, which makes a robust z-score undefined or
  explode on the first busy hour. With lambda = the mean of the 14 same-hour counts (floored
  at `min_rate`, so a quiet history does not make two refunds alarming), P(X >= observed) says
  directly how surprising the hour is. Anomalous when below `count_p` and at least `min_count`.
- refund_amount (blocking): money refunded in the last hour, per currency. Method: robust
  z-score, (x - median) / (1.4826 * MAD) over the 14 same-hour sums. Money per hour is not a
  count and is heavy-tailed; median and MAD are not dragged by one past spike as mean and
  standard deviation would be. The scale is floored at the mean single refund of those hours,
  so a flat history (MAD 0) needs several refunds' worth above normal. Needs at least
  `amount_min_refunds` refunds in the hour (one big refund is the per-case limit's business)
  and some history in that currency.
- source_spike (blocking): new cases from one source (checkfront_webhook, slack, cli) in the
  last hour, Poisson tail as for refund_count: a flooding source is stopped.
- stripe_failures (blocking): the last `failure_run` refunds sent to Stripe all failed.
- repeat_refunder (reported): one customer (by hashed email) with `repeat_min` or more refunds
  within `repeat_days` days; their own cases already need a person (per-case risk flag).
- sku_spike (reported): cancellations of one product in the last 24 hours against its daily
  mean over the 14 days before, Poisson tail; often weather, so it does not pause anything.
  When at least half of them are for one departure, the alert offers that departure's card
  (`/refund departure <sku> <start>`, `numbers["departure"]`).

"Same hour" is wall-clock in the business's timezone. Evidence from before a person last
resumed automation is not counted again, so resuming is not undone by the same spike.

What was seen is kept by `anomaly_log`; a blocking anomaly pauses automation through the
`breaker`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.deps import Deps
from services.money import display
from services.refunds import case_counts, ledger
from services.refunds.automation import Automation, automation_state
from services.refunds.ledger import ExecutionStatus
from services.store.db import iso_utc

DETECTOR = "anomaly-detector"
REFUND_COUNT = "refund_count"
REFUND_AMOUNT = "refund_amount"
SOURCE_SPIKE = "source_spike"
STRIPE_FAILURES = "stripe_failures"
REPEAT_REFUNDER = "repeat_refunder"
SKU_SPIKE = "sku_spike"
MAD_TO_SIGMA = 1.4826
REFUNDED_STATUSES = ("refunded", "partially_refunded", "refunded_by_hand", "executing",
                     "approved", "auto_approved")


@dataclass(frozen=True)
class AnomalyConfig:
    baseline_days: int = 14
    window: timedelta = timedelta(hours=1)
    count_p: float = 1e-4          # Poisson tail below this is a refund-count anomaly
    min_count: int = 5             # ... and at least this many refunds in the hour
    min_rate: float = 0.5          # floor of the baseline rate per hour
    amount_z: float = 6.0          # robust z-score above this is an amount anomaly
    amount_min_refunds: int = 3
    source_p: float = 1e-4
    source_min: int = 5
    failure_run: int = 3
    repeat_days: int = 30
    repeat_min: int = 3
    sku_p: float = 1e-3
    sku_min: int = 5
    sku_min_rate: float = 0.5      # floor of the baseline cancellations per day


DEFAULT = AnomalyConfig()


@dataclass(frozen=True)
class Anomaly:
    kind: str
    key: str              # kind, subject and hour or day: one row per episode when recorded
    blocking: bool
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "blocking": self.blocking,
                "reason": self.reason, "numbers": self.numbers}


def poisson_tail(observed: int, rate: float) -> float:
    """P(X >= observed) for X ~ Poisson(rate), summed from the tail (accurate when tiny)."""
    if observed <= 0:
        return 1.0
    if rate <= 0:
        return 0.0
    term = math.exp(-rate + observed * math.log(rate) - math.lgamma(observed + 1))
    total, k = 0.0, observed
    while term > 0 and k < observed + 10_000:
        total += term
        if term < total * 1e-17:
            break
        k += 1
        term *= rate / k
    return min(1.0, total)


@dataclass(frozen=True)
class Spike:
    """A subject whose count is improbably high against its baseline mean."""

    subject: str
    observed: int
    mean: float      # the baseline's mean, before the floor
    p: float         # Poisson tail probability of `observed` at max(mean, floor)


def poisson_spikes(observed: dict[str, int], mean_of: Callable[[str], float], *,
                   floor: float, p_below: float, at_least: int) -> list[Spike]:
    """Subjects (in sorted order) seen at least `at_least` times whose Poisson tail
    probability against their baseline mean, floored at `floor`, is below `p_below`."""
    spikes = []
    for subject, count in sorted(observed.items()):
        mean = mean_of(subject)
        p = poisson_tail(count, max(mean, floor))
        if count >= at_least and p < p_below:
            spikes.append(Spike(subject, count, mean, p))
    return spikes


def robust_z(value: float, history: list[float], floor: float) -> tuple[float, float, float]:
    """(z, median, scale): distance from the median in MAD units, the scale floored."""
    median = statistics.median(history)
    mad = statistics.median(abs(h - median) for h in history)
    scale = max(MAD_TO_SIGMA * mad, floor, 1e-9)
    return (value - median) / scale, median, scale


async def check(
    svc: Deps, now: datetime, *, tz: ZoneInfo | None = None,
    config: AnomalyConfig = DEFAULT,
) -> list[Anomaly]:
    """Every anomaly visible at `now`, blocking ones first."""
    detector = _Detector(svc, now, tz or ZoneInfo("UTC"), config,
                         await automation_state(svc.store))
    found: list[Anomaly] = []
    found += await detector.refunds()
    found += await detector.sources()
    found += await detector.failures()
    found += await detector.repeaters()
    found += await detector.skus()
    return sorted(found, key=lambda a: not a.blocking)


class _Detector:
    def __init__(self, svc: Deps, now: datetime, tz: ZoneInfo, config: AnomalyConfig,
                 automation: Automation) -> None:
        self.store = svc.store
        self.svc = svc
        self.now = now.astimezone(UTC)
        self.tz = tz
        self.c = config
        self.hour_label = now.astimezone(tz).strftime("%Y-%m-%dT%H")
        self.day_label = now.astimezone(tz).strftime("%Y-%m-%d")
        # evidence a person has already looked at (they resumed after it) is not used again
        self.since = self.now - config.window
        if not automation.paused and automation.at:
            resumed = datetime.fromisoformat(automation.at)
            self.since = max(self.since, resumed.astimezone(UTC))
        self.resumed_at = automation.at if not automation.paused else ""

    def _baseline_windows(self) -> list[tuple[datetime, datetime]]:
        """The same wall-clock hour on each of the previous days."""
        local = self.now.astimezone(self.tz)
        windows = []
        for k in range(1, self.c.baseline_days + 1):
            end = (local - timedelta(days=k)).astimezone(UTC)
            windows.append((end - self.c.window, end))
        return windows

    async def refunds(self) -> list[Anomaly]:
        current = await ledger.not_rejected_by_currency(self.store, self.since, self.now)
        history = [await ledger.not_rejected_by_currency(self.store, a, b)
                   for a, b in self._baseline_windows()]
        counts = [sum(n for n, _ in h.values()) for h in history]
        spikes = poisson_spikes(   # one subject: every refund, whatever its currency
            {"": sum(n for n, _ in current.values())}, lambda _: statistics.fmean(counts),
            floor=self.c.min_rate, p_below=self.c.count_p, at_least=self.c.min_count)
        found = [Anomaly(
            REFUND_COUNT, f"{REFUND_COUNT}:{self.hour_label}", True,
            f"{s.observed} refunds in the last hour; this hour of the day averaged "
            f"{s.mean:.1f} over the last {len(counts)} days "
            f"(Poisson tail probability {s.p:.1e})",
            {"observed": s.observed, "baseline_mean": round(s.mean, 3),
             "p": s.p, "method": "poisson"}) for s in spikes]
        for currency, (n, amount) in sorted(current.items()):
            sums = [h.get(currency, (0, 0))[1] for h in history]
            past_n = sum(h.get(currency, (0, 0))[0] for h in history)
            if n < self.c.amount_min_refunds or past_n == 0:
                continue
            typical = sum(sums) / past_n
            z, median, _ = robust_z(amount, [float(s) for s in sums], typical)
            if z > self.c.amount_z:
                found.append(Anomaly(
                    REFUND_AMOUNT, f"{REFUND_AMOUNT}:{currency}:{self.hour_label}", True,
                    f"{display(amount, currency)} refunded in the last hour ({n} refunds); "
                    f"this hour of the day had a median of {display(round(median), currency)} "
                    f"over the last {len(sums)} days (robust z-score {z:.1f})",
                    {"observed": amount, "currency": currency, "refunds": n,
                     "baseline_median": round(median), "z": round(z, 2), "method": "mad"}))
        return found

    async def _source_window(self, start: datetime, end: datetime) -> dict[str, int]:
        return await case_counts.opened_by_source(self.store, iso_utc(start), iso_utc(end))

    async def sources(self) -> list[Anomaly]:
        current = await self._source_window(self.since, self.now)
        history = [await self._source_window(a, b) for a, b in self._baseline_windows()]
        spikes = poisson_spikes(
            current, lambda source: statistics.fmean(h.get(source, 0) for h in history),
            floor=self.c.min_rate, p_below=self.c.source_p, at_least=self.c.source_min)
        return [Anomaly(
            SOURCE_SPIKE, f"{SOURCE_SPIKE}:{s.subject}:{self.hour_label}", True,
            f"{s.observed} new refund cases from {s.subject} in the last hour; this hour "
            f"of the day averaged {s.mean:.1f} from it over the last {len(history)} days "
            f"(Poisson tail probability {s.p:.1e})",
            {"source": s.subject, "observed": s.observed, "baseline_mean": round(s.mean, 3),
             "p": s.p, "method": "poisson"}) for s in spikes]

    async def failures(self) -> list[Anomaly]:
        rows = await ledger.last_called(self.store, self.resumed_at or "", self.c.failure_run)
        if len(rows) < self.c.failure_run or any(
                r["status"] not in (ExecutionStatus.FAILED, ExecutionStatus.REJECTED)
                for r in rows):
            return []
        reasons = sorted({str(r["failure_reason"] or "no reason given") for r in rows})
        first = min(int(r["id"]) for r in rows)
        return [Anomaly(
            STRIPE_FAILURES, f"{STRIPE_FAILURES}:{first}", True,
            f"the last {len(rows)} refunds sent to Stripe all failed ({'; '.join(reasons)})",
            {"in_a_row": len(rows), "reasons": reasons})]

    async def repeaters(self) -> list[Anomaly]:
        since = self.now - timedelta(days=self.c.repeat_days)
        found = await case_counts.repeat_customers(self.store, iso_utc(since),
                                                   REFUNDED_STATUSES, self.c.repeat_min)
        return [Anomaly(
            REPEAT_REFUNDER, f"{REPEAT_REFUNDER}:{customer}:{self.day_label}", False,
            f"one customer (id {customer[:8]}) had {n} refunds in the "
            f"last {self.c.repeat_days} days; their new cases always go to a person",
            {"customer": customer, "refunds": n, "days": self.c.repeat_days})
            for customer, n in found]

    async def _sku_counts(self, start: datetime, end: datetime) -> dict[str, int]:
        return await case_counts.cancelled_skus(self.store, iso_utc(start), iso_utc(end))

    async def skus(self) -> list[Anomaly]:
        day = timedelta(days=1)
        current = await self._sku_counts(self.now - day, self.now)
        if not current:
            return []
        days = self.c.baseline_days
        past = await self._sku_counts(self.now - day * (days + 1), self.now - day)
        spikes = poisson_spikes(
            current, lambda sku: past.get(sku, 0) / days,
            floor=self.c.sku_min_rate, p_below=self.c.sku_p, at_least=self.c.sku_min)
        found = []
        for s in spikes:
            numbers = {"sku": s.subject, "observed": s.observed,
                       "baseline_per_day": round(s.mean, 3), "p": s.p, "method": "poisson"}
            offer = await self._departure(s.subject, s.observed)
            if offer:
                numbers["departure"] = offer
            found.append(Anomaly(
                SKU_SPIKE, f"{SKU_SPIKE}:{s.subject}:{self.day_label}", False,
                f"{s.observed} cancellations of {s.subject} in the last 24 hours against "
                f"{s.mean:.1f} a day over the {days} days before (often weather; "
                "automation carries on)" + (
                    f"; {offer['cases']} of them for the departure at {offer['starts_at']}: "
                    f"cancel the rest with `{offer['command']}`" if offer else ""),
                numbers))
        return found

    async def _departure(self, sku: str, observed: int) -> dict[str, Any] | None:
        """The one departure most of a spike's cancellations are for (at least half of them),
        offered as the departure card's command; None when they are spread out."""
        busiest = await case_counts.busiest_departure(
            self.store, sku, iso_utc(self.now - timedelta(days=1)), iso_utc(self.now))
        if busiest is None or busiest[1] * 2 < observed:
            return None
        starts = _start_of(busiest[0])
        if starts is None:
            return None
        when = starts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M+00:00")
        return {"starts_at": when, "cases": busiest[1],
                "command": f"/refund departure {sku} {when}"}


def _start_of(value: str) -> datetime | None:
    """A snapshot line's start (a unix timestamp, or ISO 8601) as an aware time."""
    text = value.strip()
    try:
        if text.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
