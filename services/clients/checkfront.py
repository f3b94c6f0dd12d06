"""Async client for the Checkfront API 3.0 (token auth over HTTP Basic).

`get_booking_snapshot` maps `GET booking/{id}` into the shape of Checkfront's booking
webhook (`{"booking": {..., "order": {"items": {"item": [...]}}}}`) and adds a
top-level `transactions` list read from `GET booking/{id}/transact` when the account
exposes it. That endpoint and the booking body are not in the published docs, so the
mapping accepts the variants seen in practice: items keyed by line id, as a list, or
as `{"item": obj | list}`; transactions as a list or keyed object. Amounts stay decimal
strings; `items.item` is always a list in the output.

Never logs credentials, note bodies, or customer details.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from services.errors import DomainError

log = logging.getLogger(__name__)

NOTE_MAX_CHARS = 3000
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_STATUS = re.compile(r"^[A-Za-z0-9_]{1,16}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class CheckfrontError(DomainError):
    """Base error; the message is safe to show a user (no secrets, no customer data)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CheckfrontAuthError(CheckfrontError):
    """Checkfront rejected the API key/secret (HTTP 401/403)."""


class BookingNotFound(CheckfrontError):
    """No such booking (HTTP 404, or a reference that cannot name a booking)."""


class CheckfrontUnavailable(CheckfrontError):
    """Checkfront could not be reached or kept failing (5xx/429 after retries, timeouts)."""


class CheckfrontClient:
    """Bookings, status updates and notes on one Checkfront account."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff_base: float = 0.5,
        max_backoff: float = 8.0,
        fetch_transactions: bool = True,
    ) -> None:
        self._base = _normalise_base(base_url)
        if not api_key or not api_secret:
            raise ValueError("Checkfront API key and secret are required")
        self._auth = httpx.BasicAuth(api_key, api_secret)
        self._retries = max(0, retries)
        self._backoff_base = max(0.0, backoff_base)
        self._max_backoff = max(0.0, max_backoff)
        self._fetch_transactions = fetch_transactions
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,  # followed by hand so credentials go only where allowed
            headers={"Accept": "application/json", "User-Agent": "refund-bot/0.1"},
        )

    def __repr__(self) -> str:
        return f"CheckfrontClient(base_url={self._base!r})"

    @property
    def base_url(self) -> str:
        """Current base URL (changes after a permanent redirect to a migrated host)."""
        return self._base

    async def __aenter__(self) -> CheckfrontClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- public calls ------------------------------------------------------------------

    async def get_booking_snapshot(self, booking: str) -> dict[str, Any]:
        """Booking by numeric id or code, in booking-webhook shape plus `transactions`."""
        ref = _booking_ref(booking)
        data = await self._request("GET", f"booking/{quote(ref)}")
        raw = data.get("booking")
        if not isinstance(raw, dict):
            raise CheckfrontError("Checkfront returned a booking response without a booking.")
        locale = data.get("locale")
        account_currency = locale.get("currency") if isinstance(locale, dict) else None
        snapshot: dict[str, Any] = {"booking": _to_webhook_shape(raw, account_currency)}
        if self._fetch_transactions:
            booking_id = snapshot["booking"]["@attributes"]["booking_id"] or ref
            transactions = await self._transactions(booking_id, snapshot["booking"]["code"])
            if transactions is not None:
                snapshot["transactions"] = transactions
        return snapshot

    async def update_status(self, booking_id: str, status_id: str, *, notify: bool = False) -> None:
        """Set the booking status (e.g. "VOID"); customer notifications only if `notify`."""
        ref = _booking_ref(booking_id)
        status = status_id.strip().upper()
        if not _STATUS.match(status):
            raise ValueError("status_id must be a Checkfront status code such as VOID")
        form = {"status_id": status, "notify": "1" if notify else "0"}
        # Re-sending a status is harmless; re-sending a notification is not.
        await self._request(
            "POST", f"booking/{quote(ref)}/update", data=form, idempotent=not notify
        )

    async def add_note(self, booking_id: str, body: str) -> None:
        """Add a staff note; longer bodies are cut to Checkfront's 3000-character limit."""
        ref = _booking_ref(booking_id)
        await self._request(
            "POST",
            f"booking/{quote(ref)}/note",
            data={"body": truncate_note(body)},
            idempotent=False,
        )

    # ---- transport ---------------------------------------------------------------------

    async def _transactions(self, booking_id: str, code: str) -> list[dict[str, Any]] | None:
        try:
            data = await self._request("GET", f"booking/{quote(booking_id)}/transact")
        except CheckfrontError as exc:
            if exc.status in (403, 404, 405, 501):
                log.info("Checkfront transactions not available (HTTP %s)", exc.status)
                return None
            raise
        for key in ("booking/transact", "transact", "transactions"):
            if key in data:
                return [_transaction(t, code) for t in _records(data[key])]
        return None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response = await self._send(method, path, data, params)
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                failure = CheckfrontUnavailable(_transport_message(exc))
                if attempt >= self._retries or not (idempotent or never_sent):
                    raise failure from exc
                delay = self._delay(attempt, None)
                outcome = type(exc).__name__
            else:
                status = response.status_code
                if status < 300:
                    return _json_body(response)
                if status in (429, 503) or status >= 500:
                    failure = CheckfrontUnavailable(
                        f"Checkfront is unavailable right now (HTTP {status}).", status=status
                    )
                    # 429 and 503 mean the request was refused, so even a note is safe to resend.
                    if attempt >= self._retries or not (idempotent or status in (429, 503)):
                        raise failure
                    delay = self._delay(attempt, response.headers.get("Retry-After"))
                    outcome = f"HTTP {status}"
                else:
                    raise _client_error(response, path)
            attempt += 1
            log.warning(
                "Checkfront %s %s failed (%s); retry %d/%d in %.2fs",
                method,
                _path_for_log(path),
                outcome,
                attempt,
                self._retries,
                delay,
            )
            await asyncio.sleep(delay)

    async def _send(
        self,
        method: str,
        path: str,
        data: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
    ) -> httpx.Response:
        url = httpx.URL(f"{self._base}/api/3.0/{path}")
        for _ in range(_MAX_REDIRECTS + 1):
            response = await self._http.request(
                method, url, data=data, params=params, auth=self._auth
            )
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            target = url.join(location)
            if not _may_carry_credentials(url, target):
                raise CheckfrontError(
                    "Checkfront redirected to an untrusted address; request not repeated.",
                    status=response.status_code,
                )
            if response.status_code in (301, 308) and target.path == url.path:
                self._base = f"{target.scheme}://{target.netloc.decode()}"
                log.info("Checkfront host moved permanently; now using %s", self._base)
            if response.status_code == 303:
                method, data = "GET", None
            url, params = target, None
        raise CheckfrontUnavailable("Checkfront redirected too many times.")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        hinted = _retry_after_seconds(retry_after)
        if hinted is not None:
            return min(hinted, self._max_backoff)
        ceiling = min(self._max_backoff, self._backoff_base * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)


