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
class RefundConfig:
    mode: Mode = Mode.ASSISTED
    quote_max_age: timedelta = timedelta(hours=24)
    cancelled_statuses: frozenset[str] = field(default_factory=lambda: frozenset({"STOP", "VOID"}))
    status_after_refund: str = "STOP"
    notify_customer: bool = False
    customer_hash_salt: str = "refund-bot"
    raw_event_retention: timedelta = timedelta(days=30)  # then a processed webhook body goes
    execution_concurrency: int = 4
