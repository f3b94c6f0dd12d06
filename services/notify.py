"""The `Notifier` protocol: how the domain tells people what happened, not knowing it is Slack.

One notifier covers refund cases, the automation switch, payment issues (disputes and
failed payments), webhook events an outage kept from being processed (`StuckEvent`) and
customer messages that could not be sent. It
is given to `Deps` when they are built; bot/slack/notifier.py implements it, and the CLI and
tests use `NullNotifier` or a recorder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from services.quoting.quote import Quote
from services.refunds.models import Case

if TYPE_CHECKING:
    from services.disputes.issues import PaymentIssue


@dataclass(frozen=True)
class StuckEvent:
    """A webhook event that Checkfront or Stripe kept failing past the retry bound."""

    row_id: int
    source: str                # checkfront | stripe
    kind: str                  # booking, transaction, or the Stripe event type
    subject: str | None        # the booking (Checkfront) or object (Stripe) it is about
    error: str                 # the error's class and a safe message
    attempts: int
    since: str                 # UTC ISO-8601: the first failure of these retries


class Notifier(Protocol):
    async def case_opened(self, case: Case, quote: Quote) -> None:
        """A new case: a card for a person, or a compact line for an automatic decision."""

    async def case_updated(self, case: Case) -> None:
        """A case changed (decided, executed, failed): update what people see."""

    async def automation_changed(self, paused: bool, reason: str, by: str) -> None:
        """Automation was paused or resumed."""

    async def issue_opened(self, issue: PaymentIssue) -> None:
        """A new dispute or failed payment: post its card."""

    async def issue_updated(self, issue: PaymentIssue) -> None:
        """An issue changed (someone acted, Stripe moved it): refresh its card."""

    async def event_stuck(self, stuck: StuckEvent) -> None:
        """An event could not be processed for the retry bound: show it, with Retry."""

    async def customer_message_failed(self, case: Case, outcome: str, error: str) -> None:
        """The customer's message could not be sent after its retries: show it, with the
        Customer message button (`error` holds no address and no body)."""


class NullNotifier:
    async def case_opened(self, case: Case, quote: Quote) -> None:
        return None

    async def case_updated(self, case: Case) -> None:
        return None

    async def automation_changed(self, paused: bool, reason: str, by: str) -> None:
        return None

    async def issue_opened(self, issue: PaymentIssue) -> None:
        return None

    async def issue_updated(self, issue: PaymentIssue) -> None:
        return None

    async def event_stuck(self, stuck: StuckEvent) -> None:
        return None

    async def customer_message_failed(self, case: Case, outcome: str, error: str) -> None:
        return None