# ---- mapping ---------------------------------------------------------------------------


def truncate_note(body: str) -> str:
    """Note text without control characters, at most 3000 characters (ellipsis if cut)."""
    text = _CONTROL.sub("", body).strip()
    if not text:
        raise ValueError("note body is empty")
    if len(text) <= NOTE_MAX_CHARS:
        return text
    return text[: NOTE_MAX_CHARS - 1].rstrip() + "…"


def _to_webhook_shape(raw: Mapping[str, Any], account_currency: Any) -> dict[str, Any]:
    status = _text(raw.get("status_id") or raw.get("status")).upper()
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
        sub_total = sum((_dec(i["total"]) - _dec(i["tax_total"]) for i in items), Decimal(0))
    customer_in = _dict(raw.get("customer"))
    booking: dict[str, Any] = {
        "@attributes": {"booking_id": _text(attrs.get("booking_id") or raw.get("booking_id"))},
        "status": status,
        "code": _text(raw.get("code")),
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
    return {
        "@attributes": {"line_id": _text(line_id), "item_id": _text(item_id)},
        "start_date": _text(it.get("start_date")),
        "end_date": _text(it.get("end_date")),
        "sku": _text(it.get("sku")),
        "name": _text(it.get("name")),
        "status": _text(it.get("status_id") or it.get("status") or booking_status).upper(),
        "total": _amount(it.get("total")),
        "tax_total": _amount(it.get("tax_total")),
        "qty": _text(it.get("qty") or "1"),
    }


def _records(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    if isinstance(value, dict):
        if "transaction_id" in value:
            return [value]
        return [v for v in value.values() if isinstance(v, dict)]
    return []


def _transaction(raw: Mapping[str, Any], code: str) -> dict[str, Any]:
    status = _text(raw.get("status")).upper()
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


# ---- helpers ---------------------------------------------------------------------------


def _normalise_base(base_url: str) -> str:
    url = httpx.URL(base_url.strip().rstrip("/"))
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("Checkfront base URL must look like https://your-company.checkfront.com")
    if url.scheme == "http" and url.host not in _LOOPBACK:
        raise ValueError("Checkfront base URL must use https (plain http only for loopback)")
    path = url.path.rstrip("/").removesuffix("/api/3.0")
    return f"{url.scheme}://{url.netloc.decode()}{path}"


def _booking_ref(value: str) -> str:
    ref = str(value).strip()
    if not _REF.match(ref):
        raise BookingNotFound("That is not a Checkfront booking id or code.")
    return ref


def _may_carry_credentials(origin: httpx.URL, target: httpx.URL) -> bool:
    """Credentials follow a redirect to the same host, or to another host over https."""
    if target.scheme not in ("http", "https"):
        return False
    return target.host == origin.host or target.scheme == "https"


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        raise CheckfrontError(
            "Checkfront returned a response that is not JSON.", status=response.status_code
        ) from None
    if not isinstance(data, dict):
        raise CheckfrontError("Checkfront returned an unexpected response.")
    if "error" in data and "request" not in data:
        raise CheckfrontError(
            f"Checkfront refused the request: {_error_text(data)}", status=response.status_code
        )
    return data


def _client_error(response: httpx.Response, path: str) -> CheckfrontError:
    status = response.status_code
    if status in (401, 403):
        return CheckfrontAuthError(
            f"Checkfront rejected the API credentials (HTTP {status}).", status=status
        )
    if status == 404:
        ref = path.split("/")[1] if path.startswith("booking/") else path
        return BookingNotFound(f"Checkfront has no booking {ref}.", status=status)
    try:
        detail = _error_text(json.loads(response.content))
    except ValueError:
        detail = "no details"
    return CheckfrontError(
        f"Checkfront refused the request (HTTP {status}): {detail}", status=status
    )


def _error_text(data: Any) -> str:
    if isinstance(data, dict):
        for key in ("error_description", "message", "error"):
            value = data.get(key)
            if isinstance(value, dict):
                return _error_text(value)
            if value:
                return _CONTROL.sub("", str(value))[:200]
    return "no details"


def _transport_message(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "Checkfront did not answer in time."
    return "Could not connect to Checkfront."


def _path_for_log(path: str) -> str:
    return path.split("?", 1)[0]
