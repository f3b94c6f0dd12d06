"""Settlement-level reconciliation: each refund of the day matched to its Stripe balance
transaction and to the automatic payout that carried it, Stripe's `refund_failure` reversals
matched to the failed refunds of our ledger, and the fees the day's refunds cost.

A pass of the daily reconciliation (`reconcile_day(..., settle=True)`), read-only at Stripe:

- The day's refund transactions, one listing (`type=refund`, the day's window, pages of 100)
  expanded to the refund, its charge and the charge's own transaction: the refund's `fee` and
  `net` (Stripe takes no fee on a refund under standard pricing and returns none: the
  processing fee of the refunded charge stays with Stripe) and that charge's fee. The fees
  lost to the day's refunds are the kept processing fees of the charges first refunded that
  day (a charge refunded in parts on several days counts once, on its first) plus any fee on
  the refunds' own transactions.
- The day's `refund_failure` transactions (the reversal of a refund that failed, its source
  the refund): matched when our ledger records that refund as failed; otherwise an
  `unmatched_refund_failure` (an error when the ledger holds the refund as not failed,
  informational when the refund was made outside the bot).
- Payouts: every refund still in no payout (the day's and those of the last
  `UNPAID_LOOKBACK`) is looked for in the automatic payouts created since the oldest of them,
  oldest payout first, listing each payout's refund transactions (`payout=po_...`,
  `type=refund`) until all are found: a few pages a payout instead of one call per refund.
  A refund older than the payout delay (`PAYOUT_DELAY_DAYS`, 7 by default) in no payout is a
  `missing_from_payout`; once a later run finds it in a payout the problem is resolved.

What it read is kept in `settlement_refunds` (one row per refund: transaction, fee, charge fee,
payout) and the day's figures in `settlement_days` (`runs.SettlementFigures`), written in the
run's own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.clients.stripe_balance import REFUND_EXPANSION
from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_gateway import StripeGateway
from services.finance.runs import (
    MISSING_FROM_PAYOUT,
    UNMATCHED_REFUND_FAILURE,
    Discrepancy,
    SettlementFigures,
)
from services.money import display
from services.refunds import ledger
from services.refunds.ledger import ExecutionStatus, ExecutionWithBooking
from services.store.db import Store, iso_utc

PAYOUT_DELAY = timedelta(days=7)
UNPAID_LOOKBACK = timedelta(days=45)   # how far back refunds in no payout are followed
FAILED_STATUSES = ("failed", "canceled")
CHUNK = 500


@dataclass
class RefundSettlement:
    """One refund's balance transaction, the fee its charge kept, and its payout once seen."""

    refund_id: str
    day: str
    txn_id: str
    currency: str
    amount: int            # refunded, minor units, positive
    fee: int               # on the refund's own transaction
    net: int               # the transaction's net, negative
    charge_id: str | None
    charge_fee: int | None
    refund_status: str | None
    created_at: str
    payout_id: str | None = None
    payout_arrival: str | None = None


@dataclass
class Found:
    """A settlement problem, in the terms `reconcile` records discrepancies in."""

    kind: str
    subject: str
    detail: str
    error: bool
    fields: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}"


@dataclass
class Settlement:
    """What one settlement pass found: figures by currency, problems, and the rows to keep."""

    figures: dict[str, SettlementFigures] = field(default_factory=dict)
    found: list[Found] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: list[RefundSettlement] = field(default_factory=list)      # the day's refunds
    paid: dict[str, tuple[str, str]] = field(default_factory=dict)  # refund -> payout, arrival
    failures_matched: set[str] = field(default_factory=set)         # refund ids
    payouts_read: int = 0

    def per(self, currency: str) -> SettlementFigures:
        return self.figures.setdefault(currency, SettlementFigures())

    async def write(self, tx: Any) -> None:
        """Keep the day's refund rows and the payouts found (inside the run's transaction)."""
        for r in self.rows:
            await tx.execute(
                "INSERT INTO settlement_refunds (refund_id, day, txn_id, currency, amount, fee, "
                "net, charge_id, charge_fee, refund_status, created_at, payout_id, "
                "payout_arrival) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (refund_id) DO UPDATE SET day = excluded.day, "
                "txn_id = excluded.txn_id, currency = excluded.currency, "
                "amount = excluded.amount, fee = excluded.fee, net = excluded.net, "
                "charge_id = excluded.charge_id, charge_fee = excluded.charge_fee, "
                "refund_status = excluded.refund_status, created_at = excluded.created_at, "
                "payout_id = COALESCE(excluded.payout_id, settlement_refunds.payout_id), "
                "payout_arrival = COALESCE(excluded.payout_arrival, "
                "settlement_refunds.payout_arrival)",
                (r.refund_id, r.day, r.txn_id, r.currency, r.amount, r.fee, r.net, r.charge_id,
                 r.charge_fee, r.refund_status, r.created_at, r.payout_id, r.payout_arrival))
        mine = {r.refund_id for r in self.rows}
        for refund_id, (payout_id, arrival) in sorted(self.paid.items()):
            if refund_id not in mine:
                await tx.execute(
                    "UPDATE settlement_refunds SET payout_id = ?, payout_arrival = ? "
                    "WHERE refund_id = ?", (payout_id, arrival, refund_id))


