"""The refund case as a record: its statuses and the transition table between them, the
stored quote it was decided on, and the errors a request about a case can meet.

`services.refunds.cases` owns the tables these come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.errors import DomainError
from services.money import format_minor
from services.quoting.quote import Quote
from services.store.db import Row


class Status(StrEnum):
    QUOTED = "quoted"
    AUTO_APPROVED = "auto_approved"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    DENIED = "denied"
    SKIPPED = "skipped"
    EXECUTING = "executing"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    FAILED = "failed"
    REFUNDED_BY_HAND = "refunded_by_hand"   # what Stripe could not refund, done by a person


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUOTED: frozenset({Status.AUTO_APPROVED, Status.PENDING_APPROVAL, Status.DENIED,
                              Status.SKIPPED}),
    Status.PENDING_APPROVAL: frozenset({Status.APPROVED, Status.DENIED, Status.PENDING_APPROVAL}),
    Status.APPROVED: frozenset({Status.EXECUTING}),
    Status.AUTO_APPROVED: frozenset({Status.EXECUTING}),
    Status.EXECUTING: frozenset({Status.REFUNDED, Status.PARTIALLY_REFUNDED, Status.FAILED,
                                 Status.PENDING_APPROVAL}),
    # failed -> refunded: Stripe's events show the refunds whose answer was lost went out
    Status.FAILED: frozenset({Status.EXECUTING, Status.PENDING_APPROVAL, Status.REFUNDED,
                              Status.PARTIALLY_REFUNDED, Status.REFUNDED_BY_HAND}),
    Status.REFUNDED: frozenset({Status.FAILED}),
    # partially_refunded/failed -> refunded_by_hand: an approver recorded the rest as refunded
    # by hand ("Mark refunded", services.refunds.manual)
    Status.PARTIALLY_REFUNDED: frozenset({Status.FAILED, Status.REFUNDED_BY_HAND}),
    Status.REFUNDED_BY_HAND: frozenset({Status.FAILED}),
    Status.DENIED: frozenset(),
    Status.SKIPPED: frozenset(),
}
APPROVED = (Status.APPROVED, Status.AUTO_APPROVED)   # an intent to refund, not yet claimed
OPEN = frozenset(set(Status) - {Status.REFUNDED, Status.PARTIALLY_REFUNDED, Status.DENIED,
                                Status.SKIPPED, Status.REFUNDED_BY_HAND})


def booking_key(code: str) -> str:
    """The one identity of a booking: its code as Checkfront's API returns it, upper case. The
    open-case rule (a unique index) and every look-up of a booking's cases key on it."""
    return code.strip().upper()


class CaseError(DomainError):
    """A request about a case that cannot be honoured; the message is safe to show a user."""


class CaseNotFound(CaseError):
    pass


class IllegalTransition(CaseError):
    pass


class AlreadyDecided(CaseError):
    """Someone else decided first."""

    def __init__(self, message: str, decided_by: str | None = None,
                 decided_at: str | None = None, outcome: str | None = None) -> None:
        super().__init__(message)
        self.decided_by = decided_by
        self.decided_at = decided_at
        self.outcome = outcome  # "approved" | "denied"


class StaleQuote(CaseError):
    """The click carried a quote version that is no longer current."""


class InvalidAmount(CaseError):
    pass


@dataclass(frozen=True)
class Case:
    id: int
    booking_id: str
    booking_code: str
    status: Status
    currency: str
    cancelled_at: str
    waiver: str | None
    source: str
    requested_by: str | None
    quote_version: str | None
    refund_amount: int
    approved_amount: int | None
    status_reason: str | None
    customer_hash: str | None
    created_at: str
    updated_at: str
    revision: int
    booking_key: str | None = None   # the booking as Checkfront's API names it (`booking_key`)
    involuntary: bool = False        # the waiver came from Checkfront (a waiver rule matched)
    waiver_source: str | None = None  # where, in words: "Checkfront status WTHR"

    @classmethod
    def from_row(cls, row: Row) -> Case:
        data = dict(row)
        data.pop("claimed_by", None)    # who executes it (services.store.leases), not the case
        data.pop("lease_until", None)
        data["status"] = Status(data["status"])
        if "involuntary" in data:
            data["involuntary"] = bool(data["involuntary"])
        return cls(**data)

    def money(self, minor: int) -> str:
        return format_minor(minor, self.currency)


@dataclass(frozen=True)
class StoredQuote:
    version: str
    created_at: str
    snapshot: dict[str, Any]
    quote: Quote
