"""The collectors `/metrics` reads at scrape time (`bot.metrics`): what is kept in memory
anyway (`MemoryCollector`: rejected requests, the worker's queue, `/readyz`'s checks) and the
store on its read-only connection (`StoreCollector`: gauges by state, and counters read off
the audit chain's rows added since the bot started). Every store query is an index look-up or
a primary-key range.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services import outbox
from services.finance.anomaly import DETECTOR
from services.intake.events import count_failed, count_retrying, count_unprocessed
from services.intake.rejections import Rejections
from services.refunds import cases
from services.refunds.automation import automation_state
from services.refunds.models import Status
from services.store.db import Store, utcnow
from services.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

PREFIX = "refund_bot"
MADE = ("succeeded", "pending", "requires_action")  # a refund Stripe took (failed ones: not)


class MemoryCollector(Collector):
    """What the bot keeps in memory anyway, read at scrape time."""

    def __init__(self, rejections: Rejections) -> None:
        self.rejections = rejections
        self.worker: Any = None
        self.readiness: Callable[[], Awaitable[dict[str, str]]] | None = None
        self._ready: dict[str, str] = {}

    async def refresh(self) -> None:
        if self.readiness is not None:
            self._ready = await self.readiness()

    def collect(self) -> Iterator[Metric]:
        if self.readiness is not None:
            ready = GaugeMetricFamily(f"{PREFIX}_ready", "1 when the check passes (or is off), "
                                      "as /readyz answers it", labels=["check"])
            for check, answer in self._ready.items():
                ready.add_metric([check], 1 if answer in ("ok", "off") else 0)
            yield ready
        rejected = CounterMetricFamily(f"{PREFIX}_webhooks_rejected", "Requests refused "
                                       "(bad signature, unauthorized, too large, malformed, "
                                       "too deep), by source and reason",
                                       labels=["source", "reason"])
        for (source, reason), n in sorted(self.rejections.counts.items()):
            rejected.add_metric([source, reason.replace(" ", "_")], n)
        yield rejected
        if self.worker is None:
            return
        yield GaugeMetricFamily(f"{PREFIX}_worker_queue_depth", "Events queued for the worker, "
                                "not yet taken", value=self.worker.queued)
        yield GaugeMetricFamily(f"{PREFIX}_worker_in_flight", "Events being applied now",
                                value=self.worker.in_flight)
        yield GaugeMetricFamily(f"{PREFIX}_worker_concurrency", "Events applied at most at "
                                "once (WORKER_CONCURRENCY)", value=self.worker.concurrency)


def _log_syncer(store: Store | None) -> Any:
    """SQLite's log syncer (`services.store.log_sync`), None without one (PostgreSQL, an
    in-memory store, a store closed, a syncer given up)."""
    try:
        writer = store.writer if store is not None else None
    except StoreUnavailable:   # closed
        return None
    return getattr(writer, "syncer", None)


@dataclass
class _Snapshot:
    up: bool = False
    cases: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    outbox_unsent: int = 0
    outbox_oldest_age: float = 0.0
    paused: bool = False
    breaker: bool = False
    discrepancies: int = 0


class StoreCollector(Collector):
    """Gauges read from the store at scrape time, and counters of the audit chain's new rows.

    `refresh()` (async) reads; `collect()` (what prometheus-client calls, synchronously) yields
    what the last refresh read. Counters count rows appended after `attach` (the bot's start),
    so they start at 0 like any other counter and a restart reads as a counter reset.
    """

    def __init__(self) -> None:
        self.store: Store | None = None
        self._after = 0   # the last audit row counted
        self._lock = asyncio.Lock()
        self._now = _Snapshot()
        self.transitions: Tally[tuple[str, str]] = Tally()
        self.opened = 0
        self.refunds: Tally[str] = Tally()
        self.refunded: Tally[str] = Tally()

    async def attach(self, store: Store) -> None:
        self.store = store
        self._after = await _last_audit_id(store)

    async def refresh(self) -> None:
        async with self._lock:
            try:
                self._now = await self._read()
            except Exception as exc:  # the scrape says "store down", it does not fail
                log.warning("metrics: the store could not be read: %s", exc.__class__.__name__)
                self._now = _Snapshot(up=False)

    async def _read(self) -> _Snapshot:
        store = self.store
        if store is None:
            return _Snapshot(up=False)
        states = list(Status)
        counts = await asyncio.gather(*(cases.count(store, s) for s in states))
        waiting = await asyncio.gather(count_unprocessed(store), count_retrying(store),
                                       count_failed(store))
        unsent, oldest = await _outbox_state(store)
        automation = await automation_state(store)
        problems = await store.read_one(
            "SELECT COUNT(*) FROM recon_discrepancies WHERE resolved_at IS NULL AND error = 1")
        await self._count_new_audit_rows(store)
        return _Snapshot(
            up=True, cases={s.value: n for s, n in zip(states, counts, strict=True)},
            events=dict(zip(("queued", "retrying", "failed"), waiting, strict=True)),
            outbox_unsent=unsent, outbox_oldest_age=oldest, paused=automation.paused,
            breaker=automation.paused and automation.by == DETECTOR,
            discrepancies=int(problems[0]) if problems else 0)

    async def _count_new_audit_rows(self, store: Store) -> None:
        last = await _last_audit_id(store)
        if last <= self._after:
            return
        span = (self._after, last)
        # the rows' JSON detail is read here, not in SQL: the same statements on both engines
        rows = await store.read_all(
            "SELECT action, detail FROM audit_log WHERE id > ? AND id <= ? "
            "AND (action LIKE 'case.%' OR action = 'stripe.refund')", span)
        made: set[str] = set()
        for row in rows:
            detail = json.loads(row["detail"] or "{}")
            action = str(row["action"])
            if action == "stripe.refund":
                if detail.get("status") in MADE and detail.get("refund_id"):
                    made.add(str(detail["refund_id"]))
            elif action == "case.opened":
                self.opened += 1
            else:
                source = detail.get("from")
                self.transitions[("" if source is None else str(source), action[5:])] += 1
        ids = sorted(made)
        for n in range(0, len(ids), 500):
            chunk = ids[n:n + 500]
            marks = ", ".join("?" for _ in chunk)
            refunds = await store.read_all(
                "SELECT currency, COUNT(*) AS n, SUM(amount) AS minor FROM executions "
                f"WHERE stripe_refund_id IN ({marks}) GROUP BY currency", chunk)
            for row in refunds:
                self.refunds[row["currency"]] += int(row["n"])
                self.refunded[row["currency"]] += int(row["minor"] or 0)
        self._after = last

    def collect(self) -> Iterator[Metric]:
        now = self._now
        yield GaugeMetricFamily(f"{PREFIX}_store_up", "1 when the last scrape could read the "
                                "store", value=1 if now.up else 0)
        yield _counter("case_transitions", "Case state changes since the bot started",
                       ["from", "to"], self.transitions.items())
        yield CounterMetricFamily(f"{PREFIX}_cases_opened", "Refund cases opened since the bot "
                                  "started", value=self.opened)
        yield _counter("refunds", "Refunds Stripe took since the bot started, by currency",
                       ["currency"], [((k,), v) for k, v in self.refunds.items()])
        yield _counter("refunded_minor_units", "Amount of those refunds in minor units of "
                       "the currency (cents for USD)", ["currency"],
                       [((k,), v) for k, v in self.refunded.items()])
        syncer = _log_syncer(self.store)
        if syncer is not None:
            yield GaugeMetricFamily(f"{PREFIX}_intake_log_sync_longest_seconds", "The longest "
                                    "sync of the store's log a webhook's answer waited for, "
                                    "since the bot started", value=syncer.longest)
        if not now.up:
            return
        states = GaugeMetricFamily(f"{PREFIX}_cases", "Refund cases by state",
                                   labels=["state"])
        for state, n in now.cases.items():
            states.add_metric([state], n)
        yield states
        waiting = GaugeMetricFamily(f"{PREFIX}_events_waiting", "Stored webhook events not "
                                    "processed: queued, waiting for a retry, failed (waiting "
                                    "for a person)", labels=["state"])
        for state, n in now.events.items():
            waiting.add_metric([state], n)
        yield waiting
        yield GaugeMetricFamily(f"{PREFIX}_outbox_unsent", "Slack posts not sent yet",
                                value=now.outbox_unsent)
        yield GaugeMetricFamily(f"{PREFIX}_outbox_oldest_unsent_age_seconds", "Age of the "
                                "oldest Slack post not sent yet (0 when none waits)",
                                value=now.outbox_oldest_age)
        yield GaugeMetricFamily(f"{PREFIX}_automation_paused", "1 while automatic refunds "
                                "are paused (by a person or the anomaly breaker)",
                                value=1 if now.paused else 0)
        yield GaugeMetricFamily(f"{PREFIX}_breaker_open", "1 while the anomaly detector's "
                                "circuit breaker holds automation paused",
                                value=1 if now.breaker else 0)
        yield GaugeMetricFamily(f"{PREFIX}_reconciliation_discrepancies_open", "Reconciliation "
                                "problems not resolved", value=now.discrepancies)


def _counter(name: str, doc: str, labels: list[str],
             values: Iterable[tuple[tuple[str, ...], int]]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
    for key, n in sorted(values):
        family.add_metric(list(key), n)
    return family


async def _last_audit_id(store: Store) -> int:
    row = await store.read_one("SELECT MAX(id) FROM audit_log")
    return int(row[0] or 0) if row else 0


async def _outbox_state(store: Store) -> tuple[int, float]:
    """How many posts wait, and how long the oldest of them has (seconds)."""
    unsent = await outbox.backlog(store)
    if not unsent:
        return 0, 0.0
    row = await store.read_one(
        "SELECT MIN(created_at) AS at FROM slack_outbox WHERE sent_at IS NULL")
    if row is None or row["at"] is None:
        return unsent, 0.0
    created = datetime.fromisoformat(row["at"])
    return unsent, max(0.0, (utcnow() - created).total_seconds())
