"""How the domain tells people what happened, without knowing it is Slack.

`bot.slack` implements `Notifier`; the CLI and tests use `NullNotifier` or a recorder.
"""

from __future__ import annotations

from typing import Protocol

from services.quoting.quote import Quote
from services.refunds.cases import Case


class Notifier(Protocol):
    async def case_opened(self, case: Case, quote: Quote) -> None:
        """A new case: a card for a person, or a compact line for an automatic decision."""

    async def case_updated(self, case: Case) -> None:
        """A case changed (decided, executed, failed): update what people see."""

    async def automation_changed(self, paused: bool, reason: str, by: str) -> None:
        """Automation was paused or resumed."""


class NullNotifier:
    async def case_opened(self, case: Case, quote: Quote) -> None:
        return None

    async def case_updated(self, case: Case) -> None:
        return None

    async def automation_changed(self, paused: bool, reason: str, by: str) -> None:
        return None
