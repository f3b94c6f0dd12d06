"""The booking snapshot: a Checkfront booking, its lines and its payments, as the quote reads
them, with the payment facts a quote needs (what was paid, refunded, and what is left of each
payment, newest first).

Snapshots are read from Checkfront's booking webhook shape by `services.quoting.booking_read`
(`parse_snapshot`) and `services.quoting.booking_checked` (`parse_checked`); this module
holds only what a snapshot is, so code that passes snapshots around imports it alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter

from services.errors import DomainError
from services.privacy import customer_hash
from services.quoting.frozen import computed_once, frozen_new

STRIPE_PREFIXES = ("pi_", "ch_")

__all__ = ["STRIPE_PREFIXES", "BookingLine", "BookingSnapshot", "Payment", "SnapshotError",
           "Transaction", "epoch_micros"]


class SnapshotError(DomainError, ValueError):
    """A booking snapshot that lacks what a quote needs, or holds an unreadable value."""


@dataclass(frozen=True)
class BookingLine:
    line_id: str
    item_id: str
    sku: str
    name: str
    start: datetime
    total: int  # minor units, tax included (as Checkfront sends it)
    tax: int
    qty: int
    status: str

    @property
    def amount_excl_tax(self) -> int:
        return self.total - self.tax

    @computed_once
    def start_iso(self) -> str:
        """`start.isoformat()`, written once (the fingerprint and every quote line read it);
        not a field: equality, `fields` and `replace` do not see it."""
        return self.start.isoformat()

    @computed_once
    def _start_us(self) -> int:
        """`start` as whole microseconds since the unix epoch, exactly: notice is the
        difference of two of these (the usual reader fills it from the unix seconds)."""
        return epoch_micros(self.start)


@dataclass(frozen=True)
class Transaction:
    id: str
    date: datetime
    status: str  # PAID | REFUND | anything else Checkfront sends (ignored for money)
    amount: int  # minor units, positive for refunds too
    gateway: str
    original_id: str | None = None

    @property
    def is_stripe(self) -> bool:
        return self.gateway.strip().casefold() == "stripe" and self.id.startswith(STRIPE_PREFIXES)


@dataclass(frozen=True)
class Payment:
    """A PAID transaction with what is left of it after the refunds that reduce it."""

    transaction: Transaction
    unrefunded: int

    @property
    def refundable_via_stripe(self) -> bool:
        return self.transaction.is_stripe


@dataclass(frozen=True)
class BookingSnapshot:
    booking_id: str
    code: str
    status: str
    currency: str
    created_at: datetime | None
    customer_name: str
    customer_email: str
    customer_email_hash: str  # a stored snapshot keeps the salted hash instead of the email
    order_total: int
    paid_total: int
    lines: tuple[BookingLine, ...]
    transactions: tuple[Transaction, ...] | None  # None: Checkfront told us nothing about payments
    fingerprint: str

    @property
    def customer_first_name(self) -> str:
        return self.customer_name.split()[0] if self.customer_name.strip() else ""

    @computed_once
    def _plain(self) -> bool:
        """Whether every text a quote copies from the snapshot (its ids, currency,
        fingerprint, lines' ids, skus, names and starts, transactions' ids) is a plain `str`,
        as the readers make them (the usual reader says so itself; one built by hand may hold
        anything): then the quote's canonical JSON may be written by `canonical.plain_json`.
        Not a field: equality, `fields` and `replace` do not see it."""
        text = str
        return (type(self.booking_id) is text and type(self.code) is text
                and type(self.currency) is text and type(self.fingerprint) is text
                and all([type(ln.line_id) is text and type(ln.sku) is text
                         and type(ln.name) is text and type(ln.start_iso) is text
                         for ln in self.lines])
                and all([type(t.id) is text for t in self.transactions or ()]))

    def customer_key(self, salt: str) -> str | None:
        """The customer's salted email hash: from the email, else the one the (stored,
        scrubbed) snapshot kept; None when it has neither."""
        return customer_hash(self.customer_email, salt) or self.customer_email_hash or None

    @property
    def paid(self) -> int:
        if self.transactions is None:
            return self.paid_total
        return sum(t.amount for t in self.transactions if t.status == "PAID")

    @property
    def already_refunded(self) -> int:
        if self.transactions is None:
            return 0
        return sum(t.amount for t in self.transactions if t.status == "REFUND")

    @property
    def net_paid(self) -> int:
        return self.paid - self.already_refunded

    def payments(self) -> list[Payment]:
        """PAID transactions, newest first, each less the refunds that reduce it.

        A refund naming its payment in `original_transaction_id` reduces that one; the others
        reduce the newest payments first.
        """
        return [frozen_new(Payment, transaction=t, unrefunded=left)
                for t, left in self.unrefunded()[0]]

    def unrefunded(self) -> tuple[list[tuple[Transaction, int]], int, int]:
        """`payments()` as (transaction, unrefunded) pairs, with `paid` and `already_refunded`,
        in one pass over the transactions (a quote reads all three)."""
        transactions = self.transactions
        if transactions is None:
            return [], self.paid_total, 0
        paid: list[Transaction] = []
        refunds: list[Transaction] = []
        paid_sum = refunded = 0
        for t in transactions:
            if t.status == "PAID":
                paid.append(t)
                paid_sum += t.amount
            elif t.status == "REFUND":
                refunds.append(t)
                refunded += t.amount
        count = len(paid)
        if not refunds and count <= 2:  # the usual booking: one or two payments, no refund
            if count == 2:
                first, second = paid
                if first.id != second.id:  # no id twice: all of each is left
                    # `sort(key=_NEWEST, reverse=True)` of two: stable, equal keys keep order
                    if (first.date, first.id) < (second.date, second.id):
                        first, second = second, first
                    return [(first, first.amount), (second, second.amount)], paid_sum, 0
            else:
                return [(t, t.amount) for t in paid], paid_sum, 0
        paid.sort(key=_NEWEST, reverse=True)
        left = {t.id: t.amount for t in paid}
        if not refunds and len(left) == len(paid):  # nothing refunded, no id twice: all left
            return [(t, t.amount) for t in paid], paid_sum, 0
        unattributed = 0
        for refund in refunds:
            if refund.original_id in left:
                taken = min(left[refund.original_id], refund.amount)
                left[refund.original_id] -= taken
                unattributed += refund.amount - taken
            else:
                unattributed += refund.amount
        pairs = []
        for t in paid:
            taken = min(left[t.id], unattributed)
            left[t.id] -= taken
            unattributed -= taken
            pairs.append((t, left[t.id]))
        return pairs, paid_sum, refunded


_NEWEST = attrgetter("date", "id")  # a payment's (date, id): newest first, then by id


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_micros(moment: datetime) -> int:
    """Microseconds from the unix epoch to an aware datetime, exactly (timedelta's own
    integers; `timestamp()` is a float)."""
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
