"""What the domain needs to know about the deployment; `bot.settings` fills it from the env."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum


class Mode(StrEnum):
    SHADOW = "shadow"          # quote and record only; nothing is refunded automatically
    ASSISTED = "assisted"      # auto-approve refunds within auto_approve_max
    AUTONOMOUS = "autonomous"  # auto-approve every policy-clear refund up to escalate_over


@dataclass(frozen=True)
class EventRetries:
    """How a webhook event that met a Checkfront or Stripe outage is retried: waits doubling
    from `first` up to `longest`, until `give_up_after` from its first failure (then it is
    shown to a person)."""

    first: timedelta = timedelta(minutes=1)
    longest: timedelta = timedelta(minutes=10)
    give_up_after: timedelta = timedelta(minutes=30)

    def wait(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed try (1 for the first)."""
        return min(self.first * 2 ** min(max(attempts - 1, 0), 20), self.longest)


@dataclass(frozen=True)
class RefundConfig:
    mode: Mode = Mode.ASSISTED
    quote_max_age: timedelta = timedelta(hours=24)
    cancelled_statuses: frozenset[str] = field(default_factory=lambda: frozenset({"STOP", "VOID"}))
    status_after_refund: str = "STOP"
    notify_customer: bool = False
    customer_hash_salt: str = "refund-bot"
    raw_event_retention: timedelta = timedelta(days=30)  # then a processed webhook body goes
    execution_concurrency: int = 4
    event_retries: EventRetries = field(default_factory=EventRetries)
    # the daily reconciliation settles too (balance transactions, payouts): SETTLEMENT_RECONCILE
    settlement: bool = False
    payout_delay: timedelta = timedelta(days=7)   # a refund in no payout after this is flagged
