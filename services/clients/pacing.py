"""Client-side pacing for an API with a rate limit: one schedule shared by every caller.

`Pacer` hands out send times at `rate` a second with at most `burst` at once (GCRA, the
virtual-scheduling form of a token bucket): each `acquire()` reserves the next free slot
synchronously and sleeps until it, so concurrent callers are served in arrival order and
spread over time instead of arriving together.

When the server refuses with a rate-limit answer anyway (other clients share the account, or
the configured rate is above the real one), `back_off(delay)` pauses *every* caller until
`delay` has passed (the pause of several refusals is the latest of them, never their sum) and,
once per pause, lowers the rate to what the server was seen to take: the calls that succeeded
(`succeeded()`) in the last `WINDOW` seconds (or since the first), a little under, but never
below half the rate refused. From there the rate probes upwards slowly (`PROBE` of it a
second), up to the configured rate: it settles near what the server takes, with a refusal now
and then instead of a storm of retries. Nothing here sleeps while holding anything.

No library is used: aiolimiter's leaky bucket (the usual choice) can neither push the callers
already waiting behind a pause nor change its rate while they wait.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

WINDOW = 1.0          # seconds of successes that tell the rate the server takes
UNDER = 0.97          # after a refusal: this share of that rate...
DECREASE = 0.5        # ...but at least this share of the rate refused
MIN_SHARE = 0.05      # and never below this share of the configured rate
PROBE = 0.02          # then the rate grows by this share of itself a second


class Pacer:
    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("a pacer needs a rate above 0 per second")
        if burst < 1:
            raise ValueError("a pacer's burst is at least 1")
        self.max_rate = float(rate)
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tat = clock()          # theoretical arrival time of the next request
        self._paused_until = 0.0
        self._successes: deque[float] = deque()
        self._first_success: float | None = None
        self._grown_at = clock()
        self.waited = 0.0            # seconds callers spent waiting, summed (for benchmarks)
        self.back_offs = 0           # refusals reported

    def _reserve(self) -> float:
        """Reserve the next slot; the time it starts (now or later)."""
        now = self._clock()
        interval = 1.0 / self.rate
        start = max(now, self._tat - (self.burst - 1) * interval, self._paused_until)
        self._tat = max(self._tat, start) + interval
        return start

    async def acquire(self) -> None:
        """Wait for a slot. A pause that begins while waiting sends the caller back in line
        (behind the pause) rather than letting it go as soon as its old slot comes."""
        while True:
            start = self._reserve()
            wait = start - self._clock()
            if wait > 0:
                self.waited += wait
                await self._sleep(wait)
            if self._clock() >= self._paused_until:
                return

    def back_off(self, delay: float) -> None:
        """The server refused a call for its rate: pause everyone for `delay`, slow down."""
        self.back_offs += 1
        now = self._clock()
        if now >= self._paused_until:    # the first refusal of this pause lowers the rate
            self._forget_before(now - WINDOW)
            seen = min(WINDOW, now - self._first_success) if self._first_success else 0.0
            taken = len(self._successes) / seen if seen > 0.05 else 0.0
            self.rate = max(self.max_rate * MIN_SHARE,
                            min(self.rate, max(taken * UNDER, self.rate * DECREASE)))
        self._paused_until = max(self._paused_until, now + max(delay, 0.0))
        # after the pause, one at a time at the rate: the burst comes back only with quiet
        tolerance = (self.burst - 1) / self.rate
        self._tat = max(self._tat, self._paused_until + tolerance)
        self._grown_at = self._paused_until

    def succeeded(self) -> None:
        """A call went through: give back some of the rate taken away by refusals."""
        now = self._clock()
        if self._first_success is None:
            self._first_success = now
        self._successes.append(now)
        self._forget_before(now - WINDOW)
        elapsed, self._grown_at = max(0.0, now - self._grown_at), max(now, self._grown_at)
        if self.rate < self.max_rate:
            self.rate = min(self.max_rate, self.rate * (1.0 + PROBE * elapsed))

    def _forget_before(self, moment: float) -> None:
        while self._successes and self._successes[0] < moment:
            self._successes.popleft()
