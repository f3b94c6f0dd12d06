"""Reading a booking snapshot (`parse_snapshot`): the usual shape in one pass, anything else
through the validating reader (`services.quoting.booking_checked.parse_checked`).

Input is the shape of Checkfront's booking webhook (API 3.0, JSON) with a top-level
`transactions` list shaped like the "New Payment/Refund" webhook's `transaction` object.
The engine does not care whether it came from a webhook or from the API. The usual reader
keeps the values it has read (currencies, unix seconds, amount texts), bounded, since the
same booking is read several times per case and a day's bookings share their prices and times.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from hashlib import sha256
from typing import Any

from services.clients.checkfront_bodies import checkfront_status
from services.money import MAX_DIGITS, MoneyError, exponent, normalize_currency, to_minor
from services.privacy import EMAIL_HASH
from services.quoting.booking import (
    BookingLine,
    BookingSnapshot,
    SnapshotError,
    Transaction,
    epoch_micros,
)
from services.quoting.booking_checked import _timestamp, parse_checked
from services.quoting.canonical import esc, plain_json


def parse_snapshot(data: Mapping[str, Any], default_currency: str | None = None) -> BookingSnapshot:
    """Read a snapshot dict; raise SnapshotError naming the first missing or bad field.

    A snapshot of the usual shape (plain dicts, lists and strings as Checkfront sends them)
    is read in one pass (`_read_usual`); anything else, and every refusal, by the
    validating reader (`parse_checked`), which gives the same snapshot for what both read."""
    if type(data) is dict:
        snapshot = _read_usual(data, default_currency)
        if snapshot is not None:
            return snapshot
    return parse_checked(data, default_currency)


def _read_usual(data: dict[str, Any], default_currency: str | None) -> BookingSnapshot | None:
    """`parse_checked(data, default_currency)` for a snapshot of the usual shape, in one pass
    that reads each value straight into its field; None when anything is unusual or wrong (the
    validating path then reads it and words any refusal). The usual shape: the booking, its
    order and their `@attributes` as dicts, the items as a list under `items.item`, every item
    and transaction a dict, amounts as plain text, times as unix seconds (text or int)."""
    booking = data.get("booking")
    if type(booking) is not dict:
        return None
    order, attributes = booking.get("order"), booking.get("@attributes")
    if type(order) is not dict or type(attributes) is not dict:
        return None
    order_attributes, items = order.get("@attributes"), order.get("items")
    if type(order_attributes) is not dict or type(items) is not dict:
        return None
    items = items.get("item")
    currency = order_attributes.get("currency_id") or default_currency
    customer = booking.get("customer") or _NOBODY
    if type(items) is not list or not items or type(currency) is not str \
            or type(customer) is not dict:
        return None
    read = _CURRENCIES.get(currency)
    if read is None:
        try:
            read = normalize_currency(currency)
        except MoneyError:
            return None
        if len(_CURRENCIES) >= _MAX_AMOUNTS:
            _CURRENCIES.clear()
        _CURRENCIES[currency] = read
    currency = read
    places = exponent(currency)
    booking_id = str(attributes.get("booking_id") or booking.get("booking_id") or "").strip()
    code = str(booking.get("code") or booking.get("id") or "").strip()
    if not booking_id and not code:
        return None
    new, setattr_ = object.__new__, object.__setattr__
    moments, amounts = _MOMENTS, _AMOUNTS[places]  # values read before (see `_moment`)
    lines: list[BookingLine] = []
    rows: list[tuple[str, str, str, str, int, int]] = []  # the lines as the fingerprint has them
    for index, item in enumerate(items):
        line_attributes = item.get("@attributes") if type(item) is dict else None
        if type(line_attributes) is not dict:
            return None
        value = item.get("start_date")
        kind = type(value)  # exact types, as `_moment` keeps them
        start = moments.get(value) if kind is str or kind is int else None
        if start is None:
            start = _moment(value)
        value = item.get("total")
        total = amounts.get(value) if type(value) is str else None
        if total is None:
            total = _usual_minor(value, currency, places)
        value = item.get("tax_total")
        tax = amounts.get(value) if type(value) is str else None
        if tax is None:
            tax = 0 if value is None or value == "" else _usual_minor(value, currency, places)
        qty = item.get("qty", 1) or 1
        if type(qty) is str and qty.isascii() and qty.isdigit():
            qty = int(qty)
        if start is None or total is None or tax is None or tax > total or type(qty) is not int:
            return None
        line_id = str(line_attributes.get("line_id") or item.get("line_id") or index + 1)
        item_id = str(line_attributes.get("item_id") or item.get("item_id") or "").strip()
        sku = str(item.get("sku") or "").strip()
        status = item.get("status")
        iso = start[1]
        line = new(BookingLine)
        setattr_(line, "__dict__", {  # frozen: as frozen_new fills it, without a copy
            "line_id": line_id, "item_id": item_id, "sku": sku,
            "name": str(item.get("name") or sku or f"line {line_id}"), "start": start[0],
            "total": total, "tax": tax, "qty": qty,
            "status": (status.upper() if type(status) is str
                       else checkfront_status(item, "status", strip=False)),
            "start_iso": iso, "_start_us": start[2]})
        lines.append(line)
        rows.append((line_id, sku, item_id, iso, total, tax))
    transactions: list[Transaction] | None = None
    paid: list[tuple[str, str, int, str]] | None = None  # as the fingerprint sorts them
    listed = data.get("transactions")
    if listed is not None:
        if type(listed) is not list:
            return None
        transactions = []
        paid = []
        for raw in listed:
            if type(raw) is not dict:
                return None
            tid = str(raw.get("transaction_id") or "").strip()
            value = raw.get("date")
            kind = type(value)
            when = moments.get(value) if kind is str or kind is int else None
            if when is None:
                when = _moment(value)
            value = raw.get("amount")
            amount = amounts.get(value) if type(value) is str else None
            if amount is None:
                amount = _usual_minor(value, currency, places)
            if not tid or when is None or amount is None:
                return None
            status, original = raw.get("status"), raw.get("original_transaction_id")
            status = (status.strip().upper() if type(status) is str
                      else checkfront_status(raw, "status"))
            original = None if original is None or original == "" else str(original).strip()
            amount = abs(amount)
            transaction = new(Transaction)
            setattr_(transaction, "__dict__", {
                "id": tid, "date": when[0], "status": status, "amount": amount,
                "gateway": str(raw.get("gateway_id") or ""), "original_id": original})
            transactions.append(transaction)
            paid.append((tid, status, amount, original or ""))
    created = booking.get("created_date")
    if created is None or created == "":
        created_at = None
    else:
        kind = type(created)  # exact types, as `_moment` keeps them
        created_at = moments.get(created) if kind is str or kind is int else None
        if created_at is None:
            created_at = _moment(created)
    value = order.get("total")
    order_total = amounts.get(value) if type(value) is str else None
    if order_total is None:
        order_total = _usual_minor(value, currency, places)
    paid_total = order.get("paid_total")
    if paid_total is None or paid_total == "":
        paid_total = 0
    else:
        value = paid_total
        paid_total = amounts.get(value) if type(value) is str else None
        if paid_total is None:
            paid_total = _usual_minor(value, currency, places)
    if (created_at is None and created is not None and created != "") or order_total is None \
            or paid_total is None:
        return None
    status = booking.get("status") or booking.get("status_id")
    # The fingerprint, as `canonical.fingerprint` writes it, from the values at hand (plain
    # `str` and ints here, the keys in sorted order): tests/test_snapshot_usual.py compares
    # the two paths' snapshots.
    if paid is not None:
        paid.sort()
    material = {"lines": rows, "paid_total": str(order.get("paid_total")),
                "status": str(booking.get("status") or ""), "total": str(order.get("total")),
                "transactions": paid}
    blob = plain_json(material, False)
    if blob is None:
        blob = _fingerprint_text(material).encode()
    snapshot = new(BookingSnapshot)
    setattr_(snapshot, "__dict__", {
        "booking_id": booking_id or code, "code": code or booking_id,
        "status": (status.strip().upper() if type(status) is str
                   else checkfront_status(booking, "status", "status_id")),
        "currency": currency, "created_at": None if created_at is None else created_at[0],
        "customer_name": str(customer.get("name") or ""),
        "customer_email": str(customer.get("email") or ""),
        "customer_email_hash": str(customer.get(EMAIL_HASH) or ""),
        "order_total": order_total, "paid_total": paid_total, "lines": tuple(lines),
        "transactions": None if transactions is None else tuple(transactions),
        "fingerprint": sha256(blob).hexdigest()[:16], "_plain": True})
    return snapshot


def _fingerprint_text(material: dict[str, Any]) -> str:
    """The usual reader's fingerprint material in canonical JSON where `plain_json` leaves it
    (text beyond ASCII, DEL, an amount beyond 64 bits): a template, strings through the json
    module's escaping, the amounts (ints) and ISO times (nothing to escape) as they are."""
    paid = material["transactions"]
    listed = "null" if paid is None else "[" + ",".join([
        f"[{esc(a)},{esc(b)},{c},{esc(d)}]" for a, b, c, d in paid]) + "]"
    rows = ",".join([f'[{esc(line_id)},{esc(sku)},{esc(item_id)},"{iso}",{total},{tax}]'
                     for line_id, sku, item_id, iso, total, tax in material["lines"]])
    return (f'{{"lines":[{rows}],"paid_total":{esc(material["paid_total"])},'
            f'"status":{esc(material["status"])},"total":{esc(material["total"])},'
            f'"transactions":{listed}}}')


