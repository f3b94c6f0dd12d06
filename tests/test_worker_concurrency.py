"""The worker runs events at once, up to its bound, and the events of one booking (or one
Stripe object) one after the other in arrival order; a stop starts none still waiting.

`process` is replaced by a recorder that holds each event until the test lets it go, so what
runs at once is observed, not timed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import bot.worker
from bot.cli.world import EXAMPLE_POLICIES
from bot.worker import Turns, Worker
from services.config import EventRetries
from services.deps import Deps
from services.intake import events
from services.intake.events import StoredEvent
from services.intake.routing import ordering_keys
from services.quoting.policy import load_policies
from services.store.db import Store, now_iso, utcnow


@dataclass
class Recorder:
    """Stands in for `routing.process`: notes each event as it starts and ends, and holds it
    until `release` (all of them, or one booking's)."""

    running: set[str] = field(default_factory=set)
    started: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    most_at_once: int = 0
    overlaps: list[tuple[str, str]] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    moved: asyncio.Condition = field(default_factory=asyncio.Condition)

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def process(self, svc: Deps, event: StoredEvent, *, now: datetime | None = None
                      ) -> str:
        name = event.event_id
        booking = name.split("/")[0]
        self.overlaps += [(other, name) for other in self.running
                          if other.split("/")[0] == booking]
        self.running.add(name)
        self.started.append(name)
        self.most_at_once = max(self.most_at_once, len(self.running))
        async with self.moved:
            self.moved.notify_all()
        try:
            await self.gate(name).wait()
            return f"done {name}"
        finally:
            self.running.discard(name)
            self.ended.append(name)

    def release(self, *names: str) -> None:
        for name in names:
            self.gate(name).set()

    async def started_count(self, count: int) -> None:
        async with asyncio.timeout(5), self.moved:
            await self.moved.wait_for(lambda: len(self.started) >= count)


def booking_event(row: int, name: str, **booking: Any) -> StoredEvent:
    """A Checkfront booking notice; `name` is "<booking>/<n>" (the recorder reads it)."""
    return StoredEvent(row, "checkfront", name, "booking", now_iso(),
                       {"booking": {"status": "STOP", **booking}})


def stripe_event(row: int, name: str, kind: str, obj: dict[str, Any]) -> StoredEvent:
    return StoredEvent(row, "stripe", name, kind, now_iso(), {"data": {"object": obj}})


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Deps]:
    store = await Store(tmp_path / "worker.db").open()
    try:
        yield Deps(store=store, book=load_policies(EXAMPLE_POLICIES))
    finally:
        await store.close()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    found = Recorder()
    monkeypatch.setattr(bot.worker, "process", found.process)
    return found


async def started(svc: Deps, concurrency: int) -> Worker:
    worker = Worker(svc, retry_every=3600, concurrency=concurrency)
    await worker.start()
    return worker


def test_ordering_keys_name_the_booking_and_the_stripe_objects() -> None:
    by_code = booking_event(1, "a", code="kmvq-060314", **{"@attributes": {"booking_id": "157"}})
    by_id = booking_event(2, "b", **{"@attributes": {"booking_id": 157}})
    assert ordering_keys(by_code) == {"booking:KMVQ-060314", "booking:157"}
    assert ordering_keys(by_id) == {"booking:157"}
    payment = StoredEvent(3, "checkfront", "c", "transaction", now_iso(),
                          {"transaction": {"booking_id": "KMVQ-060314", "transaction_id": "t"}})
    assert ordering_keys(payment) == {"booking:KMVQ-060314"}

    ours = stripe_event(4, "d", "refund.updated", {
        "id": "re_1", "charge": "ch_1", "payment_intent": "pi_1",
        "metadata": {"case_id": "7", "booking_code": "KMVQ-060314", "booking_id": "157"}})
    assert ordering_keys(ours) == {"stripe:re_1", "stripe:ch_1", "stripe:pi_1",
                                   "booking:KMVQ-060314", "booking:157"}
    listed = stripe_event(5, "e", "charge.refunded", {
        "id": "ch_1", "payment_intent": {"id": "pi_1"},
        "refunds": {"data": [{"id": "re_2", "metadata": {"booking_code": "X-1"}}]}})
    assert ordering_keys(listed) == {"stripe:ch_1", "stripe:pi_1", "stripe:re_2",
                                     "booking:X-1"}
    dispute = stripe_event(6, "f", "charge.dispute.created",
                           {"id": "dp_1", "charge": "ch_1", "payment_intent": None})
    assert ordering_keys(dispute) == {"stripe:dp_1", "stripe:ch_1"}
    assert ordering_keys(stripe_event(7, "g", "ping", {})) == frozenset()
    assert ordering_keys(StoredEvent(8, "checkfront", "h", "unknown", now_iso(),
                                     {"booking": "not a body"})) == frozenset()


async def test_a_claim_waits_only_for_earlier_claims_on_its_names() -> None:
    turns = Turns()
    first = turns.claim(frozenset({"booking:A"}))
    other = turns.claim(frozenset({"booking:B"}))
    both = turns.claim(frozenset({"booking:A", "booking:B"}))
    free = turns.claim(frozenset())
    await asyncio.wait_for(other.wait(), 1)      # nothing before it on B
    await asyncio.wait_for(free.wait(), 1)
    waiting = asyncio.create_task(both.wait())
    await asyncio.sleep(0.01)
    other.end()
    await asyncio.sleep(0.01)
    assert not waiting.done()                    # A's first claim has not ended
    first.end()
    await asyncio.wait_for(waiting, 1)
    both.end()
    assert len(turns) == 0                       # nothing left held


