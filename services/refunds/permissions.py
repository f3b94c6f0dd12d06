"""Who may decide refunds, and up to what amount.

Approvers are Slack user ids, each with an optional maximum, and/or the members of one user
group (with one maximum for the group). Above every approver's limit only finance leads may
approve. Optionally nobody approves a refund they requested themselves.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal

from services.errors import DomainError
from services.money import display, to_minor


class NotAllowed(DomainError):
    """The message is shown to the person who clicked (ephemeral)."""


@dataclass(frozen=True)
class ApproverRules:
    approvers: dict[str, Decimal | None] = field(default_factory=dict)  # user → max, None = any
    group_id: str | None = None
    group_max: Decimal | None = None
    finance_leads: frozenset[str] = frozenset()
    no_self_approval: bool = False

    @classmethod
    def parse(cls, approvers: str = "", group_id: str = "", group_max: str = "",
              finance_leads: str = "", no_self_approval: bool = False) -> ApproverRules:
        """From settings text: approvers "U1:500.00,U2" (U2 has no limit)."""
        table: dict[str, Decimal | None] = {}
        for entry in filter(None, (p.strip() for p in approvers.split(","))):
            user, _, limit = entry.partition(":")
            table[user.strip()] = Decimal(limit) if limit.strip() else None
        return cls(
            approvers=table,
            group_id=group_id.strip() or None,
            group_max=Decimal(group_max) if group_max.strip() else None,
            finance_leads=frozenset(filter(None, (p.strip() for p in finance_leads.split(",")))),
            no_self_approval=no_self_approval,
        )

    def is_approver(self, user: str, group_members: Collection[str] = ()) -> bool:
        return (user in self.approvers or user in self.finance_leads
                or (self.group_id is not None and user in group_members))

    def limit_for(self, user: str, group_members: Collection[str] = ()) -> Decimal | None:
        """The largest amount `user` may approve (None: no limit); raises if not an approver."""
        if user in self.finance_leads:
            return None
        limits: list[Decimal | None] = []
        if user in self.approvers:
            limits.append(self.approvers[user])
        if self.group_id is not None and user in group_members:
            limits.append(self.group_max)
        if not limits:
            raise NotAllowed("You are not one of the refund approvers.")
        return None if None in limits else max(x for x in limits if x is not None)

    def check_approve(self, user: str, amount: int, currency: str, *,
                      group_members: Collection[str] = (),
                      requested_by: str | None = None) -> None:
        """Raise NotAllowed with a message for the user, or return when they may approve."""
        limit = self.limit_for(user, group_members)
        if limit is not None and amount > to_minor(limit, currency):
            raise NotAllowed(
                f"You can't approve refunds over {display(to_minor(limit, currency), currency)}; "
                f"this one is {display(amount, currency)}. A finance lead can."
            )
        if self.no_self_approval and requested_by and requested_by == user:
            raise NotAllowed("You requested this refund, so someone else has to approve it.")
