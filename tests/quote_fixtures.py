"""Builders for booking snapshot dicts and policy dicts, shared by the quote tests.

Snapshots follow Checkfront's booking webhook shape (item `total` includes `tax_total`);
amounts are decimal strings in major units, times are unix seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.quoting.booking_read import parse_snapshot
from services.quoting.engine import build_quote
from services.quoting.policy import parse_policies
from services.quoting.quote import Quote, RiskFlag

CANCELLED_AT = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
STANDARD_TIERS: tuple[tuple[int | str, int | str], ...] = ((48, 100), (24, 50), (0, 0))


def unix(moment: datetime) -> str:
    """Unix seconds as Checkfront sends them (a string)."""
    return str(int(moment.timestamp()))


def notice(hours: int | str | Decimal, cancelled_at: datetime = CANCELLED_AT) -> datetime:
    """The start time that leaves `hours` of notice before `cancelled_at` (whole seconds)."""
    seconds = Decimal(str(hours)) * 3600
    if seconds != seconds.to_integral_value():
        raise ValueError(f"{hours} hours is not a whole number of seconds")
    return cancelled_at + timedelta(seconds=int(seconds))


def item(
    sku: str,
    total: str,
    tax: str = "0",
    *,
    hours: int | str | Decimal = 100,
    start: datetime | None = None,
    item_id: str = "",
    line_id: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """One booking line; `total` includes `tax`. Starts `hours` after CANCELLED_AT by default."""
    attributes = {"item_id": item_id}
    if line_id is not None:
        attributes["line_id"] = line_id
    moment = start if start is not None else notice(hours)
    line: dict[str, Any] = {
        "@attributes": attributes,
        "start_date": unix(moment),
        "end_date": unix(moment + timedelta(hours=3)),
        "sku": sku,
        "status": "STOP",
        "total": total,
        "tax_total": tax,
        "qty": "1",
    }
    if name is not None:
        line["name"] = name
    return line


def paid(
    transaction_id: str, amount: str, *, day: int = 1, gateway: str = "Stripe"
) -> dict[str, Any]:
    """A PAID transaction made `day` days after 2026-11-01 (a later day is newer)."""
    return {
        "transaction_id": transaction_id,
        "date": _day(day),
        "status": "PAID",
        "amount": amount,
        "gateway_id": gateway,
    }


def refunded(
    transaction_id: str, amount: str, *, day: int = 5, original: str | None = None,
    gateway: str = "Stripe",
) -> dict[str, Any]:
    """A REFUND transaction (amount positive), optionally naming the payment it reduces."""
    data: dict[str, Any] = {
        "transaction_id": transaction_id,
        "date": _day(day),
        "status": "REFUND",
        "amount": amount,
        "gateway_id": gateway,
    }
    if original is not None:
        data["original_transaction_id"] = original
    return data


def booking(
    items: Sequence[dict[str, Any]] | dict[str, Any],
    *,
    currency: str | None = "USD",
    total: str | None = None,
    paid_total: str | None = None,
    transactions: Iterable[dict[str, Any]] | str | None = "paid-in-full",
    booking_id: str = "157",
    code: str = "KMVQ-261124",
) -> dict[str, Any]:
    """A snapshot dict. `total` defaults to the sum of item totals; `paid_total` to `total`.

    `transactions` defaults to one Stripe payment of `paid_total`; pass None for no list.
    """
    listed = [items] if isinstance(items, dict) else list(items)
    if total is None:
        total = str(sum((Decimal(line["total"]) for line in listed), Decimal(0)))
    if paid_total is None:
        paid_total = total
    order: dict[str, Any] = {
        "@attributes": {"currency_id": currency} if currency else {},
        "total": total,
        "paid_total": paid_total,
        "items": {"item": items},
    }
    data: dict[str, Any] = {
        "booking": {
            "@attributes": {"booking_id": booking_id},
            "status": "STOP",
            "code": code,
            "created_date": unix(CANCELLED_AT - timedelta(days=30)),
            "customer": {"name": "Ana Silva", "email": "ana@example.com"},
            "order": order,
        }
    }
    if transactions == "paid-in-full":
        data["transactions"] = [paid("pi_full", paid_total)]
    elif transactions is not None:
        data["transactions"] = list(transactions)
    return data


def policy(
    policy_id: str,
    *,
    skus: Sequence[str] = (),
    item_ids: Sequence[int | str] = (),
    default: bool = False,
    tiers: Sequence[tuple[int | str, int | str]] = STANDARD_TIERS,
    non_refundable: Sequence[str] = (),
    fee: str | None = None,
    refund_tax: bool = True,
    waivers: dict[str, int | str] | None = None,
) -> dict[str, Any]:
    """One policy entry as the YAML file holds it."""
    data: dict[str, Any] = {
        "id": policy_id,
        "text": f"clause of {policy_id}",
        "tiers": [{"min_notice_hours": h, "refund_percent": p} for h, p in tiers],
        "refund_tax": refund_tax,
    }
    if default:
        data["default"] = True
    if skus or item_ids:
        data["match"] = {"skus": list(skus), "item_ids": list(item_ids)}
    if non_refundable:
        data["non_refundable_skus"] = list(non_refundable)
    if fee is not None:
        data["cancellation_fee"] = fee
    if waivers is not None:
        data["waivers"] = dict(waivers)
    return data


def policies(
    *entries: dict[str, Any],
    currency: str = "USD",
    auto_approve_max: str = "200.00",
    escalate_over: str = "500.00",
) -> dict[str, Any]:
    """A policy file's content."""
    return {
        "currency": currency,
        "auto_approve_max": auto_approve_max,
        "escalate_over": escalate_over,
        "policies": list(entries),
    }


def quote(
    snapshot: dict[str, Any],
    book: dict[str, Any],
    cancelled_at: datetime = CANCELLED_AT,
    *,
    waiver: str | None = None,
    risk_flags: tuple[RiskFlag, ...] = (),
) -> Quote:
    """Parse both dicts and quote, as the CLI does."""
    parsed_book = parse_policies(book, "test-policies.yml")
    parsed = parse_snapshot(snapshot, default_currency=parsed_book.currency)
    return build_quote(parsed, parsed_book, cancelled_at, waiver=waiver, risk_flags=risk_flags)


def _day(day: int) -> int:
    return int(datetime(2026, 11, 1, 12, 0, tzinfo=UTC).timestamp()) + day * 86400
