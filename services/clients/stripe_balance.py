"""What Stripe's balance transactions and payouts read as in the project's terms: frozen records,
amounts in project minor units (signed as Stripe signs them: a refund's and a payout's
transaction are negative), currencies in upper case.

A refund's balance transaction listed with `expand[]=data.source.charge.balance_transaction`
brings its refund, that refund's charge and the charge's own transaction in the same page: the
record keeps the charge id and the processing fee Stripe took on it (`charge_fee`), the fee a
refund does not return.

`balance_transactions` and `payouts` list them page by page through a read the gateway gives
(`StripeGateway._get`: paced, retried, plain JSON through the official client), one page ahead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_money import checked_currency, from_stripe_amount
from services.clients.stripe_records import ref_id

T = TypeVar("T")
Get = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]  # path, query -> JSON object

# what a refund's transaction is listed with: the refund, its charge and the charge's fee
REFUND_EXPANSION = ("data.source.charge.balance_transaction",)


@dataclass(frozen=True)
class StripeBalanceTransaction:
    id: str
    type: str                 # charge | refund | refund_failure | payout | stripe_fee ...
    amount: int               # project minor units, signed
    fee: int
    net: int
    currency: str             # upper case
    status: str               # pending | available
    source: str | None        # the object it is for (re_..., ch_..., po_...)
    created: int
    available_on: int
    reporting_category: str
    source_status: str | None = None   # the refund's status, when `source` came expanded
    charge: str | None = None          # a refund's charge, when `source` came expanded
    charge_fee: int | None = None      # that charge's processing fee, when expanded so far


@dataclass(frozen=True)
class StripePayout:
    id: str
    amount: int               # project minor units
    currency: str
    status: str               # pending | in_transit | paid | failed | canceled
    created: int
    arrival_date: int
    automatic: bool


class _Scales:
    """Stripe's currency -> (ours, divisor to project minor units), each looked up once: a page
    holds a currency or two."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, int]] = {}

    def of(self, raw: Any) -> tuple[str, int]:
        known = self._known.get(raw)
        if known is None:
            code = checked_currency(str(raw).upper())
            known = self._known[raw] = (code, 10 ** 9 // from_stripe_amount(10 ** 9, code))
        return known


def _minor(amount: Any, divisor: int) -> int:
    value = int(amount)
    return value // divisor if value >= 0 else -(-value // divisor)


def balance_transaction_from(data: Mapping[str, Any],
                             scales: _Scales | None = None) -> StripeBalanceTransaction:
    scales = scales or _Scales()
    currency, divisor = scales.of(data["currency"])
    source = data.get("source")
    source_status = charge = charge_fee = None
    if isinstance(source, Mapping):
        source_status = source.get("status")
        charge_obj = source.get("charge")
        charge = ref_id(charge_obj)
        if isinstance(charge_obj, Mapping):
            txn = charge_obj.get("balance_transaction")
            if isinstance(txn, Mapping):
                charge_fee = _minor(txn.get("fee") or 0,
                                    scales.of(txn.get("currency") or data["currency"])[1])
    return StripeBalanceTransaction(
        id=str(data["id"]), type=str(data.get("type") or ""),
        amount=_minor(data["amount"], divisor), fee=_minor(data.get("fee") or 0, divisor),
        net=_minor(data["net"], divisor), currency=currency,
        status=str(data.get("status") or "pending"), source=ref_id(source),
        created=int(data["created"]), available_on=int(data.get("available_on") or 0),
        reporting_category=str(data.get("reporting_category") or ""),
        source_status=str(source_status) if source_status else None, charge=charge,
        charge_fee=charge_fee)


def balance_transactions_from(items: list[Mapping[str, Any]]) -> list[StripeBalanceTransaction]:
    """A list page's balance transactions as records."""
    scales = _Scales()
    return [balance_transaction_from(item, scales) for item in items]


def payout_from(data: Mapping[str, Any]) -> StripePayout:
    currency, divisor = _Scales().of(data["currency"])
    return StripePayout(
        id=str(data["id"]), amount=_minor(data["amount"], divisor), currency=currency,
        status=str(data.get("status") or ""), created=int(data["created"]),
        arrival_date=int(data.get("arrival_date") or 0),
        automatic=bool(data.get("automatic")))


def payouts_from(items: list[Mapping[str, Any]]) -> list[StripePayout]:
    return [payout_from(item) for item in items]


def list_items(page: Any) -> tuple[list[Mapping[str, Any]], bool]:
    """A list page's items and whether Stripe has more after them."""
    if not isinstance(page, Mapping) or page.get("object") != "list" \
            or not isinstance(page.get("data"), list):
        raise StripeGatewayError("unavailable", "Stripe's answer to a listing is not a list")
    return list(page["data"]), bool(page.get("has_more"))


async def balance_transactions(
    get: Get, *, type: str | None = None, payout: str | None = None,
    source: str | None = None, created_gte: int | None = None,
    created_lt: int | None = None, expand: Sequence[str] = (), page_size: int = 100,
) -> AsyncIterator[StripeBalanceTransaction]:
    """Balance transactions, newest first, page by page (`GET /v1/balance_transactions`):
    of one `type`, one automatic `payout`, one `source`, created in [gte, lt)."""
    params: dict[str, Any] = {"limit": page_size}
    for name, value in (("type", type), ("payout", payout), ("source", source)):
        if value is not None:
            params[name] = value
    created = {k: v for k, v in (("gte", created_gte), ("lt", created_lt)) if v is not None}
    if created:
        params["created"] = created
    if expand:
        params["expand"] = list(expand)
    async for txn in listed(get, "/v1/balance_transactions", params,
                            balance_transactions_from):
        yield txn


async def payouts(get: Get, *, created_gte: int | None = None, created_lt: int | None = None,
                  page_size: int = 100) -> AsyncIterator[StripePayout]:
    """Payouts, newest first, page by page (`GET /v1/payouts`), created in [gte, lt)."""
    params: dict[str, Any] = {"limit": page_size}
    created = {k: v for k, v in (("gte", created_gte), ("lt", created_lt)) if v is not None}
    if created:
        params["created"] = created
    async for payout in listed(get, "/v1/payouts", params, payouts_from):
        yield payout


async def listed(get: Get, path: str, params: Mapping[str, Any],
                 read: Callable[[list[Mapping[str, Any]]], list[T]]) -> AsyncIterator[T]:
    """Every item of a list endpoint as records (`read` takes a page's items), each page read
    through `get` one page ahead: the next page, after the last item of this one, is asked for
    before this one is read and handed over."""
    if not 1 <= int(params.get("limit", 100)) <= 100:
        raise StripeGatewayError("invalid", "page_size must be 1..100")
    query = dict(params)
    ahead: asyncio.Future[dict[str, Any]] | None = asyncio.ensure_future(get(path, dict(query)))
    try:
        while ahead is not None:
            items, has_more = list_items(await ahead)
            ahead = None
            if has_more and items:
                query["starting_after"] = str(items[-1]["id"])
                ahead = asyncio.ensure_future(get(path, dict(query)))
            for record in read(items):
                yield record
    finally:
        if ahead is not None:
            ahead.cancel()
