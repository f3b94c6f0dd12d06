"""The `payment_issues` table: dispute and failed-payment records, their queries and changes.

A `charge.dispute.created` or `payment_intent.payment_failed` event becomes one row here, one
per dispute id or payment intent (services/disputes/stripe_events.py); people act on a row
through `claim` (compare-and-set from `open` to `working`, so two clicks make one action) and
`finish` (services/disputes/actions.py). Every change is audited in the same transaction, and
`show` tells the notifier. This module owns the table's SQL, including where the issue's card
was posted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from services.errors import DomainError
from services.money import display
from services.store import audit
from services.store.db import Row, Store, dumps, now_iso, one

if TYPE_CHECKING:
    from services.deps import Deps
    from services.disputes.evidence import BookingLink

log = logging.getLogger(__name__)

DISPUTE = "dispute"
PAYMENT_FAILED = "payment_failed"


class IssueState(StrEnum):
    OPEN = "open"
    WORKING = "working"
    SUBMITTED = "submitted"  # dispute evidence went to Stripe
    ACCEPTED = "accepted"  # dispute closed (lost) on purpose
    PAID = "paid"  # a retried payment succeeded
    CANCELLED = "cancelled"  # booking voided in Checkfront


class IssueError(DomainError):
    """A request about an issue that cannot be honoured; the message is safe to show."""


class IssueTaken(IssueError):
    """Someone else acted first (or is acting now)."""

    def __init__(self, message: str, by: str | None, at: str | None) -> None:
        super().__init__(message)
        self.by = by
        self.at = at


@dataclass(frozen=True)
class PaymentIssue:
    id: int
    kind: str
    stripe_id: str
    event_id: str
    payment_intent: str | None
    charge: str | None
    booking_code: str | None
    booking_id: str | None
    case_id: int | None
    amount: int
    currency: str
    reason: str | None
    due_by: str | None
    detail: dict[str, Any]
    state: IssueState
    stripe_status: str | None
    outcome: str | None
    acted_by: str | None
    acted_at: str | None
    attempts: int
    link_url: str | None
    slack_channel: str | None
    slack_ts: str | None
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: Row) -> PaymentIssue:
        data = dict(row)
        data["detail"] = json.loads(data["detail"])
        data["state"] = IssueState(data["state"])
        return cls(**data)

    @property
    def evidence(self) -> dict[str, str]:
        return dict(self.detail.get("evidence") or {})

    @property
    def facts(self) -> list[str]:
        return list(self.detail.get("facts") or [])


async def show(svc: Deps, issue: PaymentIssue, *, opened: bool = False) -> None:
    """Tell the notifier; a failure to show it never undoes what was recorded."""
    try:
        if opened:
            await svc.notifier.issue_opened(issue)
        else:
            await svc.notifier.issue_updated(issue)
    except Exception as exc:
        log.warning("could not show payment issue %s: %s", issue.id, exc.__class__.__name__)


# --- queries -------------------------------------------------------------------------------

async def get_issue(store: Store, issue_id: int) -> PaymentIssue:
    row = await store.fetch_one("SELECT * FROM payment_issues WHERE id = ?", (issue_id,))
    if row is None:
        raise IssueError(f"no dispute or failed payment #{issue_id}")
    return PaymentIssue.from_row(row)


async def find_issue(store: Store, kind: str, stripe_id: str) -> PaymentIssue | None:
    row = await store.fetch_one("SELECT * FROM payment_issues WHERE kind = ? AND stripe_id = ?",
                                (kind, stripe_id))
    return PaymentIssue.from_row(row) if row else None


# Stripe dispute statuses that free the payment: won, an inquiry closed, or prevented (stopped
# before it became a chargeback; a refund that resolved it is on the payment at Stripe, and
# the over-refund guard reads what Stripe shows unrefunded)
NO_HOLD_STATUSES = ("won", "warning_closed", "prevented")
LOST_STATUSES = ("lost",)  # the cardholder already has the money back
# a lost dispute under appeal: the cardholder keeps the money meanwhile, Stripe has not ruled
APPEAL_STATUSES = ("appeal_needs_response", "appeal_under_review")
DECIDED_STATUSES = NO_HOLD_STATUSES + LOST_STATUSES  # Stripe has ruled, one way or the other


async def open_disputes(store: Store) -> list[PaymentIssue]:
    """Disputes Stripe has not decided yet (and we did not accept), soonest deadline first."""
    marks = ", ".join("?" for _ in DECIDED_STATUSES)
    rows = await store.fetch_all(
        f"SELECT * FROM payment_issues WHERE kind = ? AND state != ? AND "
        f"COALESCE(stripe_status, '') NOT IN ({marks}) ORDER BY due_by IS NULL, due_by, id",
        (DISPUTE, IssueState.ACCEPTED.value, *DECIDED_STATUSES))
    return [PaymentIssue.from_row(r) for r in rows]


async def remember_card(store: Store, issue_id: int, channel: str | None, ts: str | None) -> None:
    """Keep where the issue's card is (from its post, or from a click on an older card)."""
    if not channel or not ts:
        return
    async with store.transaction() as tx:
        await tx.execute("UPDATE payment_issues SET slack_channel = ?, slack_ts = ? "
                         "WHERE id = ? AND slack_ts IS NULL", (channel, ts, issue_id))


