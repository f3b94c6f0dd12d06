"""Rejected requests, counted in memory: how many per source and reason, and a log line at
most once a minute per source, instead of a row each in the audit chain (which anyone could
otherwise grow without limit by sending garbage).

Reasons are short fixed codes chosen by the caller, never text from the request, so neither the
counter's keys nor the log line carry what a stranger sent. The app reads `counts` (the health
check shows the totals per source).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 60.0

# the reasons callers give
UNAUTHORIZED = "unauthorized"
BAD_SIGNATURE = "bad signature"
TOO_LARGE = "too large"
MALFORMED = "malformed"
TOO_DEEP = "too deep"


class Rejections:
    """Counts of rejected requests by (source, reason), with a rate-limited log line."""

    def __init__(self, *, log_every: float = LOG_EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log_every = log_every
        self.clock = clock
        self.counts: Counter[tuple[str, str]] = Counter()
        self._last_line: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def reject(self, source: str, reason: str) -> None:
        """Count one rejected request; log, when the last line for `source` is old enough, how
        many were rejected since that line."""
        self.counts[(source, reason)] += 1
        self._unlogged[source] += 1
        now = self.clock()
        last = self._last_line.get(source)
        if last is not None and now - last < self.log_every:
            return
        log.warning("rejected %d %s request(s) since the last such line (latest: %s)",
                    self._unlogged[source], source, reason)
        self._unlogged[source] = 0
        self._last_line[source] = now

    def total(self, source: str | None = None) -> int:
        return sum(n for (src, _), n in self.counts.items() if source in (None, src))

    def by_source(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (source, _), n in self.counts.items():
            totals[source] += n
        return dict(sorted(totals.items()))