async def settle_day(stripe: StripeGateway, store: Store, day: date,
                     window: tuple[datetime, datetime], now: datetime, *,
                     payout_delay: timedelta = PAYOUT_DELAY) -> Settlement:
    """The settlement pass of one business day's run (nothing is written here: the caller
    stores `Settlement.write` and the figures with the run)."""
    out = Settlement()
    lo, hi = (int(moment.timestamp()) for moment in window)
    try:
        await _refunds_of_day(stripe, store, day, lo, hi, out)
        await _failures_of_day(stripe, store, lo, hi, out)
        await _payouts(stripe, store, day, now, payout_delay, out)
    except StripeGatewayError as exc:
        out.figures = {}
        out.found = []
        out.rows = []
        out.paid = {}
        out.notes.append(f"settlement was not checked: Stripe's balance could not be read "
                         f"({exc.kind})")
    return out


async def _refunds_of_day(stripe: StripeGateway, store: Store, day: date, lo: int, hi: int,
                          out: Settlement) -> None:
    no_fee = 0
    async for txn in stripe.iter_balance_transactions(
            type="refund", created_gte=lo, created_lt=hi, expand=REFUND_EXPANSION):
        if txn.source is None:
            continue
        if txn.charge_fee is None:
            no_fee += 1
        out.rows.append(RefundSettlement(
            refund_id=txn.source, day=day.isoformat(), txn_id=txn.id, currency=txn.currency,
            amount=-txn.amount, fee=txn.fee, net=txn.net, charge_id=txn.charge,
            charge_fee=txn.charge_fee, refund_status=txn.source_status,
            created_at=iso_utc(datetime.fromtimestamp(txn.created, UTC))))
    earlier = await _charges_refunded_before(store, day, [r.charge_id for r in out.rows
                                                          if r.charge_id])
    counted: set[str] = set()
    for r in out.rows:
        per = out.per(r.currency)
        per.refunds += 1
        per.refunded += r.amount
        per.refund_fees += r.fee
        charge = r.charge_id
        if charge and charge not in earlier and charge not in counted and r.charge_fee:
            counted.add(charge)
            per.fees_kept += r.charge_fee
    if no_fee:
        out.notes.append(f"the processing fee of {no_fee} refunded charge(s) could not be read "
                         "from Stripe; fees lost leave them out")


async def _charges_refunded_before(store: Store, day: date, charges: list[str]) -> set[str]:
    """Charges of which a refund was settled on an earlier day: their fee was counted then."""
    found: set[str] = set()
    unique = sorted(set(charges))
    for n in range(0, len(unique), CHUNK):
        chunk = unique[n:n + CHUNK]
        marks = ",".join("?" for _ in chunk)
        rows = await store.fetch_all(
            f"SELECT DISTINCT charge_id FROM settlement_refunds WHERE charge_id IN ({marks}) "
            "AND day < ?", (*chunk, day.isoformat()))
        found.update(str(r["charge_id"]) for r in rows)
    return found


async def _failures_of_day(stripe: StripeGateway, store: Store, lo: int, hi: int,
                           out: Settlement) -> None:
    reversals = [txn async for txn in stripe.iter_balance_transactions(
        type="refund_failure", created_gte=lo, created_lt=hi)]
    rows = await _ledger_rows(store, [t.source for t in reversals if t.source])
    for txn in reversals:
        per = out.per(txn.currency)
        per.failures += 1
        per.failures_amount += txn.amount
        row = rows.get(txn.source or "")
        if row is not None and row.status == ExecutionStatus.FAILED:
            out.failures_matched.add(str(txn.source))
            continue
        per.unmatched_failures += 1
        what = f"Stripe reversed refund {txn.source} ({display(txn.amount, txn.currency)}): " \
            "it failed"
        if row is None:
            detail = f"{what}; the refund was made outside the bot"
        else:
            detail = f"{what}, but our ledger records it as {row.status}"
        out.found.append(Found(UNMATCHED_REFUND_FAILURE, txn.id, detail, row is not None,
                               _fields(row, txn.source, txn.amount, txn.currency)))


