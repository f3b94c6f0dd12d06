"""What the domain's runners tell whoever watches them: a small observer with a no-op default.

The services know no metrics library: `Deps.telemetry` is a `Telemetry`, `NullTelemetry`
unless the bot gives its own (bot/metrics.py turns these calls into Prometheus counters).
A call is a counter's worth of work and never raises into the caller's path.

`event_outcome` names how an applied webhook event ended, from the outcome text that
`services.intake.routing.process` returns: processed (its handler ran, with or without an
input error), retrying (kept for a retry after an outage), failed (a dead letter, or given up
after its retries), skipped (already processed or failed before: queued twice), store_error
(the store itself failed; the event stays as it was).
"""

from __future__ import annotations

from typing import Protocol

PROCESSED, RETRYING, FAILED, SKIPPED, STORE_ERROR = (
    "processed", "retrying", "failed", "skipped", "store_error")
EVENT_OUTCOMES = (PROCESSED, RETRYING, FAILED, SKIPPED, STORE_ERROR)
_SKIPPED = frozenset({"already processed", "failed earlier: not run again"})
NOT_PROCESSED = "not processed"   # what the worker answers when the store failed


def event_outcome(text: str) -> str:
    """The outcome's kind (one of `EVENT_OUTCOMES`) from `process`'s outcome text."""
    if text in _SKIPPED:
        return SKIPPED
    if text == NOT_PROCESSED:
        return STORE_ERROR
    if text.startswith("retrying:"):
        return RETRYING
    if text.startswith("failed:"):
        return FAILED
    return PROCESSED


class Telemetry(Protocol):
    def event_done(self, source: str, outcome: str) -> None:
        """A webhook event from `source` was applied and ended with `outcome` (its text)."""


class NullTelemetry:
    """Tells no one (tests, the command line)."""

    def event_done(self, source: str, outcome: str) -> None:
        return None
