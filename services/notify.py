"""The `Notifier` protocol: how the domain tells people what happened, not knowing it is Slack.

One notifier covers refund cases, the automation switch and payment issues (disputes and
failed payments). It is given to `Deps` when they are built; bot/slack/notifier.py implements
it, and the CLI and tests use `NullNotifier` or a recorder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from services.quoting.quote import Quote
from services.refunds.models import Case

if TYPE_CHECKING:
    from services.disputes.issues import PaymentIssue


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
