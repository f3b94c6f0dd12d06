"""The Checkfront API 3.0 client: bookings, status updates and staff notes over HTTP, with
token auth (HTTP Basic), retries and redirects that never carry credentials where they
should not go.

`list_bookings` pages through `GET booking/index` with its filters (Checkfront API 3.0
reference, "booking/index": `status_id`, `customer_id`, `customer_email`, `start_date`,
`end_date`, `limit` (default 100) and `page`; the answer's `request.pages` says how many pages
there are; the later reference adds `item_id`, "only bookings containing this item", and
dates written as a date or a unix timestamp, `<` or `>` in front for before or after).

`get_booking_snapshot` returns `{"booking": ..., "transactions": [...]}` in the shape of
Checkfront's booking webhook (read by `checkfront_bodies`); `transactions` is there only when
the account exposes `GET booking/{id}/transact`; `get_booking` is the booking alone, one call.
The errors are in `checkfront_errors`; what is read and checked at the HTTP level (the base
address, the auth header, which redirect may carry credentials, `Retry-After`, an answer's
JSON body or its error) in `checkfront_http`.

`transport`: the httpx transport the calls go through (httpx's own by default); the bot gives
one over aiohttp (`bot.checkfront_transport`), which costs a case far less CPU. A transport must
report a request that may have reached Checkfront as anything but `ConnectError` or
`ConnectTimeout`: those are taken for "never sent" and resent even when not idempotent. A
given transport is called directly with the request httpx builds (its headers, Basic auth
header and timeouts, the event hooks run around it) rather than through `AsyncClient.send`,
whose other layers this client does not use: it follows redirects by hand, sends the same
auth header every time, and keeps no cookies (token auth has no session). Those layers were
about a fifth of the CPU of a Checkfront call in the worker.

Never logs credentials, note bodies, or customer details.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from services.clients.checkfront_bodies import booking_from_body, transactions_from_body
from services.clients.checkfront_errors import (
    BookingNotFound,
    CheckfrontError,
    CheckfrontUnavailable,
)
from services.clients.checkfront_http import (
    CONTROL,
    basic_authorization,
    client_error,
    json_body,
    may_carry_credentials,
    normalise_base,
    path_for_log,
    retry_after_seconds,
    transport_message,
)

log = logging.getLogger(__name__)
_httpx_log = logging.getLogger("httpx")   # the line httpx writes for each call, kept as it is

NOTE_MAX_CHARS = 3000
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_STATUS = re.compile(r"^[A-Za-z0-9_]{1,16}$")


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
        event_hooks: Mapping[str, list[Any]] | None = None,  # httpx's (the bot's metrics)
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = normalise_base(base_url)
        if not api_key or not api_secret:
            raise ValueError("Checkfront API key and secret are required")
        self._auth = httpx.BasicAuth(api_key, api_secret)
        self._authorization = basic_authorization(api_key, api_secret)
        self._transport = transport
        self._hooks = {kind: list((event_hooks or {}).get(kind, ()))
                       for kind in ("request", "response")}
        self._retries = max(0, retries)
        self._backoff_base = max(0.0, backoff_base)
        self._max_backoff = max(0.0, max_backoff)
        self._fetch_transactions = fetch_transactions
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,  # followed by hand so credentials go only where allowed
            headers={"Accept": "application/json", "User-Agent": "refund-bot/0.1"},
            event_hooks=event_hooks,
            transport=transport,   # None: httpx's own; the bot gives one over aiohttp
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

    async def ping(self) -> dict[str, Any]:
        """`GET ping` with the token pair: the account's name, host and locale (a credentials
        check that reads no booking)."""
        return await self._request("GET", "ping")

    async def get_booking(self, booking: str) -> dict[str, Any]:
        """Booking by numeric id or code, in booking-webhook shape, without its transactions
        (one call: what a status check needs)."""
        ref = _booking_ref(booking)
        return booking_from_body(await self._request("GET", f"booking/{quote(ref)}"))

    async def list_bookings(
        self,
        *,
        start_date: str | None = None,
        end_date: str | None = None,
        item_id: str | None = None,
        status_id: str | None = None,
        limit: int = 100,
        max_pages: int = 100,
    ) -> list[dict[str, Any]]:
        """Every `booking/index` row matching the filters, page after page (`limit` a page,
        1-100, at most `max_pages` pages): `booking_id`, `code`, `status_id`, totals as
        Checkfront writes them. A filter Checkfront does not know is ignored by it, so a caller
        that must be exact checks each booking itself."""
        params = {"limit": str(max(1, min(100, limit)))}
        for key, value in (("start_date", start_date), ("end_date", end_date),
                           ("item_id", item_id), ("status_id", status_id)):
            if value:
                params[key] = str(value)
        found: list[dict[str, Any]] = []
        page, pages = 1, 1
        while page <= min(pages, max_pages):
            data = await self._request("GET", "booking/index", params={**params,
                                                                       "page": str(page)})
            rows = data.get("booking/index") or {}
            found += [r for r in (rows.values() if isinstance(rows, dict) else rows)
                      if isinstance(r, dict)]
            try:
                pages = int((data.get("request") or {}).get("pages") or 1)
            except (TypeError, ValueError):
                pages = 1
            page += 1
        return found

    async def get_contact(self, booking: str) -> dict[str, str]:
        """The customer's email, first name and language (`fields.customer_language` or
        `fields.language` of the booking form, else empty), read when a message is sent to
        them: the store keeps none of these. One call; never logged."""
        body = await self._request("GET", f"booking/{quote(_booking_ref(booking))}")
        raw = body.get("booking") if isinstance(body.get("booking"), dict) else {}
        customer = raw.get("customer") if isinstance(raw.get("customer"), dict) else {}
        form = raw.get("fields") if isinstance(raw.get("fields"), dict) else {}
        name = str(customer.get("name") or raw.get("customer_name") or "").strip()
        return {
            "email": str(customer.get("email") or raw.get("customer_email") or "").strip(),
            "first_name": name.split()[0] if name else "",
            "language": str(form.get("customer_language") or form.get("language") or "")
            .strip(),
        }

    async def get_booking_snapshot(self, booking: str) -> dict[str, Any]:
        """Booking by numeric id or code, in booking-webhook shape plus `transactions`."""
        ref = _booking_ref(booking)
        shaped = await self.get_booking(ref)
        snapshot: dict[str, Any] = {"booking": shaped}
        if self._fetch_transactions:
            booking_id = shaped["@attributes"]["booking_id"] or ref
            transactions = await self._transactions(booking_id, shaped["code"])
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
        return transactions_from_body(data, code)

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
                failure = CheckfrontUnavailable(transport_message(exc))
                if attempt >= self._retries or not (idempotent or never_sent):
                    raise failure from exc
                delay = self._delay(attempt, None)
                outcome = type(exc).__name__
            else:
                status = response.status_code
                if status < 300:
                    return json_body(response)
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
                    raise client_error(response, path)
            attempt += 1
            log.warning(
                "Checkfront %s %s failed (%s); retry %d/%d in %.2fs",
                method,
                path_for_log(path),
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
            if self._transport is None:
                response = await self._http.request(
                    method, url, data=data, params=params, auth=self._auth
                )
            else:
                response = await self._exchange(method, url, data, params)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            target = url.join(location)
            if not may_carry_credentials(url, target):
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

    async def _exchange(
        self,
        method: str,
        url: httpx.URL,
        data: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
    ) -> httpx.Response:
        """One request straight through the given transport, as `AsyncClient.send` makes it:
        the request hooks, the call, httpx's log line, the response hooks (at the answer's
        headers), then the body read whole."""
        assert self._transport is not None
        request = self._http.build_request(method, url, data=data, params=params)
        request.headers["Authorization"] = self._authorization
        for hook in self._hooks["request"]:
            await hook(request)
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            _httpx_log.info('HTTP Request: %s %s "%s %d %s"', request.method, request.url,
                            response.http_version, response.status_code,
                            response.reason_phrase)
            for hook in self._hooks["response"]:
                await hook(response)
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        hinted = retry_after_seconds(retry_after)
        if hinted is not None:
            return min(hinted, self._max_backoff)
        ceiling = min(self._max_backoff, self._backoff_base * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)


# ---- helpers ---------------------------------------------------------------------------


def truncate_note(body: str) -> str:
    """Note text without control characters, at most 3000 characters (ellipsis if cut)."""
    text = CONTROL.sub("", body).strip()
    if not text:
        raise ValueError("note body is empty")
    if len(text) <= NOTE_MAX_CHARS:
        return text
    return text[: NOTE_MAX_CHARS - 1].rstrip() + "…"


def _booking_ref(value: str) -> str:
    ref = str(value).strip()
    if not _REF.match(ref):
        raise BookingNotFound("That is not a Checkfront booking id or code.")
    return ref
