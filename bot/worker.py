"""The background worker: applies stored webhook events in order and runs tracked tasks.

Nothing is fire-and-forget: every task is kept until it ends, its failure is logged, and
`drain()` waits for all of it (tests and shutdown use that).

Events an outage kept for a retry are taken up by a loop of their own (`retry_events`, every
`RETRY_POLL_SECONDS` and at start-up), apart from the queue: a retry never waits behind new
events, nor they behind it. It runs here rather than in the scheduler because it must run
wherever webhooks are received, scheduler or not, and its times are stored on the events, so
a restart loses none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from services.deps import Deps
from services.intake.events import StoredEvent, claim_due, unprocessed
from services.intake.routing import process
from services.refunds.execution import resume_all
from services.refunds.writeback import retry_due
from services.store.db import utcnow

log = logging.getLogger(__name__)

RETRY_POLL_SECONDS = 15.0  # how often events waiting for a retry are looked at


class Worker:
    def __init__(self, svc: Deps, retry_every: float = RETRY_POLL_SECONDS) -> None:
        self.svc = svc
        self._queue: asyncio.Queue[StoredEvent] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._retrier: asyncio.Task[None] | None = None
        self._retry_every = retry_every
        self._retrying = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failures: list[str] = []

    async def start(self) -> None:
        """Resume interrupted executions, re-queue events stored but not processed, consume;
        retry the Checkfront write-backs that are due in the background."""
        await resume_all(self.svc)
        for event in await unprocessed(self.svc.store):
            self._queue.put_nowait(event)
        self._consumer = asyncio.create_task(self._consume(), name="event-worker")
        self.spawn(lambda: retry_due(self.svc), "checkfront-writebacks")
        self._retrier = asyncio.create_task(self._retry_loop(), name="event-retries")

    def submit(self, event: StoredEvent) -> None:
        self._queue.put_nowait(event)

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

    async def stop(self) -> None:
        await self.drain()
        async with self._retrying:   # a retry under way finishes first
            for task in (self._retrier, self._consumer):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)

    async def retry_events(self, now: datetime | None = None) -> list[str]:
        """Process, one after the other, the events whose retry is due at `now`; their
        outcomes."""
        async with self._retrying:
            return [await self._apply(event, now)
                    for event in await claim_due(self.svc.store, now or utcnow())]

    async def _retry_loop(self) -> None:
        while True:
            try:
                await self.retry_events()
            except Exception:
                log.exception("event retries failed")
            await asyncio.sleep(self._retry_every)

    async def _consume(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._apply(event)
            finally:
                self._queue.task_done()

    async def _apply(self, event: StoredEvent, now: datetime | None = None) -> str:
        try:
            outcome = await process(self.svc, event, now=now)
        except Exception:  # the store itself failed: the event stays as it was, for later
            log.exception("event %s/%s %s failed", event.source, event.kind, event.row_id)
            self.failures.append(f"event {event.row_id}")
            return "not processed"
        log.info("event %s/%s %s: %s", event.source, event.kind, event.row_id, outcome)
        return outcome

    async def _guard(self, work: Callable[[], Awaitable[Any]], name: str) -> Any:
        try:
            return await work()
        except Exception:
            log.exception("background task %s failed", name)
            self.failures.append(name)
            return None
