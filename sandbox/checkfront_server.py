"""Local stand-in for the Checkfront API 3.0 (token auth, bookings, notes, webhooks).

Shapes follow the public Checkfront API 3.0 documentation: the response envelope
(`version`, `account_id`, `host_id`, `name`, `locale`, `request`), `ping`, `booking/index`
(its filters in `checkfront_index`), `booking/notes`, `booking/{id}/update`,
`booking/{id}/note`, and the "Booking Modified" and "New Payment/Refund" webhook bodies.

Not covered by the published docs, so modelled here and marked as such:
- the body of `GET booking/{id}`: documented `booking/index` fields plus `sub_total`,
  `discount`, dates and `items` keyed by line id (Checkfront returns items as an
  object, not an array). `items_style="webhook"` serves them as `{"item": ...}` instead;
- `GET booking/{id}/transact`: Checkfront support recommends this endpoint for a
  booking's transactions but never merged its documentation; the response here lists
  payment-webhook-shaped records under the key `booking/transact`, keyed by id;
- `GET booking/{id}/notes` (the docs only list notes across bookings: `booking/notes`);
- error bodies use the documented `{"error", "error_description"}` object.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from aiohttp import web

from sandbox.checkfront_index import IndexQueryError, select

API_PREFIX = "/api/3.0/"
NOTE_MAX_CHARS = 3000
DEFAULT_STATUSES: dict[str, str] = {
    "PEND": "Pending",
    "HOLD": "On Hold",
    "PART": "Partially Paid",
    "PAID": "Paid",
    "WAIT": "Waiting",
    "STOP": "Cancelled",
    "VOID": "Void",
}
_ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    | {"PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
_THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})

_FORM = web.RequestKey("checkfront_form", dict)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _exponent(currency: str) -> int:
    """Private stand-in for services.money.exponent (kept local to the sandbox)."""
    code = currency.upper()
    if code in _ZERO_DECIMAL:
        return 0
    return 3 if code in _THREE_DECIMAL else 2


def _fmt(amount: Decimal, currency: str) -> str:
    return str(amount.quantize(Decimal(1).scaleb(-_exponent(currency))))


def _dec(value: Any) -> Decimal:
    if isinstance(value, float):
        raise TypeError("amounts must be str, int or Decimal, not float")
    return Decimal(str(value).strip() or "0")


def _timestamp(value: Any) -> int:
    """Unix seconds from an int, digit string, ISO date/datetime string, date or datetime."""
    if value is None:
        return int(time.time())
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp())
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    return _timestamp(datetime.fromisoformat(text))


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _one_or_many(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return [value] if isinstance(value, dict) else []


@dataclass
class SandboxItem:
    line_id: int
    item_id: str
    sku: str
    name: str
    start_date: int
    end_date: int
    status: str
    total: Decimal  # includes tax_total
    tax_total: Decimal
    qty: int


@dataclass
class SandboxTransaction:
    transaction_id: str
    date: int
    status: str  # PAID or REFUND
    amount: Decimal  # positive for refunds too
    gateway_id: str
    payment_mask: str = ""
    payment_type: str = ""
    original_transaction_id: str | None = None


@dataclass
class SandboxNote:
    note_id: int
    body: str
    date: str  # ISO-8601, as in booking-notes.json
    account_id: int = 1
    private: bool = True


@dataclass
class StatusChange:
    status_id: str
    notify: bool
    set_paid: bool
    at: int


@dataclass
class SandboxBooking:
    booking_id: int
    code: str
    status: str
    created_date: int
    customer_name: str
    customer_email: str
    currency: str
    items: list[SandboxItem]
    sub_total: Decimal
    tax_total: Decimal
    total: Decimal
    discount: Decimal
    paid_total: Decimal
    transactions: list[SandboxTransaction] = field(default_factory=list)
    notes: list[SandboxNote] = field(default_factory=list)
    history: list[StatusChange] = field(default_factory=list)
    last_modified: int = 0
    fields: dict[str, str] = field(default_factory=dict)   # booking form fields (e.g. language)


@dataclass
class RecordedRequest:
    method: str
    path: str  # full path, e.g. /api/3.0/booking/157/update
    query: dict[str, str]
    form: dict[str, str]
    authorized: bool = False


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: int | None
    path_prefix: str | None
    delay: float = 0.0


def _norm_prefix(prefix: str | None) -> str | None:
    if prefix is None:
        return None
    text = prefix.lstrip("/")
    return text.removeprefix(API_PREFIX.lstrip("/"))


class CheckfrontSandbox:
    """In-memory Checkfront account served over HTTP by `app()`."""

    def __init__(
        self,
        api_key: str = "cf_test_key",
        api_secret: str = "cf_test_secret",
        *,
        host: str = "sandbox.checkfront.test",
        company_name: str = "Sandbox Tours",
        currency: str = "USD",
        statuses: Mapping[str, str] | None = None,
        items_style: Literal["keyed", "webhook"] = "keyed",
        expose_transactions: bool = True,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.host = host
        self.company_name = company_name
        self.currency = currency
        self.statuses: dict[str, str] = dict(statuses or DEFAULT_STATUSES)
        self.items_style = items_style
        self.expose_transactions = expose_transactions
        self.moved_to: str | None = None  # when set, every API call gets a 301 there
        self.requests: list[RecordedRequest] = []
        self._bookings: dict[int, SandboxBooking] = {}
        self._faults: list[_Fault] = []
        self._down = False
        self._next_id = 1000
        self._next_note_id = 1
        self._next_tx = 1

    # ---- Python API: faults ------------------------------------------------------------

    def inject(
        self,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (JSON error body)."""
        self._faults.append(_Fault(status, times, retry_after, _norm_prefix(path_prefix)))

    def stall(self, seconds: float, times: int = 1, path_prefix: str | None = None) -> None:
        """Delay the next `times` matching requests by `seconds`, then answer normally."""
        self._faults.append(_Fault(0, times, None, _norm_prefix(path_prefix), delay=seconds))

    def down(self) -> None:
        self._down = True

    def up(self) -> None:
        self._down = False

    def clear_faults(self) -> None:
        self._faults.clear()

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        prefix = _norm_prefix(path_prefix) or ""
        return [
            r
            for r in self.requests
            if r.path.removeprefix(API_PREFIX).startswith(prefix)
            and (method is None or r.method == method.upper())
        ]

    # ---- Python API: data --------------------------------------------------------------

    def add_booking(
        self,
        snapshot: Mapping[str, Any] | None = None,
        *,
        booking_id: int | None = None,
        code: str | None = None,
        status: str = "PAID",
        currency: str | None = None,
        customer_name: str = "Sam Sandbox",
        customer_email: str = "sam@example.test",
        created_date: Any = None,
        items: list[Mapping[str, Any]] | None = None,
        transactions: list[Mapping[str, Any]] | None = None,
        discount: str | int | Decimal = "0",
        paid_total: str | int | Decimal | None = None,
    ) -> int:
        """Store a booking from a snapshot-shaped dict or keyword args; return its id.

        Keyword items: {sku, name, item_id, start, end, total (tax included), tax, qty,
        status}. Without explicit amounts, totals are derived from items and paid_total
        from the PAID minus REFUND transactions.
        """
        if snapshot is not None:
            return self._add_from_snapshot(snapshot)
        cur = (currency or self.currency).upper()
        created = _timestamp(created_date)
        status = status.upper()
        parsed = [
            self._item(i + 1, raw, status, created) for i, raw in enumerate(items or [{}])
        ]
        booking = self._new_booking(
            booking_id=booking_id,
            code=code,
            status=status,
            created=created,
            name=customer_name,
            email=customer_email,
            currency=cur,
            items=parsed,
            discount=_dec(discount),
            amounts={},
            paid_total=None if paid_total is None else _dec(paid_total),
            transactions=transactions or [],
        )
        return booking.booking_id

    def _add_from_snapshot(self, snapshot: Mapping[str, Any]) -> int:
        raw = snapshot.get("booking", snapshot)
        attrs = raw.get("@attributes", {})
        order = raw.get("order", {})
        cur = str(order.get("@attributes", {}).get("currency_id") or self.currency).upper()
        status = str(raw.get("status", "PAID")).upper()
        created = _timestamp(raw.get("created_date"))
        customer = raw.get("customer", {})
        items = []
        for i, it in enumerate(_one_or_many(order.get("items", {}).get("item"))):
            it_attrs = it.get("@attributes", {})
            merged = {
                **it,
                "line_id": it_attrs.get("line_id", i + 1),
                "item_id": it_attrs.get("item_id", it.get("item_id", "")),
                "start": it.get("start_date"),
                "end": it.get("end_date"),
                "tax": it.get("tax_total", "0"),
            }
            items.append(self._item(i + 1, merged, status, created))
        amounts = {k: _dec(order[k]) for k in ("sub_total", "tax_total", "total") if k in order}
        booking = self._new_booking(
            booking_id=int(attrs["booking_id"]) if "booking_id" in attrs else None,
            code=raw.get("code"),
            status=status,
            created=created,
            name=str(customer.get("name", "")),
            email=str(customer.get("email", "")),
            currency=cur,
            items=items,
            discount=_dec(order.get("discount", "0")),
            amounts=amounts,
            paid_total=_dec(order["paid_total"]) if "paid_total" in order else None,
            transactions=list(snapshot.get("transactions", [])),
        )
        return booking.booking_id

    def _item(
        self, line: int, raw: Mapping[str, Any], status: str, created: int
    ) -> SandboxItem:
        start = _timestamp(raw.get("start", raw.get("start_date", created)))
        return SandboxItem(
            line_id=int(raw.get("line_id", line)),
            item_id=str(raw.get("item_id", line)),
            sku=str(raw.get("sku", f"item{line}")),
            name=str(raw.get("name", f"Item {line}")),
            start_date=start,
            end_date=_timestamp(raw.get("end", raw.get("end_date", start))),
            status=str(raw.get("status", status)).upper(),
            total=_dec(raw.get("total", "0")),
            tax_total=_dec(raw.get("tax", raw.get("tax_total", "0"))),
            qty=int(raw.get("qty", 1)),
        )

    def _new_booking(
        self,
        *,
        booking_id: int | None,
        code: str | None,
        status: str,
        created: int,
        name: str,
        email: str,
        currency: str,
        items: list[SandboxItem],
        discount: Decimal,
        amounts: dict[str, Decimal],
        paid_total: Decimal | None,
        transactions: list[Mapping[str, Any]],
    ) -> SandboxBooking:
        bid = booking_id if booking_id is not None else self._allocate_id()
        if bid in self._bookings:
            raise ValueError(f"booking id {bid} already exists")
        code = (code or self._make_code(bid, created)).upper()
        if self._find(code) is not None:
            raise ValueError(f"booking code {code} already exists")
        self._next_id = max(self._next_id, bid + 1)
        tax = amounts.get("tax_total", sum((i.tax_total for i in items), Decimal(0)))
        sub = amounts.get("sub_total", sum((i.total - i.tax_total for i in items), Decimal(0)))
        total = amounts.get("total", sub + tax - discount)
        booking = SandboxBooking(
            booking_id=bid,
            code=code,
            status=status,
            created_date=created,
            customer_name=name,
            customer_email=email,
            currency=currency,
            items=items,
            sub_total=sub,
            tax_total=tax,
            total=total,
            discount=discount,
            paid_total=Decimal(0),
            last_modified=created,
        )
        for raw in transactions:
            booking.transactions.append(self._transaction(raw, booking))
        booking.paid_total = paid_total if paid_total is not None else self._net_paid(booking)
        self._bookings[bid] = booking
        return booking

    def _allocate_id(self) -> int:
        while self._next_id in self._bookings:
            self._next_id += 1
        return self._next_id

    @staticmethod
    def _make_code(bid: int, created: int) -> str:
        letters = "".join(random.Random(bid).choices("ABCDEFGHJKLMNPQRSTUVWXYZ", k=4))
        return f"{letters}-{datetime.fromtimestamp(created, UTC):%d%m%y}"

    def _transaction(self, raw: Mapping[str, Any], booking: SandboxBooking) -> SandboxTransaction:
        tx_id = raw.get("transaction_id") or f"TXN{self._next_tx:06d}"
        self._next_tx += 1
        return SandboxTransaction(
            transaction_id=str(tx_id),
            date=_timestamp(raw.get("date")),
            status=str(raw.get("status", "PAID")).upper(),
            amount=abs(_dec(raw.get("amount", "0"))),
            gateway_id=str(raw.get("gateway_id", "Stripe")),
            payment_mask=str(raw.get("payment_mask", "")),
            payment_type=str(raw.get("payment_type", "")),
            original_transaction_id=raw.get("original_transaction_id"),
        )

    @staticmethod
    def _net_paid(booking: SandboxBooking) -> Decimal:
        net = Decimal(0)
        for tx in booking.transactions:
            if tx.status == "PAID":
                net += tx.amount
            elif tx.status == "REFUND":
                net -= tx.amount
        return net

    def add_transaction(
        self,
        id_or_code: str | int,
        *,
        amount: str | int | Decimal,
        status: str = "PAID",
        transaction_id: str | None = None,
        gateway_id: str = "Stripe",
        date: Any = None,
        original_transaction_id: str | None = None,
    ) -> dict[str, Any]:
        """Record a payment or refund (positive amount) and return its webhook record."""
        booking = self._get(id_or_code)
        raw: dict[str, Any] = {
            "transaction_id": transaction_id,
            "status": status,
            "amount": amount,
            "gateway_id": gateway_id,
            "date": date,
            "original_transaction_id": original_transaction_id,
        }
        tx = self._transaction(raw, booking)
        booking.transactions.append(tx)
        if tx.status == "PAID":
            booking.paid_total += tx.amount
        elif tx.status == "REFUND":
            booking.paid_total -= tx.amount
        booking.last_modified = int(time.time())
        return self._tx_record(booking, tx)

    def booking(self, id_or_code: str | int) -> SandboxBooking:
        return self._get(id_or_code)

    def notes(self, id_or_code: str | int) -> list[SandboxNote]:
        return list(self._get(id_or_code).notes)

    def status_of(self, id_or_code: str | int) -> str:
        return self._get(id_or_code).status

    def status_history(self, id_or_code: str | int) -> list[StatusChange]:
        return list(self._get(id_or_code).history)

    def _find(self, id_or_code: str | int) -> SandboxBooking | None:
        text = str(id_or_code).strip()
        if text.isdigit():
            return self._bookings.get(int(text))
        wanted = text.upper()
        return next((b for b in self._bookings.values() if b.code == wanted), None)

    def _get(self, id_or_code: str | int) -> SandboxBooking:
        booking = self._find(id_or_code)
        if booking is None:
            raise KeyError(f"no sandbox booking {id_or_code!r}")
        return booking

    # ---- Webhook bodies ----------------------------------------------------------------

    def webhook_body(self, id_or_code: str | int) -> dict[str, Any]:
        """"Booking Modified" webhook JSON (docs: webhook-booking.json), status current."""
        b = self._get(id_or_code)
        cur = b.currency
        items = [
            {
                "@attributes": {"line_id": str(i.line_id), "item_id": i.item_id},
                "start_date": str(i.start_date),
                "end_date": str(i.end_date),
                "sku": i.sku,
                "name": i.name,
                "slip": {},
                "status": i.status,
                "total": _fmt(i.total, cur),
                "tax_total": _fmt(i.tax_total, cur),
                "qty": str(i.qty),
            }
            for i in b.items
        ]
        # Checkfront's JSON webhooks are converted from XML: one item is an object.
        item_field: Any = items[0] if len(items) == 1 else items
        return {
            "@attributes": {"version": "3.0", "host": self.host},
            "booking": {
                "@attributes": {"booking_id": str(b.booking_id)},
                "status": b.status,
                "code": b.code,
                "tid": {},
                "created_date": str(b.created_date),
                "staff_id": "1",
                "source_ip": "127.0.0.1",
                "start_date": str(min((i.start_date for i in b.items), default=b.created_date)),
                "end_date": str(max((i.end_date for i in b.items), default=b.created_date)),
                "customer": {"name": b.customer_name, "email": b.customer_email},
                "fields": {"customer_name": b.customer_name, "customer_email": b.customer_email},
                "meta": {},
                "order": {
                    "@attributes": {"currency_id": cur},
                    "sub_total": _fmt(b.sub_total, cur),
                    "tax_total": _fmt(b.tax_total, cur),
                    "paid_total": _fmt(b.paid_total, cur),
                    "total": _fmt(b.total, cur),
                    "discount": _fmt(b.discount, cur),
                    "items": {"item": item_field},
                },
            },
        }

    def snapshot(self, id_or_code: str | int) -> dict[str, Any]:
        """The booking snapshot the engine consumes: webhook booking plus transactions."""
        b = self._get(id_or_code)
        return {
            "booking": self.webhook_body(id_or_code)["booking"],
            "transactions": [self._tx_record(b, tx) for tx in b.transactions],
        }

    def transaction_webhook_body(
        self, id_or_code: str | int, transaction_id: str | None = None
    ) -> dict[str, Any]:
        """"New Payment/Refund" webhook JSON (docs: webhook-payment.json); default: latest."""
        b = self._get(id_or_code)
        if not b.transactions:
            raise KeyError(f"booking {b.code} has no transactions")
        tx = b.transactions[-1]
        if transaction_id is not None:
            tx = next(t for t in b.transactions if t.transaction_id == transaction_id)
        record = self._tx_record(b, tx)
        record["payment_mask"] = tx.payment_mask
        record["payment_type"] = tx.payment_type
        record["payment_customer"] = b.customer_name
        return {
            "version": "3.11.0.0",
            "host": self.host,
            "type": "transaction",
            "action": "insert",
            "transaction": record,
        }

    @staticmethod
    def _tx_record(b: SandboxBooking, tx: SandboxTransaction) -> dict[str, Any]:
        record: dict[str, Any] = {
            "transaction_id": tx.transaction_id,
            "date": tx.date,
            "status": tx.status,
            "amount": _fmt(tx.amount, b.currency),
            "gateway_id": tx.gateway_id,
            "booking_id": b.code,
        }
        if tx.original_transaction_id:
            record["original_transaction_id"] = tx.original_transaction_id
        return record

    # ---- HTTP --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        p = API_PREFIX
        app.router.add_get(p + "booking/index", self._h_index)
        app.router.add_route("*", p + "booking/notes", self._h_all_notes)
        app.router.add_get(p + "booking/{ref}", self._h_booking)
        app.router.add_get(p + "booking/{ref}/transact", self._h_transact)
        app.router.add_post(p + "booking/{ref}/update", self._h_update)
        app.router.add_post(p + "booking/{ref}/note", self._h_note)
        app.router.add_get(p + "booking/{ref}/notes", self._h_booking_notes)
        app.router.add_get(p + "ping", self._h_ping)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        form: dict[str, str] = {}
        if request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            form = {k: str(v) for k, v in (await request.post()).items()}
        record = RecordedRequest(request.method, request.path, dict(request.query), form)
        self.requests.append(record)
        request[_FORM] = form
        if self.moved_to:
            raise web.HTTPMovedPermanently(self.moved_to.rstrip("/") + request.path_qs)
        if self._down:
            return _error(503, "service_unavailable", "Checkfront is temporarily unavailable.")
        fault = self._take_fault(request.path)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(fault.retry_after)
                code = "rate_limited" if fault.status == 429 else "server_error"
                return _error(fault.status, code, "Injected fault.", headers)
        if not self._authorized(request.headers.get("Authorization", "")):
            return _error(
                401,
                "invalid_client",
                "Invalid API credentials.",
                {"WWW-Authenticate": 'Basic realm="Checkfront API"'},
            )
        record.authorized = True
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 404:
                return _error(404, "not_found", "Resource not found.")
            return _error(exc.status, "error", exc.reason)

    def _take_fault(self, path: str) -> _Fault | None:
        rel = path.removeprefix(API_PREFIX)
        for fault in self._faults:
            if fault.path_prefix is None or rel.startswith(fault.path_prefix):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        key, sep, secret = decoded.partition(":")
        return bool(sep) and (
            hmac.compare_digest(key.encode(), self.api_key.encode())
            & hmac.compare_digest(secret.encode(), self.api_secret.encode())
        )

    def _envelope(
        self,
        request: web.Request,
        rid: str,
        records: int,
        *,
        currency: str | None = None,
        limit: int = 0,
        page: int = 1,
        pages: int = 1,
        **extra: Any,
    ) -> dict[str, Any]:
        return {
            "version": "3.0",
            "account_id": 1,
            "host_id": self.host,
            "name": self.company_name,
            "locale": {"id": "en_US", "lang": "en", "currency": currency or self.currency},
            "request": {
                "status": "OK",
                "resource": "booking",
                "id": rid,
                "records": records,
                "limit": limit,
                "page": page,
                "pages": pages,
                "time": 0.001,
                "timestamp": time.time(),
                "method": request.method.lower(),
                **extra,
            },
        }

    def _lookup(self, request: web.Request) -> SandboxBooking:
        booking = self._find(request.match_info["ref"])
        if booking is None:
            raise web.HTTPNotFound()
        return booking

    def _index_row(self, b: SandboxBooking) -> dict[str, Any]:
        cur = b.currency
        start = min((i.start_date for i in b.items), default=b.created_date)
        day = datetime.fromtimestamp(start, UTC)
        return {
            "booking_id": b.booking_id,
            "code": b.code,
            "status_id": b.status,
            "status_name": self.statuses.get(b.status, b.status),
            "created_date": b.created_date,
            "total": _fmt(b.total, cur),
            "tax_total": _fmt(b.tax_total, cur),
            "paid_total": _fmt(b.paid_total, cur),
            "customer_name": b.customer_name,
            "customer_email": b.customer_email,
            "summary": ", ".join(i.name for i in b.items),
            "date_desc": f"{day:%a %b} {day.day}, {day.year}",
            "token": f"{b.booking_id:064x}",
        }

    def _booking_body(self, b: SandboxBooking) -> dict[str, Any]:
        cur = b.currency
        items: dict[str, Any] = {}
        for i in b.items:
            items[str(i.line_id)] = {
                "line_id": i.line_id,
                "item_id": i.item_id,
                "sku": i.sku,
                "name": i.name,
                "start_date": i.start_date,
                "end_date": i.end_date,
                "status_id": i.status,
                "qty": i.qty,
                "total": _fmt(i.total, cur),
                "tax_total": _fmt(i.tax_total, cur),
            }
        item_field: Any = items
        if self.items_style == "webhook":
            rows = list(items.values())
            item_field = {"item": rows[0] if len(rows) == 1 else rows}
        return {
            **self._index_row(b),
            "last_modified": b.last_modified,
            "start_date": min((i.start_date for i in b.items), default=b.created_date),
            "end_date": max((i.end_date for i in b.items), default=b.created_date),
            "sub_total": _fmt(b.sub_total, cur),
            "discount": _fmt(b.discount, cur),
            "items": item_field,
            **({"fields": dict(b.fields)} if b.fields else {}),
        }

    async def _h_ping(self, request: web.Request) -> web.Response:
        """`GET ping`: the account and the connection, as in the documented example."""
        body = self._envelope(request, "ping", 1)
        body["request"]["resource"] = "ping"
        body["pong"] = {"remote_addr": request.remote or "", "time": int(time.time()),
                        "timezone": "UTC", "provider": "API"}
        return web.json_response(body)

    async def _h_booking(self, request: web.Request) -> web.Response:
        b = self._lookup(request)
        body = self._envelope(request, request.match_info["ref"], 1, currency=b.currency)
        body["booking"] = self._booking_body(b)
        return web.json_response(body)

    async def _h_index(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = max(1, int(q.get("limit", "100")))
            page = max(1, int(q.get("page", "1")))
        except ValueError:
            return _error(400, "invalid_request", "limit and page must be integers.")
        try:   # the documented filters (sandbox/checkfront_index.py), then the page
            rows = select(sorted(self._bookings.values(), key=lambda b: b.booking_id), q)
        except IndexQueryError as exc:
            return _error(400, "invalid_request", str(exc))
        selected = rows[(page - 1) * limit : page * limit]
        body = self._envelope(
            request,
            "index",
            len(selected),
            limit=limit,
            page=page,
            pages=max(1, math.ceil(len(rows) / limit)),
            path=["booking", "index"],
            total_records=len(rows),
        )
        body["booking/index"] = {str(b.booking_id): self._index_row(b) for b in selected}
        return web.json_response(body)

    async def _h_transact(self, request: web.Request) -> web.Response:
        if not self.expose_transactions:
            raise web.HTTPNotFound()
        b = self._lookup(request)
        records = {tx.transaction_id: self._tx_record(b, tx) for tx in b.transactions}
        body = self._envelope(request, "transact", len(records), currency=b.currency)
        body["booking/transact"] = records
        return web.json_response(body)

    async def _h_update(self, request: web.Request) -> web.Response:
        b = self._lookup(request)
        params = {**request.query, **request[_FORM]}
        status_id = params.get("status_id", "").strip().upper()
        if not status_id:
            return _error(400, "invalid_request", "status_id is required.")
        if status_id not in self.statuses:
            return _error(400, "invalid_request", f"Unknown status_id: {status_id[:20]}.")
        set_paid = _flag(params.get("set_paid"))
        if set_paid and status_id == "PAID" and b.paid_total < b.total:
            self.add_transaction(b.booking_id, amount=b.total - b.paid_total, gateway_id="POS")
        now = int(time.time())
        b.status = status_id
        for item in b.items:
            item.status = status_id
        b.last_modified = now
        b.history.append(StatusChange(status_id, _flag(params.get("notify")), set_paid, now))
        body = self._envelope(request, b.code, 1, currency=b.currency)
        body["booking"] = {
            "booking_id": b.booking_id,
            "code": b.code,
            "status_id": b.status,
            "status_name": self.statuses[b.status],
        }
        return web.json_response(body)

    async def _h_note(self, request: web.Request) -> web.Response:
        b = self._lookup(request)
        text = {**request.query, **request[_FORM]}.get("body", "")
        if not text.strip():
            return _error(400, "invalid_request", "body is required.")
        if len(text) > NOTE_MAX_CHARS:
            return _error(400, "invalid_request", f"body exceeds {NOTE_MAX_CHARS} characters.")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        note = SandboxNote(self._next_note_id, text, stamp)
        self._next_note_id += 1
        b.notes.append(note)
        body = self._envelope(request, b.code, 1, currency=b.currency)
        body["note"] = self._note_row(b, note)
        return web.json_response(body)

    @staticmethod
    def _note_row(b: SandboxBooking, n: SandboxNote) -> dict[str, Any]:
        return {
            "note_id": n.note_id,
            "account_id": n.account_id,
            "date": n.date,
            "body": n.body,
            "private": n.private,
            "booking_id": b.code,
        }

    async def _h_booking_notes(self, request: web.Request) -> web.Response:
        b = self._lookup(request)
        rows = [self._note_row(b, n) for n in b.notes]
        body = self._envelope(request, "notes", len(rows), currency=b.currency)
        body["notes"] = rows
        return web.json_response(body)

    async def _h_all_notes(self, request: web.Request) -> web.Response:
        day = {**request.query, **request[_FORM]}.get("date", "")
        rows = [
            self._note_row(b, n)
            for b in self._bookings.values()
            for n in b.notes
            if n.date.startswith(day)
        ]
        body = self._envelope(request, "notes", len(rows))
        body["notes"] = rows
        return web.json_response(body)


def _error(
    status: int, code: str, description: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": code, "error_description": description}, status=status, headers=headers
    )

