"""The Stripe stand-in's balance: balance transactions and automatic payouts, in Stripe's terms.

- A succeeded charge creates a `charge` transaction carrying Stripe's processing fee (2.9 % +
  30 cents by default, US card pricing; `fee_basis_points`, `fee_fixed`), `net = amount - fee`,
  available two days later (`available_after`).
- A refund creates a `refund` transaction: `amount` negative, `fee` 0 and no `fee_details`,
  `net = amount`. Stripe does not return the processing fee of the refunded charge ("Stripe's
  processing fees from the original transaction won't be returned"), so that fee stays on the
  charge's transaction and nothing of it comes back on the refund's. Available at once.
- A refund that fails creates its `refund_failure` transaction, the reversal: the refunded
  amount back (positive), fee 0, its `source` the refund (the refund's
  `failure_balance_transaction`).
- Automatic payouts, daily at 00:00 UTC (`automatic_payouts`, on by default): each pays out,
  per currency, every transaction available by then and not yet paid out, with a `payout`
  transaction of its own (minus the total); a total of zero waits for the next day. They are
  made when the balance is read (`run_payouts` makes them up to a time on demand), arrive two
  days later (`arrival_date`; `status` `in_transit`, then `paid`).
- `hold(refund_id)` keeps a refund's transaction out of every payout (the "missing from its
  payout" case); `release` lets it go into the next one.

Listing: `GET /v1/balance_transactions` with `payout`, `type`, `source`, `currency`,
`created`, `starting_after`/`ending_before`/`limit`, `expand[]` (`data.source` and deeper, as
`data.source.charge.balance_transaction`); `GET /v1/balance_transactions/{id}`;
`GET /v1/payouts` (`created`, `arrival_date`, `status`, paging) and `GET /v1/payouts/{id}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.stripe_objects import (
    BalanceTransaction,
    Charge,
    Payout,
    Refund,
    new_id,
    stripe_exponent,
)
from sandbox.stripe_params import Ordered, allow, invalid, list_page, missing, opt_str

DAY = 86_400
EXPAND_DEPTH = 4   # Stripe expands at most four levels deep
Resolve = Callable[[str], dict[str, Any] | None]   # an object's JSON by its id


class Balance:
    """The account's balance transactions and payouts."""

    def __init__(self, clock: Callable[[], float], *, fee_basis_points: int = 290,
                 fee_fixed: int = 30, available_after: int = 2 * DAY,
                 payout_arrival: int = 2 * DAY, automatic_payouts: bool = True) -> None:
        self.clock = clock
        self.fee_basis_points = fee_basis_points
        self.fee_fixed = fee_fixed   # in the minor units of a two-decimal currency
        self.available_after = available_after
        self.payout_arrival = payout_arrival
        self.automatic_payouts = automatic_payouts
        self.transactions: dict[str, BalanceTransaction] = {}
        self.payouts: dict[str, Payout] = {}
        self.held: set[str] = set()          # refund ids kept out of every payout
        self._by_source: dict[str, list[str]] = {}
        self._unpaid: dict[str, BalanceTransaction] = {}
        self._seq = 0
        self._moves = 0
        self._order = Ordered()
        self._payout_order = Ordered()
        self._views: dict[tuple[Any, ...], tuple[tuple[int, int], Ordered]] = {}

    # ---- what moves money --------------------------------------------------------------------

    def fee_of(self, amount: int, currency: str) -> int:
        """Stripe's processing fee on a charge: a percentage, rounded half up, plus a fixed
        part (none in a zero-decimal currency)."""
        places = stripe_exponent(currency)
        fixed = self.fee_fixed * 10 ** (places - 2) if places >= 2 else 0
        return (amount * self.fee_basis_points + 5_000) // 10_000 + fixed

    def charged(self, charge: Charge) -> BalanceTransaction:
        fee = self.fee_of(charge.amount, charge.currency)
        return self._add("charge", charge.amount, fee, charge.currency, charge.id,
                         charge.created, charge.created + self.available_after)

    def refunded(self, refund: Refund) -> BalanceTransaction:
        return self._add("refund", -refund.amount, 0, refund.currency, refund.id,
                         refund.created, refund.created)

    def refund_failed(self, refund: Refund) -> BalanceTransaction:
        now = int(self.clock())
        return self._add("refund_failure", refund.amount, 0, refund.currency, refund.id,
                         now, now)

    def moved(self, refund: Refund) -> None:
        """A refund moved in time (the server's `backdate`): its refund transaction with it."""
        for txn_id in self._by_source.get(refund.id, []):
            txn = self.transactions[txn_id]
            if txn.type == "refund" and txn.payout is None:
                txn.created = txn.available_on = refund.created
                self._moves += 1

    def hold(self, refund_id: str) -> None:
        """Keep this refund's transactions out of every payout from now on."""
        self.held.add(refund_id)

    def release(self, refund_id: str) -> None:
        self.held.discard(refund_id)

    def of_source(self, source_id: str) -> list[BalanceTransaction]:
        return [self.transactions[t] for t in self._by_source.get(source_id, [])]

    def run_payouts(self, until: int | None = None) -> list[Payout]:
        """The automatic daily payouts due by `until` (now by default), oldest first."""
        until = int(self.clock()) if until is None else until
        due: dict[int, list[BalanceTransaction]] = {}
        for txn in self._unpaid.values():
            if txn.source in self.held:
                continue
            boundary = -(-txn.available_on // DAY) * DAY
            if boundary <= until:
                due.setdefault(boundary, []).append(txn)
        made: list[Payout] = []
        carried: dict[str, list[BalanceTransaction]] = {}
        for boundary in sorted(due):
            for txn in sorted(due[boundary], key=lambda t: (t.created, t.seq)):
                carried.setdefault(txn.currency, []).append(txn)
            for currency in sorted(carried):
                items = carried[currency]
                total = sum(t.net for t in items)
                if total == 0:
                    continue   # nothing to pay: they wait for the next day
                made.append(self._payout(items, total, currency, boundary))
                carried[currency] = []
        return made

    def _payout(self, items: list[BalanceTransaction], total: int, currency: str,
                at: int) -> Payout:
        payout_id = new_id("po_")
        txn = self._add("payout", -total, 0, currency, payout_id, at, at, paid=False)
        self._seq += 1
        payout = Payout(id=payout_id, amount=total, currency=currency, created=at,
                        arrival_date=at + self.payout_arrival, seq=self._seq,
                        balance_transaction=txn.id)
        self.payouts[payout_id] = payout
        for item in [*items, txn]:
            item.payout = payout_id
            self._unpaid.pop(item.id, None)
        self._moves += 1
        return payout

    def _add(self, kind: str, amount: int, fee: int, currency: str, source: str,
             created: int, available_on: int, *, paid: bool = True) -> BalanceTransaction:
        self._seq += 1
        txn = BalanceTransaction(id=new_id("txn_"), type=kind, amount=amount, fee=fee,
                                 currency=currency, source=source, created=created,
                                 available_on=available_on, seq=self._seq)
        self.transactions[txn.id] = txn
        self._by_source.setdefault(source, []).append(txn.id)
        if paid:
            self._unpaid[txn.id] = txn
        return txn

    # ---- the API -----------------------------------------------------------------------------

    def catch_up(self) -> None:
        if self.automatic_payouts:
            self.run_payouts()

    def list_transactions(self, p: dict[str, Any], resolve: Resolve) -> dict[str, Any]:
        allow(p, {"payout", "type", "source", "currency", "created", "limit", "starting_after",
                  "ending_before", "expand"})
        self.catch_up()
        payout = opt_str(p, "payout")
        kind = opt_str(p, "type")
        source = opt_str(p, "source")
        currency = (opt_str(p, "currency") or "").lower() or None
        if payout is not None and payout not in self.payouts:
            raise missing("payout", payout, "payout")
        ordered = self._view(payout, kind, source, currency)
        page = list_page(ordered, self.transactions, p, "/v1/balance_transactions",
                         "balance_transaction")
        now = int(self.clock())
        page["data"] = [self._json(self.transactions[d["id"]], now) for d in page["data"]]
        expand_all(page, _paths(p), resolve)
        return page

    def get_transaction(self, txn_id: str, p: dict[str, Any], resolve: Resolve
                        ) -> dict[str, Any]:
        allow(p, {"expand"})
        self.catch_up()
        txn = self.transactions.get(txn_id)
        if txn is None:
            raise missing("balance_transaction", txn_id, "id")
        body = self._json(txn, int(self.clock()))
        expand_all(body, _paths(p), resolve)
        return body

    def list_payouts(self, p: dict[str, Any]) -> dict[str, Any]:
        allow(p, {"created", "arrival_date", "status", "destination", "limit",
                  "starting_after", "ending_before", "expand"})
        self.catch_up()
        now = int(self.clock())
        status = opt_str(p, "status")
        ordered = self._payout_order.of(self.payouts.values(), self._moves)
        if status is not None or p.get("arrival_date") is not None:
            arrival = _arrival_range(p)
            ordered = Ordered.fresh([
                po for po in ordered.rows if isinstance(po, Payout)
                and (status is None or po.to_json(now)["status"] == status)
                and arrival[0] <= po.arrival_date <= arrival[1]])
        page = list_page(ordered, self.payouts, p, "/v1/payouts", "payout")
        page["data"] = [self.payouts[d["id"]].to_json(now) for d in page["data"]]
        return page

    def get_payout(self, payout_id: str) -> dict[str, Any]:
        self.catch_up()
        payout = self.payouts.get(payout_id)
        if payout is None:
            raise missing("payout", payout_id, "id")
        return payout.to_json(int(self.clock()))

    def json_of(self, object_id: str) -> dict[str, Any] | None:
        if object_id in self.transactions:
            return self._json(self.transactions[object_id], int(self.clock()))
        if object_id in self.payouts:
            return self.payouts[object_id].to_json(int(self.clock()))
        return None

    def _json(self, txn: BalanceTransaction, now: int) -> dict[str, Any]:
        return txn.to_json(now)

    def _view(self, payout: str | None, kind: str | None, source: str | None,
              currency: str | None) -> Ordered:
        """The transactions a filter keeps, oldest first, sorted again only when the balance
        changed (a page of a long listing costs a few binary searches)."""
        stamp = (len(self.transactions), self._moves)
        if payout is kind is source is currency is None:
            return self._order.of(self.transactions.values(), self._moves)
        key = (payout, kind, source, currency)
        cached = self._views.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        pool = (self.of_source(source) if source is not None
                else list(self.transactions.values()))
        view = Ordered.fresh([
            t for t in pool if (payout is None or t.payout == payout)
            and (kind is None or t.type == kind) and (currency is None or t.currency == currency)])
        if len(self._views) > 64:
            self._views.clear()
        self._views[key] = (stamp, view)
        return view


def _paths(p: dict[str, Any]) -> list[str]:
    value = p.get("expand")
    if value is None:
        return []
    paths = value if isinstance(value, list) else [value]
    if not all(isinstance(path, str) for path in paths):
        raise invalid("Invalid array", "expand")
    for path in paths:
        if len(path.split(".")) > EXPAND_DEPTH:
            raise invalid(f"You cannot expand more than {EXPAND_DEPTH} levels of a property. "
                          f"Property: {path}", "expand")
    return paths


def expand_all(body: dict[str, Any], paths: list[str], resolve: Resolve) -> None:
    """Replace ids by their objects along each `expand[]` path (`data.` walks a list)."""
    for path in paths:
        _expand(body, path.split("."), resolve, path)


def _expand(node: Any, parts: list[str], resolve: Resolve, path: str) -> None:
    if not parts or not isinstance(node, dict):
        return
    head, rest = parts[0], parts[1:]
    if head == "data" and node.get("object") == "list":
        for item in node.get("data", []):
            _expand(item, rest, resolve, path)
        return
    if head not in node:
        raise invalid(f"This property cannot be expanded ({path}).", "expand")
    value = node[head]
    if isinstance(value, str):
        found = resolve(value)
        if found is None:
            raise invalid(f"This property cannot be expanded ({path}).", "expand")
        node[head] = value = found
    _expand(value, rest, resolve, path)


def _arrival_range(p: dict[str, Any]) -> tuple[int, int]:
    raw = p.get("arrival_date")
    if raw is None:
        return -(2 ** 62), 2 ** 62
    low, high = -(2 ** 62), 2 ** 62
    bounds = raw if isinstance(raw, dict) else {"eq": raw}
    for op, value in bounds.items():
        if not isinstance(value, str) or not value.lstrip("-").isdigit():
            raise invalid(f"Invalid integer: {value}", f"arrival_date[{op}]")
        v = int(value)
        if op in ("gt", "gte", "eq"):
            low = max(low, v + 1 if op == "gt" else v)
        if op in ("lt", "lte", "eq"):
            high = min(high, v - 1 if op == "lt" else v)
        if op not in ("gt", "gte", "lt", "lte", "eq"):
            raise invalid(f"Received unknown parameter: arrival_date[{op}]",
                          f"arrival_date[{op}]")
    return low, high
