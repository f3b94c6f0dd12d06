"""The background worker: applies stored webhook events, several at once, and runs tracked
tasks.

Events are applied concurrently, at most `concurrency` at a time (`WORKER_CONCURRENCY`), with
the events of one booking strictly one after the other in arrival order: each event names what
it may touch (`routing.ordering_keys`: the booking's code and id, the Stripe payment, charge,
refund or dispute), and waits until every event taken before it that shares one of those names
has ended (`Turns`). Events of different bookings overlap their Checkfront and Stripe calls;
what they share in the store is safe to share because every state change is a compare-and-set
inside a `BEGIN IMMEDIATE` transaction (no network call is made inside one) and the
over-refund guard reads the ledger inside the transaction that plans the refund. At most
`WINDOW_PER_SLOT` events per slot are taken from the queue ahead of being run, so a long
backlog stays in the queue (and in the store), not in memory as tasks.

Nothing is fire-and-forget: every task is kept until it ends, its failure is logged, and
`drain()` waits for all of it (tests use that). `stop(grace)` is the bounded shutdown: it takes
no more queued events (nor starts any taken but still waiting for its turn), lets the ones in
hand and the tracked tasks finish for at most `grace` seconds, then cancels them; every event
not yet applied is still stored unprocessed, and the next start re-queues it.

Events an outage kept for a retry are taken up by a loop of their own (`retry_events`, every
`RETRY_POLL_SECONDS` and at start-up), apart from the queue: a retry never waits behind new
events of other bookings, nor they behind it (it takes its turn with its own booking's events
and a slot like any other). It runs here rather than in the scheduler because it must run
wherever webhooks are received, scheduler or not, and its times are stored on the events, so
a restart loses none.

Several instances on one store (`services.store.leases`): every queued event is leased to one
instance, the one that stored it (the intake writes the claim with the row) or the one that
claimed it here. The worker renews the leases of the events it holds every third of the lease
(`_lease_loop`) and, in the same loop, claims the queued events no live instance holds (an
instance killed -9 renews nothing: its events are free once their lease has passed, at once
when it was a process of this host that is gone) and queues them; at start-up it claims its
own id's too, and on stopping it gives back what it did not apply, for another instance to
take at once. A case being executed is leased the same way (`execution.lease`), renewed here,
and resumed here once its instance is gone; so is a case approved and not yet executing (its
approval took the lease), run here through `decisions.resume` once its instance is gone. So
two instances never apply the same queued event, nor execute one case, short of one stalling
longer than its lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

from bot.loop_guard import LoopGuard
from services import correlation
from services.deps import Deps
from services.intake.events import (
    StoredEvent,
    booking_of,
    claim_due,
    claim_queued,
    release_queued,
    renew_queued,
)
from services.intake.routing import ordering_keys, process
from services.refunds import decisions
from services.refunds.execution import (
    claim_stale,
    claim_stale_approved,
    execute,
    renew_executing,
    resume_all,
)
from services.refunds.writeback import retry_due
from services.store import leases
from services.store.db import utcnow
from services.telemetry import NOT_PROCESSED

log = logging.getLogger(__name__)

RETRY_POLL_SECONDS = 15.0  # how often events waiting for a retry are looked at
DEFAULT_CONCURRENCY = 8    # events applied at once (WORKER_CONCURRENCY)
WINDOW_PER_SLOT = 8        # events taken from the queue ahead of their turn, per slot


class Turn:
    """One event's place in the order of the names it touches: `wait()` returns once every
    event claimed before it on one of those names has ended; `end()` lets the next ones go."""

    def __init__(self, turns: Turns, keys: frozenset[str], after: list[asyncio.Event]) -> None:
        self._turns = turns
        self.keys = keys
        self._after = after
        self.ended = asyncio.Event()

    async def wait(self) -> None:
        for before in self._after:
            await before.wait()

    def end(self) -> None:
        if not self.ended.is_set():
            self.ended.set()
            self._turns.forget(self)


class Turns:
    """Per-name order of events: a claim waits for the last claim made before it on each of
    its names (which itself waited for the ones before it), so the events of one booking run
    one at a time, in the order they were claimed. A claim only ever waits for earlier claims:
    there is no cycle, so no deadlock. A claim with no name waits for nothing."""

    def __init__(self) -> None:
        self._last: dict[str, Turn] = {}

    def claim(self, keys: frozenset[str]) -> Turn:
        after = [self._last[key].ended for key in sorted(keys) if key in self._last]
        turn = Turn(self, keys, after)
        for key in keys:
            self._last[key] = turn
        return turn

    def forget(self, turn: Turn) -> None:
        for key in turn.keys:
            if self._last.get(key) is turn:
                del self._last[key]

    def __len__(self) -> int:
        """How many names an unended claim holds (0 once every claim has ended)."""
        return len(self._last)


class Worker:
    def __init__(self, svc: Deps, retry_every: float = RETRY_POLL_SECONDS,
                 concurrency: int = DEFAULT_CONCURRENCY) -> None:
        if concurrency < 1:
            raise ValueError("the worker needs a concurrency of at least 1")
        self.svc = svc
        self.concurrency = concurrency
        self._queue: asyncio.Queue[StoredEvent] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._retrier: asyncio.Task[None] | None = None
        self._leaser: asyncio.Task[None] | None = None
        self._held: set[int] = set()   # ids of the events in hand (queued here, not ended)
        self._retry_every = retry_every
        self._retrying = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._window = asyncio.Semaphore(concurrency * WINDOW_PER_SLOT)
        self._turns = Turns()
        self.guard = LoopGuard()   # a case starts when the loop can spare it (intake first)
        self._taken: set[asyncio.Task[str]] = set()     # taken from the queue, not ended
        self._waiting: set[asyncio.Task[str]] = set()   # of those, not applying yet
        self.failures: list[str] = []

    async def start(self) -> None:
        """Resume interrupted executions, re-queue events stored but not processed, consume;
        retry the Checkfront write-backs that are due in the background."""
        await resume_all(self.svc)
        for event in await claim_queued(self.svc.store, utcnow(), mine_too=True):
            self.submit(event)
        self._consumer = asyncio.create_task(self._consume(), name="event-worker")
        self.spawn(lambda: retry_due(self.svc), "checkfront-writebacks")
        self._retrier = asyncio.create_task(self._retry_loop(), name="event-retries")
        self._leaser = asyncio.create_task(self._lease_loop(), name="event-leases")

    def submit(self, event: StoredEvent) -> None:
        self._held.add(event.row_id)
        self._queue.put_nowait(event)

    async def renew_and_claim(self, now: datetime | None = None) -> list[StoredEvent]:
        """Renew the leases of the events in hand and the cases executing (or approved) here,
        then claim and queue the queued events no live instance holds (those of an instance
        gone), resume the cases an instance gone left executing (with their keys) and run the
        ones it left approved; the events newly queued."""
        now = now or utcnow()
        await renew_queued(self.svc.store, now)
        await renew_executing(self.svc.store, now)
        taken = [event for event in await claim_queued(self.svc.store, now)
                 if event.row_id not in self._held]
        for event in taken:
            self.submit(event)
        for case in await claim_stale(self.svc.store, now=now):   # its executor is gone
            self.spawn(partial(execute, self.svc, case.id, actor="worker"),
                       f"resume-case-{case.id}")
        for case in await claim_stale_approved(self.svc.store, now=now):   # approved, then gone
            self.spawn(partial(decisions.resume, self.svc, case, by="worker"),
                       f"resume-case-{case.id}")
        return taken

    async def _lease_loop(self) -> None:
        every = leases.this().lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                await self.renew_and_claim()
            except Exception:
                log.exception("event leases failed")

    @property
    def running(self) -> bool:
        """Whether it takes events from its queue (started, not stopped, not crashed)."""
        return self._consumer is not None and not self._consumer.done()

    @property
    def queued(self) -> int:
        """Events in the queue, not taken yet."""
        return self._queue.qsize()

    @property
    def in_flight(self) -> int:
        """Events being applied now (taken and past their turn)."""
        return len(self._taken) - len(self._waiting)

    def spawn(self, work: Callable[[], Awaitable[Any]], name: str) -> asyncio.Task[Any]:
        """Run `work` in the background, tracked until it ends."""
        task = asyncio.create_task(self._guard(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait until every queued event and tracked task has finished."""
        while True:
            await self._queue.join()
            pending = [t for t in self._tasks if not t.done()]
            if not pending and self._queue.empty():
                return
            await asyncio.gather(*pending, return_exceptions=True)

    async def stop(self, grace: float | None = None) -> None:
        """Stop; with `grace`, within that many seconds (without, after `drain()`)."""
        if grace is None:
            await self.drain()
        else:
            await self._stop_taking()
            try:
                if grace > 0:
                    await asyncio.wait_for(self._finish_in_hand(), timeout=grace)
            except TimeoutError:
                log.warning("stopping: work still running after %.1f s is cancelled; events "
                            "not yet applied stay stored for the next start", grace)
        if grace is None:
            async with self._retrying:   # without a grace, a retry under way finishes first
                await self._cancel_all()
        else:   # with one, a retry still running is cancelled: its claim lapses, it runs later
            await self._cancel_all()
        try:   # what it did not apply is another instance's to take now
            await release_queued(self.svc.store)
        except Exception:
            log.warning("stopping: the leases of events not applied were not given back; "
                        "they pass in %s", leases.this().lease)
        self._held.clear()

    async def _stop_taking(self) -> None:
        """Take nothing more from the queue, and start none of the events taken but still
        waiting for their turn: all of them stay stored, unprocessed, for the next start."""
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        self._forget_queued()
        waiting = list(self._waiting)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)

    async def _cancel_all(self) -> None:
        leftover = [t for t in self._tasks | self._taken if not t.done()]
        leftover += [task for task in (self._retrier, self._consumer, self._leaser)
                     if task is not None]
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)

    def _forget_queued(self) -> None:
        """Empty the in-memory queue: those events are stored, unprocessed, for the next start."""
        while True:
            try:
                self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            self._queue.task_done()

    async def _finish_in_hand(self) -> None:
        """Wait for the events being applied and the tracked tasks, taking no queued event."""
        while True:
            self._forget_queued()
            await self._queue.join()
            pending = [t for t in self._tasks if not t.done()]
            if not pending and self._queue.empty():
                return
            if pending:
                await asyncio.wait(pending)

    async def retry_events(self, now: datetime | None = None) -> list[str]:
        """Process the events whose retry is due at `now`, each in its booking's turn and in a
        slot (several at once); their outcomes, in the order they were due."""
        async with self._retrying:
            due = await claim_due(self.svc.store, now or utcnow())
            return list(await asyncio.gather(*(self._in_turn(event, now) for event in due)))

    async def _retry_loop(self) -> None:
        while True:
            try:
                await self.retry_events()
            except Exception:
                log.exception("event retries failed")
            await asyncio.sleep(self._retry_every)

    async def _consume(self) -> None:
        """Take events in arrival order, each with its turn claimed at once (so that the order
        of one booking's events is the queue's), and run each in a task of its own."""
        while True:
            await self._window.acquire()
            try:
                event = await self._queue.get()
            except BaseException:
                self._window.release()
                raise
            task = self._in_turn(event, None)
            self._taken.add(task)
            self._waiting.add(task)
            task.add_done_callback(self._taken_ended)

    def _taken_ended(self, task: asyncio.Task[str]) -> None:
        self._taken.discard(task)
        self._waiting.discard(task)
        self._window.release()
        self._queue.task_done()

    def _in_turn(self, event: StoredEvent, now: datetime | None) -> asyncio.Task[str]:
        """A task that waits for the events claimed before it on its names, then for a slot,
        and applies it. Its turn is claimed now, and ended when the task ends, however it ends
        (even cancelled before it began)."""
        turn = self._turns.claim(ordering_keys(event))
        task = asyncio.create_task(self._when_its_turn(event, turn, now),
                                   name=f"event-{event.row_id}")
        task.add_done_callback(lambda _: (turn.end(), self._held.discard(event.row_id)))
        return task

    async def _when_its_turn(self, event: StoredEvent, turn: Turn, now: datetime | None) -> str:
        await turn.wait()
        async with self._slots, self.guard.turn():
            task = asyncio.current_task()
            if task is not None:   # applying from here on: a stop lets it finish
                self._waiting.discard(task)
            return await self._apply(event, now)

    async def _apply(self, event: StoredEvent, now: datetime | None = None) -> str:
        # this event's task: its lines, audit rows and calls carry the intake's correlation id
        correlation.begin(correlation.for_event(event.row_id), booking_code=booking_of(event))
        try:
            outcome = await process(self.svc, event, now=now)
        except Exception:  # the store itself failed: the event stays as it was, for later
            log.exception("event %s/%s %s failed", event.source, event.kind, event.row_id)
            self.failures.append(f"event {event.row_id}")
            self.svc.telemetry.event_done(event.source, NOT_PROCESSED)
            return NOT_PROCESSED
        log.info("event %s/%s %s: %s", event.source, event.kind, event.row_id, outcome)
        self.svc.telemetry.event_done(event.source, outcome)
        return outcome

    async def _guard(self, work: Callable[[], Awaitable[Any]], name: str) -> Any:
        try:
            return await work()
        except Exception:
            log.exception("background task %s failed", name)
            self.failures.append(name)
            return None