# --- what Stripe tells us ------------------------------------------------------------------

async def insert(store: Store, *, kind: str, stripe_id: str, event_id: str,
                 payment_intent: str | None, charge: str | None, link: BookingLink,
                 amount: int, currency: str, reason: str, due_by: str | None,
                 detail: dict[str, Any], stripe_status: str,
                 audit_action: str) -> PaymentIssue | None:
    """A new open issue, audited; None when one for this Stripe id exists already."""
    now = now_iso()
    case_id = link.case.id if link.case else None
    async with store.transaction() as tx:
        inserted = await one(
            tx, "INSERT INTO payment_issues (kind, stripe_id, event_id, payment_intent, "
            "charge, booking_code, booking_id, case_id, amount, currency, reason, due_by, "
            "detail, state, stripe_status, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?) "
            "ON CONFLICT (kind, stripe_id) DO NOTHING RETURNING id",
            (kind, stripe_id, event_id, payment_intent, charge, link.booking_code,
             link.booking_id, case_id, amount, currency, reason, due_by, dumps(detail),
             stripe_status, now, now))
        if inserted is None:
            return None
        issue_id = int(inserted["id"])
        await audit.append(tx, actor="stripe", action=audit_action, case_id=case_id, detail={
            "issue": issue_id, "stripe_id": stripe_id, "event_id": event_id,
            "booking": link.booking_code, "found_by": link.found_by,
            "amount": display(amount, currency), "reason": reason, "due_by": due_by,
            "evidence_fields": sorted(detail.get("evidence") or {})})
    return await get_issue(store, issue_id)


async def set_dispute_status(store: Store, issue: PaymentIssue, status: str, refundable: bool,
                             event_kind: str) -> PaymentIssue:
    """Stripe moved the dispute on: keep its status and whether the charge is refundable."""
    async with store.transaction() as tx:
        # the stored detail read and written back in the transaction (no engine's JSON
        # functions: the same SQL on both)
        stored = await one(tx, "SELECT detail FROM payment_issues WHERE id = ?", (issue.id,))
        detail = json.loads(stored["detail"]) if stored is not None else dict(issue.detail)
        detail["charge_refundable"] = bool(refundable)
        await tx.execute("UPDATE payment_issues SET stripe_status = ?, updated_at = ?, "
                         "detail = ? WHERE id = ?",
                         (status, now_iso(), dumps(detail), issue.id))
        await audit.append(tx, actor="stripe", action="dispute.status", case_id=issue.case_id,
                           detail={"dispute": issue.stripe_id, "event": event_kind,
                                   "from": issue.stripe_status, "to": status})
    return await get_issue(store, issue.id)


