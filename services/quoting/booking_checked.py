"""The validating reader of a booking snapshot (`parse_checked`): field by field, each value
checked, every refusal a `SnapshotError` naming the field. It is the reference the usual
one-pass reader (`services.quoting.booking_read`) is tested against, and its fallback for
any snapshot of another shape and for every refusal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from services.clients.checkfront_bodies import checkfront_status
from services.money import MoneyError, normalize_currency, to_decimal, to_minor
from services.privacy import EMAIL_HASH
from services.quoting.booking import BookingLine, BookingSnapshot, SnapshotError, Transaction
from services.quoting.canonical import fingerprint as _fingerprint
from services.quoting.frozen import frozen_new


def parse_checked(data: Mapping[str, Any], default_currency: str | None = None) -> BookingSnapshot:
    """`parse_snapshot` field by field, each value validated: the reference and the fallback."""
    if not _is_mapping(data):
        raise SnapshotError("booking snapshot must be a JSON object")
    booking = _require_mapping(data, "booking", "booking")
    order = _require_mapping(booking, "order", "booking.order")
    attributes = _attributes(booking, "booking")
    booking_id = str(attributes.get("booking_id") or booking.get("booking_id") or "").strip()
    code = str(booking.get("code") or booking.get("id") or "").strip()  # some bodies say `id`
    if not booking_id and not code:
        raise SnapshotError("booking has neither @attributes.booking_id nor code")
    currency_raw = _attributes(order, "booking.order").get("currency_id") or default_currency
    if not currency_raw:
        raise SnapshotError("booking.order.@attributes.currency_id is missing and no default set")
    try:
        currency = normalize_currency(str(currency_raw))
    except MoneyError as exc:
        raise SnapshotError(f"booking.order.@attributes.currency_id: {exc}") from exc
    customer = booking.get("customer") or {}
    if not _is_mapping(customer):
        customer = {}
    lines = tuple([
        _parse_line(item, index, currency) for index, item in enumerate(_items(order))
    ])
    if not lines:
        raise SnapshotError("booking.order.items has no item")
    transactions_raw = data.get("transactions")
    transactions: tuple[Transaction, ...] | None = None
    if transactions_raw is not None:
        if not _is_list(transactions_raw):
            raise SnapshotError("transactions must be a list")
        transactions = tuple([
            _parse_transaction(t, index, currency) for index, t in enumerate(transactions_raw)
        ])
    created = booking.get("created_date")
    created_at = (_timestamp(created, "booking", "created_date")
                  if created not in (None, "") else None)
    return frozen_new(
        BookingSnapshot,
        booking_id=booking_id or code,
        code=code or booking_id,
        status=checkfront_status(booking, "status", "status_id"),
        currency=currency,
        created_at=created_at,
        customer_name=str(customer.get("name") or ""),
        customer_email=str(customer.get("email") or ""),
        customer_email_hash=str(customer.get(EMAIL_HASH) or ""),
        order_total=_amount(order, "total", "booking.order", currency),
        paid_total=_amount(order, "paid_total", "booking.order", currency)
        if order.get("paid_total") not in (None, "")
        else 0,
        lines=lines,
        transactions=transactions,
        fingerprint=_fingerprint(booking, order, lines, transactions),
    )


def _items(order: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = order.get("items")
    if _is_mapping(items):
        items = items.get("item")
    if items is None:
        raise SnapshotError("booking.order.items is missing")
    if _is_mapping(items):  # XML-converted payloads send one item as an object
        return [items]
    if _is_list(items):
        return list(items)
    raise SnapshotError("booking.order.items.item must be an object or a list")


def _parse_line(item: Any, index: int, currency: str) -> BookingLine:
    where = f"booking.order.items[{index}]"
    if not _is_mapping(item):
        raise SnapshotError(f"{where} must be an object")
    attributes = _attributes(item, where)
    line_id = str(attributes.get("line_id") or item.get("line_id") or index + 1)
    if item.get("start_date") in (None, ""):
        raise SnapshotError(f"{where}.start_date is missing")
    total = _amount(item, "total", where, currency)
    tax = _amount(item, "tax_total", where, currency) if item.get(
        "tax_total"
    ) not in (None, "") else 0
    if tax > total:
        raise SnapshotError(f"{where}: tax_total exceeds total (total includes tax)")
    sku = str(item.get("sku") or "").strip()
    qty_raw = item.get("qty", 1)
    try:
        qty = _whole(qty_raw or 1)
    except MoneyError as exc:
        raise SnapshotError(f"{where}.qty: {exc}") from exc
    return frozen_new(
        BookingLine,
        line_id=line_id,
        item_id=str(attributes.get("item_id") or item.get("item_id") or "").strip(),
        sku=sku,
        name=str(item.get("name") or sku or f"line {line_id}"),
        start=_timestamp(item["start_date"], where, "start_date"),
        total=total,
        tax=tax,
        qty=qty,
        status=checkfront_status(item, "status", strip=False),
    )


def _parse_transaction(raw: Any, index: int, currency: str) -> Transaction:
    where = f"transactions[{index}]"
    if not _is_mapping(raw):
        raise SnapshotError(f"{where} must be an object")
    tid = str(raw.get("transaction_id") or "").strip()
    if not tid:
        raise SnapshotError(f"{where}.transaction_id is missing")
    if raw.get("date") in (None, ""):
        raise SnapshotError(f"{where}.date is missing")
    amount = _amount(raw, "amount", where, currency)
    original = raw.get("original_transaction_id")
    return frozen_new(
        Transaction,
        id=tid,
        date=_timestamp(raw["date"], where, "date"),
        status=checkfront_status(raw, "status"),
        amount=abs(amount),
        gateway=str(raw.get("gateway_id") or ""),
        original_id=str(original).strip() if original not in (None, "") else None,
    )


def _is_mapping(value: Any) -> bool:
    """isinstance(value, Mapping), trying first what JSON gives (the ABC check is slow)."""
    return type(value) is dict or isinstance(value, Mapping)


def _is_list(value: Any) -> bool:
    """A sequence that is not a string; a JSON list first."""
    return type(value) is list or (isinstance(value, Sequence) and not isinstance(value, str))


def _attributes(data: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """The XML-style `@attributes` object, or an empty one when absent."""
    value = data.get("@attributes")
    if value in (None, ""):
        return {}
    if not _is_mapping(value):
        raise SnapshotError(f"{where}.@attributes must be an object")
    return value


def _require_mapping(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not _is_mapping(value):
        raise SnapshotError(f"{where} is missing or not an object")
    return value


def _amount(data: Mapping[str, Any], key: str, where: str, currency: str) -> int:
    """`data[key]` in minor units; errors name `where.key` (worded only when raised)."""
    value = data.get(key)
    if value is None or value == "":
        raise SnapshotError(f"{where}.{key} is missing")
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        raise SnapshotError(f"{where}.{key}: {exc}") from exc


def _timestamp(value: Any, where: str, key: str) -> datetime:
    try:
        seconds = _whole(value)
    except MoneyError as exc:
        raise SnapshotError(f"{where}.{key}: not a unix timestamp: {value!r}") from exc
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise SnapshotError(f"{where}.{key}: unix timestamp out of range: {value!r}") from exc


def _whole(value: Any) -> int:
    """A number read exactly and truncated toward zero, as `int(to_decimal(value))`; the
    usual unix seconds and quantities ("1795705200", 2) skip the Decimal."""
    if type(value) is int:  # not bool, which to_decimal refuses
        return value
    if type(value) is str and value.isascii() and value.isdigit():
        return int(value)
    return int(to_decimal(value))