_NOBODY: dict[str, Any] = {}
_CURRENCIES: dict[str, str] = {}  # currency text as sent: its code (normalize_currency's)
_MOMENTS: dict[str | int, tuple[datetime, str, int]] = {}
_MAX_MOMENTS = 4096  # distinct unix seconds kept: a day's departures and payments


def _moment(value: Any) -> tuple[datetime, str, int] | None:
    """The UTC datetime of unix seconds given as text or an int, as `_timestamp` reads them,
    with its ISO text and its microseconds since the epoch; None where `_timestamp` refuses
    (or is not asked: other types). Kept per distinct value (a datetime is immutable): the
    same booking is read several times per case, its lines share a start, and
    `datetime.fromtimestamp` was a tenth of a snapshot."""
    kind = type(value)  # exact types: True == 1 and 1.0 == 1 must not find 1's moment
    if kind is not str and kind is not int:
        return None
    kept = _MOMENTS.get(value)
    if kept is None:
        try:
            moment = _timestamp(value, "", "")
        except SnapshotError:
            return None
        if len(_MOMENTS) >= _MAX_MOMENTS:
            _MOMENTS.clear()
        kept = _MOMENTS[value] = (moment, moment.isoformat(), epoch_micros(moment))
    return kept


_AMOUNTS: dict[int, dict[str, int]] = {0: {}, 2: {}, 3: {}}  # by exponent: text: minor
_MAX_AMOUNTS = 4096  # distinct amount texts kept per exponent: a catalogue's prices


def _usual_minor(value: Any, currency: str, places: int) -> int | None:
    """`to_minor(value, currency)` as `parse_checked`'s `_amount` reads it, or None where
    that refuses. Text with exactly the currency's decimals ("210.00") is read here, digit for
    digit what `to_minor` does, and kept (`_AMOUNTS`: the same prices recur across bookings, and the
    same booking is read several times per case); anything else by `to_minor`."""
    if type(value) is str:
        whole, _, fraction = value.partition(".")
        if (len(fraction) == places and whole.isdigit() and fraction.isdigit()
                and whole.isascii() and fraction.isascii() and len(whole) <= MAX_DIGITS):
            minor = int(whole + fraction)
            kept = _AMOUNTS[places]
            if len(kept) >= _MAX_AMOUNTS:
                kept.clear()
            kept[value] = minor
            return minor
    if value is None or value == "":
        return None
    try:
        return to_minor(value, currency)
    except MoneyError:
        return None