async def _payouts(stripe: StripeGateway, store: Store, day: date, now: datetime,
                   delay: timedelta, out: Settlement) -> None:
    """Find the payout of every refund still in none; report those past the delay."""
    waiting: dict[str, RefundSettlement] = {r.refund_id: r for r in out.rows}
    for r in await _unpaid(store, day, now - UNPAID_LOOKBACK):
        waiting.setdefault(r.refund_id, r)
    if not waiting:
        return
    oldest = min(datetime.fromisoformat(r.created_at) for r in waiting.values())
    payouts = [po async for po in stripe.iter_payouts(created_gte=int(oldest.timestamp()))]
    for payout in sorted(payouts, key=lambda po: (po.created, po.id)):
        if not waiting:
            break
        out.payouts_read += 1
        arrival = iso_utc(datetime.fromtimestamp(payout.arrival_date, UTC))
        async for txn in stripe.iter_balance_transactions(payout=payout.id, type="refund"):
            r = waiting.pop(txn.source or "", None)
            if r is not None:
                r.payout_id, r.payout_arrival = payout.id, arrival
                out.paid[r.refund_id] = (payout.id, arrival)
    for r in out.rows:
        if r.payout_id is not None:
            out.per(r.currency).in_payout += 1
    due = now - delay
    late = [r for r in waiting.values() if datetime.fromisoformat(r.created_at) < due
            and r.refund_status not in FAILED_STATUSES]
    rows = await _ledger_rows(store, [r.refund_id for r in late])
    for r in sorted(late, key=lambda r: (r.created_at, r.refund_id)):
        per = out.per(r.currency)
        per.missing_from_payout += 1
        per.missing_amount += r.amount
        days = (now - datetime.fromisoformat(r.created_at)).days
        out.found.append(Found(
            MISSING_FROM_PAYOUT, r.refund_id,
            f"refund {r.refund_id} of {display(r.amount, r.currency)} (refunded {r.day}) is in "
            f"no Stripe payout after {days} days; payouts usually carry it within "
            f"{_days(delay)}", True, _fields(rows.get(r.refund_id), r.refund_id, r.amount,
                                             r.currency)))


async def _unpaid(store: Store, day: date, since: datetime) -> list[RefundSettlement]:
    rows = await store.fetch_all(
        "SELECT * FROM settlement_refunds WHERE payout_id IS NULL AND created_at >= ? "
        "AND day != ? ORDER BY created_at", (iso_utc(since), day.isoformat()))
    return [RefundSettlement(
        refund_id=r["refund_id"], day=r["day"], txn_id=r["txn_id"], currency=r["currency"],
        amount=int(r["amount"]), fee=int(r["fee"]), net=int(r["net"]),
        charge_id=r["charge_id"], charge_fee=r["charge_fee"], refund_status=r["refund_status"],
        created_at=r["created_at"]) for r in rows]


async def _ledger_rows(store: Store, refund_ids: list[str]) -> dict[str, ExecutionWithBooking]:
    found: dict[str, ExecutionWithBooking] = {}
    for n in range(0, len(refund_ids), CHUNK):
        found.update(await ledger.rows_with_refund_ids(store, refund_ids[n:n + CHUNK]))
    return found


def _fields(row: ExecutionWithBooking | None, refund_id: str | None, amount: int,
            currency: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"amount": amount, "currency": currency, "refund_id": refund_id}
    if row is not None:
        fields.update(booking_code=row.booking_code, execution_id=row.id, case_id=row.case_id,
                      payment_ref=row.payment_ref)
    return fields


def _days(delay: timedelta) -> str:
    days = delay.total_seconds() / 86_400
    return f"{days:g} day{'' if days == 1 else 's'}"


async def still_open(store: Store, old: Discrepancy, settled: Settlement | None) -> bool | None:
    """Whether a settlement problem of an earlier day still stands (None: resolved)."""
    refund_id = old.refund_id or ""
    if old.kind == MISSING_FROM_PAYOUT:
        if settled is not None and refund_id in settled.paid:
            return None
        row = await store.fetch_one(
            "SELECT payout_id FROM settlement_refunds WHERE refund_id = ?", (refund_id,))
        return None if row is not None and row["payout_id"] else True
    if old.kind == UNMATCHED_REFUND_FAILURE:
        rows = await ledger.rows_with_refund_ids(store, [refund_id]) if refund_id else {}
        row = rows.get(refund_id)
        return None if row is not None and row.status == ExecutionStatus.FAILED else True
    return True
