"""Token buckets for the stand-ins' rate limits: a rate per second and a burst, per key.

A bucket holds at most `burst` tokens and gains `rate` a second; a request takes one. With none
left it is refused, and `take` says how long until the next token: what a `Retry-After` says.
The clock is injectable so that tests can move time instead of sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """`rate` requests a second on average, `burst` of them at once after a quiet spell."""

    rate: float
    burst: float = 1.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError("a rate limit needs a rate above 0 per second")
        if self.burst < 1:
            raise ValueError("a rate limit's burst is at least 1")

    @classmethod
    def per_minute(cls, count: float, burst: float | None = None) -> Limit:
        return cls(count / 60.0, burst if burst is not None else max(1.0, count / 10.0))


class TokenBucket:
    def __init__(self, limit: Limit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._tokens = float(limit.burst)   # a new bucket is full
        self._stamp = clock()

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def take(self) -> float:
        """0.0 when a token was taken; otherwise the seconds until one is there (none taken)."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.limit.rate

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(float(self.limit.burst), self._tokens + elapsed * self.limit.rate)


class Buckets:
    """One bucket per key (a channel, a method), made full on first use; counts what it did."""

    def __init__(self, limit: Limit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._buckets: dict[Hashable, TokenBucket] = {}
        self.allowed = 0
        self.limited = 0

    def take(self, key: Hashable = None) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.limit, self._clock)
        wait = bucket.take()
        if wait:
            self.limited += 1
        else:
            self.allowed += 1
        return wait


def retry_after_seconds(wait: float) -> int:
    """A wait as the whole seconds of a `Retry-After` header (at least 1)."""
    return max(1, math.ceil(wait - 1e-9))
