"""What the Slack handlers share: `SlackDeps`, the protocols for what they need of the bot.

`Tasks` spawns tracked work after the ack and `Posts` queues a post for the paced outbox; the
bot passes its worker and its outbox in, and the handlers know them only by these protocols.
Small helpers every handler uses (`later`, `tell`, `audit_refusal`) are here too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from services.deps import Deps
from services.notify import Notifier
from services.refunds.permissions import ApproverRules
from services.store import audit

log = logging.getLogger(__name__)


class Tasks(Protocol):
    """Spawn tracked work: it runs after the ack, and a failure is logged, never lost."""

    def spawn(self, work: Callable[[], Awaitable[Any]], name: str) -> Any: ...


class Posts(Protocol):
    """Queue a post for the paced outbox (kept across restarts, retried on failure)."""

    async def add_file(self, channel: str, *, filename: str, title: str, content: bytes,
                       comment: str | None = None) -> None: ...


@dataclass
class GroupMembers:
    """Members of the approvers' user group, refreshed in the background (never on an ack)."""

    group_id: str | None
    members: frozenset[str] = field(default_factory=frozenset)

    async def refresh(self, client: AsyncWebClient) -> None:
        if not self.group_id:
            return
        try:
            answer = await client.usergroups_users_list(usergroup=self.group_id)
        except SlackApiError as exc:
            log.warning("could not read user group members: %s", exc.response.get("error"))
            return
        self.members = frozenset(answer.get("users") or [])


@dataclass
class SlackDeps:
    svc: Deps
    worker: Tasks
    client: AsyncWebClient
    rules: ApproverRules
    groups: GroupMembers
    notifier: Notifier
    outbox: Posts
    zone: ZoneInfo

    def is_approver(self, user: str) -> bool:
        return self.rules.is_approver(user, self.groups.members)

    def later(self, name: str, work: Callable[[], Awaitable[Any]]) -> None:
        """Run after the ack, tracked by the worker (failures are logged, never lost)."""
        self.worker.spawn(work, name=name)

    async def audit_refusal(self, user: str, action: str, case_id: int | None, why: str) -> None:
        await audit.record(self.svc.store, actor=user, action="slack.refused", case_id=case_id,
                           detail={"action": action, "why": why})

    async def tell(self, user: str, channel: str | None, text: str,
                   respond: Callable[..., Awaitable[Any]] | None = None) -> None:
        """An ephemeral note to one person: through the response URL when there is one."""
        try:
            if respond is not None:
                await respond(text=text, response_type="ephemeral", replace_original=False)
            elif channel:
                await self.client.chat_postEphemeral(channel=channel, user=user, text=text)
            else:
                await self.client.chat_postMessage(channel=user, text=text)
        except Exception as exc:  # a lost courtesy message must not hide the real outcome
            log.warning("could not tell a user: %s", exc.__class__.__name__)
