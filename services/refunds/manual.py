"""Refunds made by hand: the part of an approved refund that did not go through Stripe.

A payment taken in cash or by bank transfer, or a Stripe refund that failed for good, leaves
money the business must refund itself. Once it has, an approver records it ("Mark refunded":
amount, method, reference) and the case closes: `partially_refunded` or `failed` becomes
`refunded_by_hand`. The compare-and-set on the case, the `manual_refunds` row and the audit row
commit in one transaction, so two clicks record one refund and a case changed meanwhile is
refused. The amount is checked against what is left: the approved amount less what Stripe has
refunded (pending or succeeded). The daily reconciliation counts these as manual refunds (they
are not in Stripe and not reported as missing there; `services.finance.reconcile`).

The reference is what the payer's bank or till printed; it is refused when it looks like an
email address, a phone or a card number, so no contact data reaches the store or the audit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from services.deps import Deps
from services.money import display
from services.refunds import cases, ledger
from services.refunds.ledger import SETTLED
from services.refunds.models import AlreadyDecided, Case, CaseError, InvalidAmount, Status
from services.store.db import Row, Store, iso_utc, now_iso, one

# how a refund was made by hand: stored value -> words
METHODS: dict[str, str] = {
    "bank_transfer": "bank transfer",
    "cash": "cash",
    "card_terminal": "card terminal",
    "cheque": "cheque",
    "other": "other",
}
REFERENCE_MAX = 100
CLOSABLE = (Status.PARTIALLY_REFUNDED, Status.FAILED)   # what "Mark refunded" closes

_CONTACT = re.compile(r"@|\+\d[\d\s().-]{6,}\d|\d(?:[ -]?\d){12,18}")


@dataclass(frozen=True)
class ManualRefund:
    case_id: int
    amount: int          # minor units of `currency`
    currency: str
    method: str          # a key of METHODS
    reference: str | None
    recorded_by: str
    recorded_at: str

    @classmethod
    def from_row(cls, row: Row) -> ManualRefund:
        return cls(case_id=int(row["case_id"]), amount=int(row["amount"]),
                   currency=row["currency"], method=row["method"], reference=row["reference"],
                   recorded_by=row["recorded_by"], recorded_at=row["recorded_at"])

    @property
    def method_text(self) -> str:
        return METHODS.get(self.method, self.method)


def check_reference(reference: str) -> str | None:
    """Why a typed reference cannot be kept (None when it can)."""
    if len(reference) > REFERENCE_MAX:
        return f"Keep the reference to {REFERENCE_MAX} characters."
    if _CONTACT.search(reference):
        return ("That looks like contact or card details; enter the transfer or receipt "
                "reference only.")
    return None


def left_to_refund(case: Case, stripe_refunds: list[Row]) -> int:
    """What the case still owes by hand: its approved amount less Stripe's refunds that moved."""
    approved = case.approved_amount if case.approved_amount is not None else case.refund_amount
    moved = sum(int(r["amount"]) for r in stripe_refunds if r["status"] in SETTLED)
    return max(approved - moved, 0)


async def left_by_hand(store: Store, case: Case) -> int:
    return left_to_refund(case, await ledger.stripe_refunds(store, case.id))


async def status_now(store: Store, case_id: int) -> str | None:
    """The case's status, read on the store's read-only connection (never behind a write):
    for the check a modal's submission makes before it is acknowledged."""
    row = await store.read_one("SELECT status FROM cases WHERE id = ?", (case_id,))
    return row["status"] if row else None


async def of_case(store: Store, case_id: int) -> ManualRefund | None:
    row = await store.fetch_one("SELECT * FROM manual_refunds WHERE case_id = ?", (case_id,))
    return ManualRefund.from_row(row) if row else None


async def between(store: Store, start: datetime, end: datetime) -> list[ManualRefund]:
    """Refunds recorded by hand in [start, end), oldest first."""
    rows = await store.read_all(
        "SELECT * FROM manual_refunds WHERE recorded_at >= ? AND recorded_at < ? "
        "ORDER BY recorded_at, id", (iso_utc(start), iso_utc(end)))
    return [ManualRefund.from_row(r) for r in rows]


async def mark(svc: Deps, case_id: int, *, by: str, amount: int, method: str,
               reference: str | None) -> Case:
    """`mark_refunded`, then the people are told (the card collapses to its outcome)."""
    case = await mark_refunded(svc.store, case_id, by=by, amount=amount, method=method,
                               reference=reference)
    await svc.notifier.case_updated(case)
    return case


async def mark_refunded(store: Store, case_id: int, *, by: str, amount: int, method: str,
                        reference: str | None) -> Case:
    """Record that `amount` of the case was refunded by hand, and close the case."""
    if method not in METHODS:
        raise CaseError(f"unknown way of refunding by hand: {method!r}")
    reference = (reference or "").strip() or None
    if reference is not None and (problem := check_reference(reference)):
        raise CaseError(problem)
    if amount <= 0:
        raise InvalidAmount("the amount refunded by hand must be more than zero")
    async with store.transaction(durable=True) as tx:   # a person's record of money moved
        case = await cases.get(store, case_id)
        if case.status not in CLOSABLE:
            done = await of_case(store, case_id)
            if done is not None:
                raise AlreadyDecided(
                    f"already marked refunded by hand by {done.recorded_by}",
                    decided_by=done.recorded_by, decided_at=done.recorded_at,
                    outcome="marked refunded")
            raise CaseError(f"case {case_id} is {case.status.value.replace('_', ' ')}; "
                            "there is nothing left to refund by hand")
        left = await left_by_hand(store, case)
        if amount > left:
            raise InvalidAmount(f"{display(amount, case.currency)} is more than the "
                                f"{display(left, case.currency)} left to refund")
        at = now_iso()
        await one(tx, "INSERT INTO manual_refunds (case_id, amount, currency, method, "
                  "reference, recorded_by, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                  "RETURNING id", (case.id, amount, case.currency, method, reference, by, at))
        detail = {"amount": case.money(amount), "left": case.money(left), "method": method,
                  "reference": reference}
        closed = await cases.transition(
            tx, case, Status.REFUNDED_BY_HAND, actor=by,
            reason=f"{display(amount, case.currency)} refunded by hand "
                   f"({METHODS[method]})", detail=detail)
    return closed