async def test_events_of_different_bookings_run_at_once_up_to_the_bound(
    svc: Deps, recorder: Recorder,
) -> None:
    worker = await started(svc, concurrency=3)
    try:
        for n in range(6):
            worker.submit(booking_event(n + 1, f"BK-{n}/1", code=f"BK-{n}"))
        await recorder.started_count(3)
        await asyncio.sleep(0.05)
        assert recorder.started == ["BK-0/1", "BK-1/1", "BK-2/1"]   # the bound holds
        recorder.release("BK-1/1")
        await recorder.started_count(4)
        recorder.release(*(f"BK-{n}/1" for n in range(6)))
        await asyncio.wait_for(worker.drain(), 5)
        assert sorted(recorder.ended) == sorted(f"BK-{n}/1" for n in range(6))
        assert recorder.most_at_once == 3
    finally:
        await worker.stop(grace=0)


async def test_events_of_one_booking_run_one_at_a_time_in_arrival_order(
    svc: Deps, recorder: Recorder,
) -> None:
    worker = await started(svc, concurrency=4)
    try:
        attributes = {"@attributes": {"booking_id": "157"}}
        worker.submit(booking_event(1, "A/1", code="A-157", **attributes))
        worker.submit(booking_event(2, "B/1", code="B-1"))
        worker.submit(booking_event(3, "A/2", **attributes))      # named by its id only
        worker.submit(stripe_event(4, "A/3", "refund.created", {   # our refund of booking A
            "id": "re_1", "payment_intent": "pi_1",
            "metadata": {"booking_code": "a-157", "booking_id": "157"}}))
        worker.submit(stripe_event(5, "A/4", "refund.updated", {"id": "re_1"}))
        worker.submit(booking_event(6, "C/1", code="C-1"))
        await recorder.started_count(3)
        await asyncio.sleep(0.05)
        assert recorder.started == ["A/1", "B/1", "C/1"]   # A's others wait for A/1
        for step in ("A/1", "A/2", "A/3"):
            recorder.release(step)
            await recorder.started_count(len(recorder.started) + 1)
        recorder.release("A/4", "B/1", "C/1")
        await asyncio.wait_for(worker.drain(), 5)
        assert [n for n in recorder.started if n.startswith("A/")] == \
            ["A/1", "A/2", "A/3", "A/4"]
        assert recorder.overlaps == []
    finally:
        await worker.stop(grace=0)


async def test_a_stop_starts_no_event_still_waiting_for_its_turn(
    svc: Deps, recorder: Recorder,
) -> None:
    worker = await started(svc, concurrency=2)
    for row, name in enumerate(("X/1", "X/2", "Y/1", "Z/1"), start=1):
        worker.submit(booking_event(row, name, code=name.split("/")[0]))
    await recorder.started_count(2)
    assert recorder.started == ["X/1", "Y/1"]   # X/2 waits for X/1; Z/1 for a slot
    stopping = asyncio.create_task(worker.stop(grace=5))
    await asyncio.sleep(0.05)
    recorder.release("X/1")                     # in hand: allowed to finish
    await asyncio.sleep(0.05)
    assert not stopping.done()                  # Y/1 is still in hand
    recorder.release("Y/1")
    await asyncio.wait_for(stopping, 5)
    assert recorder.started == ["X/1", "Y/1"] and sorted(recorder.ended) == ["X/1", "Y/1"]


async def test_a_stop_past_its_grace_cancels_what_is_in_hand(
    svc: Deps, recorder: Recorder,
) -> None:
    worker = await started(svc, concurrency=2)
    for row, name in enumerate(("X/1", "X/2", "Y/1"), start=1):
        worker.submit(booking_event(row, name, code=name.split("/")[0]))
    await recorder.started_count(2)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(worker.stop(grace=0.2), 5)
    assert loop.time() - began < 1.0
    assert recorder.started == ["X/1", "Y/1"] and recorder.running == set()


async def test_a_due_retry_takes_its_turn_with_its_bookings_queued_events(
    svc: Deps, recorder: Recorder,
) -> None:
    stored = await events.store_event(svc.store, source="checkfront", event_id="R/1",
                                      kind="booking", payload={"booking": {"code": "R-1"}})
    assert stored is not None
    retries = EventRetries(timedelta(seconds=1), timedelta(seconds=1), timedelta(hours=1))
    await events.defer(svc.store, stored, "Checkfront was down", utcnow(), retries)
    worker = await started(svc, concurrency=4)
    try:
        worker.submit(booking_event(100, "R/2", code="r-1"))    # the same booking, queued
        worker.submit(booking_event(101, "S/1", code="S-1"))
        await recorder.started_count(2)
        retrying = asyncio.create_task(worker.retry_events(utcnow() + timedelta(minutes=1)))
        await asyncio.sleep(0.05)
        assert recorder.started == ["R/2", "S/1"]    # the retry waits for R/2, not for S/1
        recorder.release("R/2")
        await recorder.started_count(3)
        recorder.release("R/1", "S/1")
        assert await asyncio.wait_for(retrying, 5) == ["done R/1"]
        assert recorder.overlaps == []
    finally:
        await worker.stop(grace=0)
