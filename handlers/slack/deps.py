"""What the Slack handlers share: `SlackDeps`, the protocols for what they need of the bot.

`Tasks` spawns tracked work after the ack and `Posts` queues a post for the paced outbox (and
opens its priority lane for a click's own feedback: `urgent()`); the bot passes its worker and
its outbox in, and the handlers know them only by these protocols. `People` remembers, in
memory, the name each person who sent a request goes by. Small helpers every handler uses
(`later`, `tell`, `audit_refusal`) are here too.

`tell` answers privately where the person is: through the request's response URL, or as an
ephemeral message in a channel. Never as a direct message: the app's Messages tab is off, and
Slack refuses those.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from services.customers.drafts import Templates
from services.customers.sending import CustomerSettings
from services.deps import Deps
from services.finance.agreement import Rules as PromotionRules
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
                       comment: str | None = None, response_url: str | None = None) -> None: ...

    def urgent(self) -> AbstractContextManager[None]:
        """Posts queued inside go ahead of those waiting (a click's own feedback)."""
        ...


class People:
    """The name each person last sent a request under (Slack sends it with every request),
    the most recent `limit` people kept, in memory only."""

    def __init__(self, limit: int = 2000) -> None:
        self.limit = limit
        self._names: OrderedDict[str, str] = OrderedDict()

    def saw(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        user = body.get("user")
        if isinstance(user, dict):
            user_id, name = user.get("id"), user.get("name") or user.get("username")
        else:
            user_id, name = body.get("user_id"), body.get("user_name")
        if isinstance(user_id, str) and isinstance(name, str) and name:
            self._names[user_id] = name[:80]
            self._names.move_to_end(user_id)
            while len(self._names) > self.limit:
                self._names.popitem(last=False)

    def name(self, user_id: str | None) -> str | None:
        return self._names.get(user_id) if user_id else None


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
    people: People = field(default_factory=People)
    # the customer message's drafting (the Customer message modal): mode, rebooking link,
    # the template folder
    customers: CustomerSettings = field(default_factory=CustomerSettings)
    templates: Templates = field(default_factory=Templates)
    # the weekly review's offers of a mode change (services.finance.agreement)
    promotion: PromotionRules = field(default_factory=PromotionRules)

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
        """An ephemeral note to one person: through the response URL when there is one, else
        in `channel`. With neither there is nowhere to say it privately (no DMs): logged."""
        try:
            if respond is not None:
                await respond(text=text, response_type="ephemeral", replace_original=False)
            elif channel:
                await self.client.chat_postEphemeral(channel=channel, user=user, text=text)
            else:
                log.warning("nowhere to tell a user privately; the note is dropped")
        except Exception as exc:  # a lost courtesy message must not hide the real outcome
            log.warning("could not tell a user: %s", exc.__class__.__name__)
