"""One notifier for the domain when both Slack and Teams are on: each event told to both.

Each platform's notifier only queues rows in its own outbox, so telling one after the other
is two short transactions; a failure in one is raised after the other was told.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.notify import Notifier


class FanoutNotifier:
    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers = list(notifiers)

    async def _each(self, name: str, *args: Any) -> None:
        failed: BaseException | None = None
        for notifier in self.notifiers:
            try:
                await getattr(notifier, name)(*args)
            except Exception as exc:   # the others are still told
                failed = failed or exc
        if failed is not None:
            raise failed

    async def case_opened(self, case: Any, quote: Any) -> None:
        await self._each("case_opened", case, quote)

    async def case_updated(self, case: Any) -> None:
        await self._each("case_updated", case)

    async def automation_changed(self, paused: bool, reason: str, by: str) -> None:
        await self._each("automation_changed", paused, reason, by)

    async def issue_opened(self, issue: Any) -> None:
        await self._each("issue_opened", issue)

    async def issue_updated(self, issue: Any) -> None:
        await self._each("issue_updated", issue)

    async def event_stuck(self, stuck: Any) -> None:
        await self._each("event_stuck", stuck)

    async def customer_message_failed(self, case: Any, outcome: str, error: str) -> None:
        await self._each("customer_message_failed", case, outcome, error)
