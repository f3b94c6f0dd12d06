"""Disputes that stand in the way of refunding a payment.

Stripe refuses to refund a charge while a dispute on it is open, and after a lost dispute
the cardholder already has the money back: a refund would pay them twice. So a payment with
such a dispute is held: its refund case waits for a person (a risk flag when quoted) and
execution stops before calling Stripe. A lost dispute under appeal holds it the same way,
whatever `is_charge_refundable` says: the cardholder keeps the money until the appeal is
decided. A dispute Stripe marks `is_charge_refundable` (some inquiries) only asks for a
person: refunding it settles the dispute. A dispute the business won, an inquiry that closed,
or one prevented before it became a chargeback holds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from services.disputes import issues
from services.disputes.issues import APPEAL_STATUSES, LOST_STATUSES, NO_HOLD_STATUSES
from services.money import display
from services.quoting.quote import Quote, RiskFlag
from services.store.db import Store


@dataclass(frozen=True)
class DisputeHold:
    dispute_id: str
    payment_ref: str     # the ref it was matched on (payment intent or charge)
    status: str          # Stripe's dispute status
    amount: int          # minor units of `currency`
    currency: str
    charge_refundable: bool = False

    @property
    def blocks_refund(self) -> bool:
        return self.status in LOST_STATUSES + APPEAL_STATUSES or not self.charge_refundable

    @property
    def reason(self) -> str:
        money = display(self.amount, self.currency)
        if self.status in APPEAL_STATUSES:
            return (f"payment {self.payment_ref}: dispute {self.dispute_id} was lost and is under "
                    f"appeal ({self.status}); the cardholder has {money} back meanwhile and a "
                    "refund would pay twice")
        if self.status in LOST_STATUSES:
            return (f"payment {self.payment_ref}: dispute {self.dispute_id} ended {self.status}, "
                    f"the cardholder already has {money} back and a refund would pay twice")
        return (f"payment {self.payment_ref} is under dispute {self.dispute_id} "
                f"({self.status or 'open'}, {money}): " + (
                    "a refund would settle the dispute, check it first" if not self.blocks_refund
                    else "Stripe will not refund it until the dispute is answered"))


async def holds_on(store: Store, refs: Iterable[str]) -> list[DisputeHold]:
    """The disputes holding any of these payments (payment intent or charge ids)."""
    wanted = sorted({ref for ref in refs if ref})
    if not wanted:
        return []
    rows = await issues.disputes_on(store, wanted)
    holds = []
    for r in rows:
        status = "lost" if r["state"] == "accepted" else str(r["stripe_status"] or "")
        if status in NO_HOLD_STATUSES:
            continue
        ref = r["payment_intent"] if r["payment_intent"] in wanted else r["charge"]
        holds.append(DisputeHold(r["stripe_id"], ref, status, int(r["amount"]), r["currency"],
                                 bool(r["charge_refundable"])))
    return holds


async def flags_now(store: Store, quote: Quote) -> Quote:
    """A stored quote with its risk flags plus any dispute hold on its payments that came after
    it, so a card drawn again shows a dispute the quote did not know of."""
    flags = list(quote.risk_flags)
    known = {flag.reason for flag in flags}
    refs = [a.payment for a in quote.allocations if a.method == "stripe"]
    for hold in await holds_on(store, refs):
        if hold.reason not in known:
            flags.append(RiskFlag("payment_disputed", hold.reason))
    return replace(quote, risk_flags=tuple(flags))
