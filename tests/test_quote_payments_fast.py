"""`BookingSnapshot.unrefunded`'s short path for one or two payments and no refund, against
the general pass it stands for (sort newest first, then take each refund from its payment):
same pairs in the same order, for equal dates, equal ids and any order given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from operator import attrgetter

from hypothesis import given
from hypothesis import strategies as st

from services.quoting.booking import BookingSnapshot, Transaction
from services.quoting.frozen import frozen_new

BASE = datetime(2026, 11, 1, tzinfo=UTC)


def reference(transactions: tuple[Transaction, ...]) -> list[tuple[Transaction, int]]:
    """The general pass of `unrefunded` for transactions without refunds."""
    paid = sorted([t for t in transactions if t.status == "PAID"],
                  key=attrgetter("date", "id"), reverse=True)
    left = {t.id: t.amount for t in paid}
    return [(t, left[t.id]) for t in paid]


def snapshot_of(transactions: tuple[Transaction, ...]) -> BookingSnapshot:
    return frozen_new(BookingSnapshot, booking_id="1", code="C", status="STOP",
                      currency="USD", created_at=None, customer_name="",
                      customer_email="", customer_email_hash="", order_total=0,
                      paid_total=0, lines=(), transactions=transactions, fingerprint="")


payment = st.builds(
    lambda tid, hours, amount, status: Transaction(
        id=tid, date=BASE + timedelta(hours=hours), status=status, amount=amount,
        gateway="Stripe"),
    st.sampled_from(["pi_a", "pi_b", "ch_c"]), st.integers(0, 2),
    st.integers(0, 10_000), st.sampled_from(["PAID", "PAID", "PENDING"]))


@given(st.lists(payment, max_size=3))
def test_one_or_two_payments_are_paired_as_the_general_pass_pairs_them(
        listed: list[Transaction]) -> None:
    transactions = tuple(listed)
    pairs, paid, refunded = snapshot_of(transactions).unrefunded()
    want = reference(transactions)
    assert [(id(t), left) for t, left in pairs] == [(id(t), left) for t, left in want]
    assert paid == sum(t.amount for t in transactions if t.status == "PAID")
    assert refunded == 0


def test_equal_dates_keep_the_order_given_and_equal_ids_take_the_general_pass() -> None:
    a = Transaction(id="pi_a", date=BASE, status="PAID", amount=100, gateway="Stripe")
    b = Transaction(id="pi_a", date=BASE, status="PAID", amount=250, gateway="Stripe")
    c = Transaction(id="pi_b", date=BASE, status="PAID", amount=300, gateway="Stripe")
    pairs, _, _ = snapshot_of((a, b)).unrefunded()
    assert [left for _, left in pairs] == [250, 250]  # one id twice: the general pass's answer
    pairs, _, _ = snapshot_of((c, a)).unrefunded()
    assert [t.id for t, _ in pairs] == ["pi_b", "pi_a"]  # newest first, then by id descending
