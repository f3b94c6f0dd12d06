"""Checkfront's vocabulary: its status codes, and the API 3.0 booking and transaction bodies
read into the shape of Checkfront's booking webhook (the snapshot dict).

`booking_from_body` maps the body of `GET booking/{id}` into the webhook's booking
(`{..., "order": {"items": {"item": [...]}}}`); `transactions_from_body` reads
`GET booking/{id}/transact` into the snapshot's top-level `transactions` list. That endpoint
and the booking body are not in the published docs, so the mapping accepts the variants seen
in practice: items keyed by line id, as a list, or as `{"item": obj | list}`; transactions as
a list or keyed object; the booking code as `code` or `id`. Amounts stay decimal strings;
`items.item` is always a list. A line's total is never invented: a line without one is left
without one, and the snapshot refuses it (it would otherwise be quoted as free).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from services.clients.checkfront_errors import CheckfrontError

_TRANSACTION_KEYS = ("booking/transact", "transact", "transactions")


def checkfront_status(
    record: Mapping[str, Any], *keys: str, default: str = "", strip: bool = True
) -> str:
    """The status code a Checkfront booking, line or transaction carries, in upper case.

    Reads the first of `keys` with a value (None, "" and other falsy values count as none),
    else `default`. The API's bodies say `status_id` (booking and items); the booking webhook
    and the snapshot say `status`; so each caller names the keys it reads, in the order it
    trusts them. `strip=False` keeps blanks around the code (" VOID " stays unequal to
    "VOID"), as the snapshot's lines and the webhook's cancellation check have always read it.
    """
    value: Any = default
    for key in keys:  # a loop, not generators: this runs for every line a snapshot reads
        found = record.get(key)
        if found:
            value = found
            break
    if type(value) is str:
        return (value.strip() if strip else value).upper()
    return (_text(value) if strip else str(value)).upper()


def booking_from_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The booking of a `GET booking/{id}` body in booking-webhook shape."""
    raw = body.get("booking")
    if not isinstance(raw, dict):
        raise CheckfrontError("Checkfront returned a booking response without a booking.")
    locale = body.get("locale")
    account_currency = locale.get("currency") if isinstance(locale, dict) else None
    return _booking(raw, account_currency)


def transactions_from_body(body: Mapping[str, Any], code: str) -> list[dict[str, Any]] | None:
    """The transactions of a `GET booking/{id}/transact` body in the snapshot's shape, each
    naming booking `code` unless it names its own; None when the body holds none."""
    for key in _TRANSACTION_KEYS:
        if key in body:
            return [_transaction(t, code) for t in _records(body[key])]
    return None


def _booking(raw: Mapping[str, Any], account_currency: Any) -> dict[str, Any]:
    status = checkfront_status(raw, "status_id", "status")
    order_in = _dict(raw.get("order")) or raw
    attrs = _dict(raw.get("@attributes"))
    order_attrs = _dict(order_in.get("@attributes"))
    currency = _text(
        order_attrs.get("currency_id") or raw.get("currency_id") or account_currency
    ).upper()
    items = [_item(key, it, status) for key, it in _item_rows(order_in.get("items"))]
    tax_total = _amount(order_in.get("tax_total"))
    sub_total = order_in.get("sub_total")
    if sub_total is None:
        sub_total = sum((_dec(i.get("total")) - _dec(i["tax_total"]) for i in items), Decimal(0))
    customer_in = _dict(raw.get("customer"))
    booking: dict[str, Any] = {
        "@attributes": {"booking_id": _text(attrs.get("booking_id") or raw.get("booking_id"))},
        "status": status,
        "code": _text(raw.get("code") or raw.get("id")),  # some bodies carry the code as `id`
        "created_date": _text(raw.get("created_date")),
        "customer": {
            "name": _text(customer_in.get("name") or raw.get("customer_name")),
            "email": _text(customer_in.get("email") or raw.get("customer_email")),
        },
        "order": {
            "@attributes": {"currency_id": currency},
            "sub_total": _amount(sub_total),
            "tax_total": tax_total,
            "paid_total": _amount(order_in.get("paid_total")),
            "total": _amount(order_in.get("total")),
            "discount": _amount(order_in.get("discount")),
            "items": {"item": items},
        },
    }
    for key in ("start_date", "end_date"):
        if raw.get(key) is not None:
            booking[key] = _text(raw[key])
    return booking


def _item_rows(value: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(line key, item) pairs from a list, `{"item": ...}`, a keyed object or one item."""
    if isinstance(value, list):
        for index, row in enumerate(value, start=1):
            if isinstance(row, dict):
                yield str(index), row
    elif isinstance(value, dict):
        if "item" in value and len(value) == 1:
            yield from _item_rows(value["item"])
        elif value and all(isinstance(v, dict) for v in value.values()) and "sku" not in value:
            for key, row in value.items():
                yield str(key), row
        elif value:
            yield "1", value


def _item(key: str, it: Mapping[str, Any], booking_status: str) -> dict[str, Any]:
    attrs = _dict(it.get("@attributes"))
    line_id = attrs.get("line_id") or it.get("line_id") or key
    item_id = attrs.get("item_id") or it.get("item_id")
    line = {
        "@attributes": {"line_id": _text(line_id), "item_id": _text(item_id)},
        "start_date": _text(it.get("start_date")),
        "end_date": _text(it.get("end_date")),
        "sku": _text(it.get("sku")),
        "name": _text(it.get("name")),
        "status": checkfront_status(it, "status_id", "status", default=booking_status),
        "tax_total": _amount(it.get("tax_total")),
        "qty": _text(it.get("qty") or "1"),
    }
    if _text(it.get("total")):  # without one the line has none: the snapshot refuses it
        line["total"] = _text(it.get("total"))
    return line


def _records(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    if isinstance(value, dict):
        if "transaction_id" in value:
            return [value]
        return [v for v in value.values() if isinstance(v, dict)]
    return []


def _transaction(raw: Mapping[str, Any], code: str) -> dict[str, Any]:
    status = checkfront_status(raw, "status")
    amount = _dec(raw.get("amount"))
    if status == "REFUND":
        amount = abs(amount)  # refunds are reported as positive amounts
    try:
        when: int | str = int(_text(raw.get("date")))
    except ValueError:
        when = _text(raw.get("date"))
    record: dict[str, Any] = {
        "transaction_id": _text(raw.get("transaction_id")),
        "date": when,
        "status": status,
        "amount": _amount(amount),
        "gateway_id": _text(raw.get("gateway_id")),
        "booking_id": _text(raw.get("booking_id") or code),
    }
    if raw.get("original_transaction_id"):
        record["original_transaction_id"] = _text(raw["original_transaction_id"])
    return record


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value).strip()


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(_text(value) or "0")
    except InvalidOperation:
        raise CheckfrontError("Checkfront returned an amount that is not a number.") from None


def _amount(value: Any) -> str:
    """Decimal string as Checkfront writes it; a missing amount reads as zero."""
    return _text(value) if _text(value) else "0.00"
