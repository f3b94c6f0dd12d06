"""The dependencies every service call takes: the store, the policy book, the deployment's
settings, the Checkfront and Stripe clients, the notifier that tells people, and the telemetry
that tells whoever watches the bot (`services.telemetry`).

The app, the CLI and the tests build one; nothing attaches parts to it afterwards. A status
the policy file's waiver rules name (a custom `WTHR`) is a cancellation: it is added to the
settings' cancelled statuses here, so intake, the write-back and reconciliation agree on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from services.config import RefundConfig
from services.notify import Notifier, NullNotifier
from services.quoting import waiver_rules
from services.quoting.policy import PolicyBook
from services.store.db import Store
from services.telemetry import NullTelemetry, Telemetry

if TYPE_CHECKING:
    from services.clients.checkfront import CheckfrontClient
    from services.clients.stripe_gateway import StripeGateway


@dataclass(frozen=True)
class Deps:
    store: Store
    book: PolicyBook
    config: RefundConfig = field(default_factory=RefundConfig)
    checkfront: CheckfrontClient | None = None
    stripe: StripeGateway | None = None
    notifier: Notifier = field(default_factory=NullNotifier)
    telemetry: Telemetry = field(default_factory=NullTelemetry)

    def __post_init__(self) -> None:
        mapped = waiver_rules.statuses(self.book.waiver_rules)
        if not mapped <= self.config.cancelled_statuses:
            object.__setattr__(self, "config", replace(
                self.config, cancelled_statuses=self.config.cancelled_statuses | mapped))
