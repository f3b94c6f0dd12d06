"""The ledger-first over-refund guard: what a case is about to send to Stripe, checked against
everything our own ledger holds for the booking, before any Stripe call.

It runs inside the executor's planning transaction. The store opens every transaction with
`BEGIN IMMEDIATE`, which one writer at a time holds across processes, so the check and the
planned rows it lets through commit together: two executions for one booking (two cases, two
processes, two clicks) cannot both pass, because the second sees the first's planned rows.

A case may send a refund only when
- no other case of the booking has a refund made or under way that this case's snapshot does
  not count (its quote was made without it: a person decides again);
- per payment, what the case sends plus every planned, pending or succeeded row on it, across
  all the booking's cases, fits within what was paid;
- per payment, what the case sends plus what other rows have planned but Stripe may not show
  yet fits within what Stripe showed unrefunded just before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.money import display
from services.quoting.booking import BookingSnapshot
from services.refunds.ledger import LIVE, Execution, ExecutionStatus
from services.refunds.models import Case


@dataclass(frozen=True)
class Refusal:
    """Why nothing may be sent: `row_reason` for the rows given up, `reason` for the person."""

    row_reason: str
    reason: str


def check(case: Case, snapshot: BookingSnapshot, booking_rows: Sequence[Execution],
          to_send: Sequence[Execution], stripe_left: Mapping[str, int]) -> Refusal | None:
    """None when every row of `to_send` may go to Stripe; else the first reason it may not.
    `booking_rows` are the ledger's rows for the booking (`ledger.for_booking`), `stripe_left`
    what Stripe showed unrefunded on each payment of `to_send`."""
    sending = {row.id for row in to_send}
    others = [row for row in booking_rows if row.id not in sending]
    counted = {t.id for t in snapshot.transactions or () if t.status == "REFUND"}
    foreign = [row for row in others if row.case_id != case.id and row.status in LIVE
               and row.stripe_refund_id not in counted]
    if foreign:
        first = foreign[0]
        what = "refunded" if first.status != ExecutionStatus.PLANNED else "is refunding"
        money = display(sum(row.amount for row in foreign), case.currency)
        return Refusal(f"case {first.case_id} {what} {money} on this booking",
                       f"case {first.case_id} {what} {money} on this booking, which this "
                       "case's quote does not count")
    paid = {p.transaction.id: p.transaction.amount for p in snapshot.payments()}
    amounts: dict[str, int] = {}
    for row in to_send:
        amounts[row.payment_ref] = amounts.get(row.payment_ref, 0) + row.amount
    for ref, amount in amounts.items():
        held = sum(r.amount for r in others if r.payment_ref == ref and r.status in LIVE)
        if held + amount > paid.get(ref, 0):
            return Refusal(
                f"the ledger holds {case.money(held)} on {ref} already",
                f"our ledger already holds {display(held, case.currency)} of refunds on {ref}; "
                f"{display(amount, case.currency)} more would be over the "
                f"{display(paid.get(ref, 0), case.currency)} paid")
        in_flight = sum(r.amount for r in others
                        if r.payment_ref == ref and r.status == ExecutionStatus.PLANNED)
        left = stripe_left.get(ref, 0) - in_flight
        if amount > left:
            return Refusal(
                f"Stripe shows {case.money(max(left, 0))} left on {ref}",
                f"Stripe shows only {display(max(left, 0), case.currency)} unrefunded on {ref}, "
                f"but {display(amount, case.currency)} was planned")
    return None
