"""Intake first: the worker starts a case only when the event loop can spare the time.

The worker and the webhooks share one event loop. A webhook that arrives while the loop is
running the worker's cases waits behind every callback that is ready, so a busy worker shows
up as the webhooks' latency (and, since a worker's transaction holds SQLite's write lock across
its trips back to the loop, as the intake writer's too). The guard keeps that wait short
without starving the worker:

- the HTTP layer tells it when a webhook begins and ends (`intake_began`/`intake_ended`);
  intake is *busy* while one is in flight or one ended less than `quiet_after` seconds ago;
- the worker enters `turn()` before it applies a case. While intake is quiet it enters at
  once, however many cases run: a worker alone is never held back. While intake is busy a
  case enters only when fewer than `busy_cases` are running and the loop's lag (how late a
  timer fires: how long a ready callback waits) was under `max_lag` at the last look; the
  ones waiting are let in one at a time, a look every `interval`, the oldest first.

So with webhooks arriving the worker keeps going at the pace the loop allows (its cases in
flight are never paused, only the next one's start), and it is back to full concurrency
`quiet_after` seconds after the last webhook.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

MAX_LAG = 0.002        # seconds a timer may fire late for a case to start while intake is busy
QUIET_AFTER = 0.05     # seconds after the last webhook that intake counts as quiet
BUSY_CASES = 2         # cases running at once while intake is busy
INTERVAL = 0.002       # seconds between looks at the loop while cases wait


class LoopGuard:
    def __init__(self, *, max_lag: float = MAX_LAG, quiet_after: float = QUIET_AFTER,
                 busy_cases: int = BUSY_CASES, interval: float = INTERVAL) -> None:
        if busy_cases < 1:
            raise ValueError("while intake is busy at least one case must be able to run")
        self.max_lag = max_lag
        self.quiet_after = quiet_after
        self.busy_cases = busy_cases
        self.interval = interval
        self.running = 0          # cases inside `turn()`
        self.held = 0             # cases that waited for their turn (tests, benchmarks)
        self._in_flight = 0       # webhooks being answered
        self.last_intake = float("-inf")   # monotonic time the last webhook ended
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._ticker: asyncio.Task[None] | None = None

    # --- the HTTP side ---------------------------------------------------------------------

    def intake_began(self) -> None:
        self._in_flight += 1

    def intake_ended(self) -> None:
        self._in_flight -= 1
        self.last_intake = time.monotonic()

    def intake_busy(self) -> bool:
        return self._in_flight > 0 or time.monotonic() - self.last_intake < self.quiet_after

    # --- the worker side -------------------------------------------------------------------

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold a case until the loop can spare the time for it (at once while intake is quiet),
        then count it running for as long as the block lasts."""
        if self._waiting or self.intake_busy():   # behind those already waiting, in order
            await self._wait()
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.append(future)
        self.held += 1
        if self._ticker is None or self._ticker.done():
            self._ticker = loop.create_task(self._tick(), name="loop-guard")
        try:
            await future
        except asyncio.CancelledError:   # a stop: its place goes to the next one
            if future in self._waiting:
                self._waiting.remove(future)
            raise

    async def _tick(self) -> None:
        """Let the waiting cases in, one per look, while the loop can spare the time."""
        loop = asyncio.get_running_loop()
        while self._waiting:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            lag = loop.time() - due
            if not self._waiting:
                return
            if not self.intake_busy():
                while self._waiting:           # intake quiet: every waiting case goes
                    self._release()
            elif lag < self.max_lag and self.running < self.busy_cases:
                self._release()

    def _release(self) -> None:
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)
                return
