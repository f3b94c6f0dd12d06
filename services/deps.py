"""The dependencies every service call takes: the store, the policy book, the deployment's
settings, the Checkfront and Stripe clients, the notifier that tells people, and the telemetry
that tells whoever watches the bot (`services.telemetry`).

The app, the CLI and the tests build one; nothing attaches parts to it afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.config import RefundConfig
from services.notify import Notifier, NullNotifier
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