async def set_failed_again(store: Store, issue: PaymentIssue, why: str, detail: dict[str, Any],
                           status: str) -> PaymentIssue:
    """The same payment failed once more: keep the latest reason and details."""
    async with store.transaction() as tx:
        await tx.execute("UPDATE payment_issues SET reason = ?, detail = ?, stripe_status = ?, "
                         "updated_at = ? WHERE id = ?",
                         (why, dumps(detail), status, now_iso(), issue.id))
        await audit.append(tx, actor="stripe", action="payment.failed_again",
                           case_id=issue.case_id, detail={"payment_intent": issue.stripe_id,
                                                          "reason": why})
    return await get_issue(store, issue.id)


# --- what people do ------------------------------------------------------------------------

async def claim(store: Store, issue_id: int, kind: str, *, by: str, doing: str) -> PaymentIssue:
    """Take an open issue for one action (compare-and-set), or raise IssueTaken/IssueError."""
    async with store.transaction(durable=True) as tx:   # a person's action, before Stripe
        cursor = await tx.execute(
            "UPDATE payment_issues SET state = 'working', acted_by = ?, acted_at = ?, "
            "outcome = ?, attempts = attempts + 1, updated_at = ? "
            "WHERE id = ? AND kind = ? AND state = 'open'",
            (by, now_iso(), doing, now_iso(), issue_id, kind))
        claimed = bool(cursor.rowcount)
    issue = await get_issue(store, issue_id)
    if issue.kind != kind:
        raise IssueError(f"#{issue_id} is not a {kind.replace('_', ' ')}")
    if not claimed:
        verb = "is being handled" if issue.state == IssueState.WORKING else \
            f"was already handled ({issue.outcome or issue.state.value})"
        raise IssueTaken(f"This {kind.replace('_', ' ')} {verb}", issue.acted_by, issue.acted_at)
    return issue


async def finish(store: Store, issue: PaymentIssue, *, state: IssueState, outcome: str,
                 by: str, action: str, detail: dict[str, Any],
                 changes: dict[str, Any] | None = None) -> PaymentIssue:
    """End the action a claim started: the new state and outcome, audited."""
    values: dict[str, Any] = {"state": str(state), "outcome": outcome, "acted_by": by,
                              "acted_at": now_iso(), "updated_at": now_iso(), **(changes or {})}
    assignments = ", ".join(f"{name} = ?" for name in values)
    async with store.transaction() as tx:
        await tx.execute(f"UPDATE payment_issues SET {assignments} WHERE id = ? "
                         "AND state = 'working'", (*values.values(), issue.id))
        await audit.append(tx, actor=by, action=action, case_id=issue.case_id, detail={
            "issue": issue.id, "stripe_id": issue.stripe_id, "booking": issue.booking_code,
            "outcome": outcome, **detail})
    return await get_issue(store, issue.id)


async def disputes_on(store: Store, payment_refs: list[str]) -> list[dict[str, Any]]:
    """Every dispute recorded on any of these payments (payment intent or charge ids), oldest
    first, with what a hold needs: Stripe's status, our state, the amount, whether Stripe lets
    the charge be refunded (`charge_refundable`, a bool read from the stored detail)."""
    marks = ", ".join("?" for _ in payment_refs)
    rows = await store.fetch_all(
        "SELECT stripe_id, payment_intent, charge, stripe_status, state, amount, currency, "
        "detail "
        # `kind || ''`: found by either payment id's index, not by reading every dispute
        f"FROM payment_issues WHERE kind || '' = 'dispute' AND (payment_intent IN ({marks}) "
        f"OR charge IN ({marks})) ORDER BY id", (*payment_refs, *payment_refs))
    found = []
    for row in rows:
        data = {key: row[key] for key in ("stripe_id", "payment_intent", "charge",
                                          "stripe_status", "state", "amount", "currency")}
        data["charge_refundable"] = bool(json.loads(row["detail"] or "{}").get(
            "charge_refundable"))
        found.append(data)
    return found
