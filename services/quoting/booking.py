"""The booking snapshot: a Checkfront booking, its lines and its payments, read exactly.

Input is the shape of Checkfront's booking webhook (API 3.0, JSON) with a top-level
`transactions` list shaped like the "New Payment/Refund" webhook's `transaction` object.
The engine does not care whether it came from a webhook or from the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from operator import attrgetter
from typing import Any

from services.clients.checkfront_bodies import checkfront_status
from services.errors import DomainError
from services.money import (
    MAX_DIGITS,
    MoneyError,
    exponent,
    normalize_currency,
    to_decimal,
    to_minor,
)
from services.privacy import EMAIL_HASH, customer_hash
from services.quoting.canonical import esc, plain_json
from services.quoting.canonical import fingerprint as _fingerprint
from services.quoting.frozen import computed_once, frozen_new

STRIPE_PREFIXES = ("pi_", "ch_")

__all__ = ["BookingLine", "BookingSnapshot", "Payment", "SnapshotError", "Transaction",
           "computed_once", "epoch_micros", "frozen_new", "parse_checked", "parse_snapshot"]


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


def parse_snapshot(data: Mapping[str, Any], default_currency: str | None = None) -> BookingSnapshot:
    """Read a snapshot dict; raise SnapshotError naming the first missing or bad field.

    A snapshot of the usual shape (plain dicts, lists and strings as Checkfront sends them)
    is read in one pass (`_read_usual`); anything else, and every refusal, by the
    validating path below, which gives the same snapshot for what both read."""
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_micros(moment: datetime) -> int:
    """Microseconds from the unix epoch to an aware datetime, exactly (timedelta's own
    integers; `timestamp()` is a float)."""
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


_AMOUNTS: dict[int, dict[str, int]] = {0: {}, 2: {}, 3: {}}  # by exponent: text: minor
_MAX_AMOUNTS = 4096  # distinct amount texts kept per exponent: a catalogue's prices


def _usual_minor(value: Any, currency: str, places: int) -> int | None:
    """`to_minor(value, currency)` as `_amount` reads it, or None where `_amount` refuses.
    Text with exactly the currency's decimals ("210.00") is read here, digit for digit what
    `to_minor` does, and kept (`_AMOUNTS`: the same prices recur across bookings, and the
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
