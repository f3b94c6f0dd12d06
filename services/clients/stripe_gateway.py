"""The Stripe gateway: refunds, refund look-ups and listings, and what disputes and failed
payments need (evidence, closing, re-confirming, payment links), with the retries around them.

Only `services/clients/` speaks Stripe: this module makes the calls; `stripe_money` holds
Stripe's amount rules, `stripe_records` reads Stripe's objects, `stripe_errors` its failures and
`stripe_events` its webhook signatures. Amounts cross this boundary in the project's minor
units (`services.money` exponents, ISO 4217).

Retries: the official client retries connection errors, timeouts, 409 and 5xx itself
(`max_network_retries`, same idempotency key each time). It does not retry 429, so this module
does, honouring `Retry-After`, with the same key. A 5xx Stripe stored under a key is replayed on
every retry: such a failure is reported as `unavailable` with `maybe_applied=True`, meaning the
refund may exist; look for it (`refunds_for`, by metadata) before deciding anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import stripe

from services.clients.stripe_errors import StripeGatewayError, gateway_error
from services.clients.stripe_money import checked_currency, from_stripe_amount, to_stripe_amount
from services.clients.stripe_records import (
    StripeDispute,
    StripePayment,
    StripePaymentLink,
    StripeRefund,
    dispute_from,
    payment_from,
    ref_id,
    refund_from,
    refunds_page,
)

REFUND_REASON = "requested_by_customer"
# Text evidence a dispute accepts (file evidence takes upload ids and is not sent from here).
DISPUTE_TEXT_EVIDENCE = frozenset({
    "access_activity_log", "billing_address", "cancellation_policy_disclosure",
    "cancellation_rebuttal", "customer_email_address", "customer_name", "customer_purchase_ip",
    "duplicate_charge_explanation", "duplicate_charge_id", "product_description",
    "refund_policy_disclosure", "refund_refusal_explanation", "service_date", "shipping_address",
    "shipping_carrier", "shipping_date", "shipping_tracking_number", "uncategorized_text",
})
EVIDENCE_TEXT_LIMIT = 150_000  # Stripe: combined characters of all text evidence

T = TypeVar("T")


class StripeGateway:
    """Refund operations against Stripe (or a stand-in at `api_base`).

    send_reason: send `reason=requested_by_customer` with each refund. Stripe accepts it;
    localstripe rejects any parameter it does not know, `reason` included, so turn it off there.
    """

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        max_network_retries: int = 2,
        timeout: float = 20.0,
        rate_limit_retries: int = 3,
        backoff_base: float = 0.5,
        send_reason: bool = True,
        max_retry_after: float = 60.0,
    ) -> None:
        if not api_key:
            raise ValueError("a Stripe API key is required")
        self._http = stripe.HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            http_client=self._http,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=max_network_retries,
        )
        self._rate_limit_retries = rate_limit_retries
        self._backoff_base = backoff_base
        self._send_reason = send_reason
        self._max_retry_after = max_retry_after

    async def close(self) -> None:
        await self._http.close_async()

    async def unrefunded_amount(self, payment_ref: str) -> tuple[int, str]:
        """What is still refundable on a payment (`pi_...` or `ch_...`): minor units, currency."""
        charge = await self._charge_of(payment_ref)
        currency = str(charge["currency"]).upper()
        if charge.get("status") != "succeeded":
            raise StripeGatewayError(
                "invalid", f"payment {payment_ref} has no successful charge to refund"
            )
        remaining = int(charge["amount"]) - int(charge.get("amount_refunded") or 0)
        return from_stripe_amount(max(remaining, 0), currency), currency

    async def create_refund(
        self,
        *,
        payment_ref: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> StripeRefund:
        """Refund `amount` (minor units of `currency`) of a payment, exactly once per key.

        The payment's currency is checked first: an amount is never sent in the wrong currency.
        """
        ref_field = _ref_field(payment_ref)
        code = checked_currency(currency)
        stripe_amount = to_stripe_amount(amount, code)
        key = _key(idempotency_key)
        paid_in = await self._payment_currency(payment_ref)
        if paid_in != code:
            raise StripeGatewayError(
                "invalid", f"payment {payment_ref} is in {paid_in}, not {code}"
            )
        params: dict[str, Any] = {
            ref_field: payment_ref,
            "amount": stripe_amount,
            "metadata": {str(k): str(v) for k, v in metadata.items()},
        }
        if self._send_reason:
            params["reason"] = REFUND_REASON
        options: stripe.RequestOptions = {"idempotency_key": key}
        refund = await self._call(
            lambda: self._client.v1.refunds.create_async(params, options), writes=True
        )
        return refund_from(refund)

    async def get_refund(self, refund_id: str) -> StripeRefund:
        if not refund_id:
            raise StripeGatewayError("invalid", "refund id is empty")
        refund = await self._call(
            lambda: self._client.v1.refunds.retrieve_async(refund_id), writes=False
        )
        return refund_from(refund)

    async def iter_refunds(
        self, *, created_gte: int, created_lt: int, page_size: int = 100
    ) -> AsyncIterator[StripeRefund]:
        """Refunds created in [created_gte, created_lt), newest first, fetched page by page."""
        if not 1 <= page_size <= 100:
            raise StripeGatewayError("invalid", "page_size must be 1..100")
        params: dict[str, Any] = {
            "created": {"gte": created_gte, "lt": created_lt}, "limit": page_size
        }
        async for refund in self._listed_refunds(params):
            yield refund

    async def refunds_for(self, payment_ref: str) -> list[StripeRefund]:
        """Every refund of one payment, newest first: how to settle a `maybe_applied` doubt."""
        params: dict[str, Any] = {_ref_field(payment_ref): payment_ref, "limit": 100}
        return [refund async for refund in self._listed_refunds(params)]

    # ---- disputes ------------------------------------------------------------------------

    async def get_dispute(self, dispute_id: str) -> StripeDispute:
        if not dispute_id:
            raise StripeGatewayError("invalid", "dispute id is empty")
        dispute = await self._call(
            lambda: self._client.v1.disputes.retrieve_async(dispute_id), writes=False
        )
        return dispute_from(dispute)

    async def submit_dispute_evidence(
        self,
        dispute_id: str,
        evidence: Mapping[str, str],
        *,
        idempotency_key: str,
        submit: bool = True,
    ) -> StripeDispute:
        """Send text evidence; `submit=False` only stages it on the dispute."""
        unknown = sorted(set(evidence) - DISPUTE_TEXT_EVIDENCE)
        if unknown:
            raise StripeGatewayError("invalid", f"not text evidence fields: {', '.join(unknown)}")
        text = {k: str(v) for k, v in evidence.items() if str(v).strip()}
        size = sum(len(v) for v in text.values())
        if size > EVIDENCE_TEXT_LIMIT:
            raise StripeGatewayError(
                "invalid", f"evidence is {size} characters; Stripe takes {EVIDENCE_TEXT_LIMIT}"
            )
        params: dict[str, Any] = {"evidence": text, "submit": submit}
        options: stripe.RequestOptions = {"idempotency_key": _key(idempotency_key)}
        dispute = await self._call(
            lambda: self._client.v1.disputes.update_async(dispute_id, params, options),
            writes=True,
        )
        return dispute_from(dispute)

    async def close_dispute(self, dispute_id: str, *, idempotency_key: str) -> StripeDispute:
        """Accept the dispute: Stripe closes it as lost. Irreversible."""
        options: stripe.RequestOptions = {"idempotency_key": _key(idempotency_key)}
        dispute = await self._call(
            lambda: self._client.v1.disputes.close_async(dispute_id, None, options), writes=True
        )
        return dispute_from(dispute)

    # ---- payments ------------------------------------------------------------------------

    async def payment_metadata(self, payment_ref: str) -> dict[str, str]:
        """The metadata of a PaymentIntent or charge (where a booking code may be kept)."""
        if _ref_field(payment_ref) == "payment_intent":
            return (await self.get_payment(payment_ref)).metadata
        charge = await self._charge_of(payment_ref)
        return {str(k): str(v) for k, v in (charge.get("metadata") or {}).items()}

    async def get_payment(self, payment_intent: str) -> StripePayment:
        pi = await self._call(
            lambda: self._client.v1.payment_intents.retrieve_async(payment_intent), writes=False
        )
        return payment_from(pi.to_dict())

    async def confirm_payment(
        self, payment_intent: str, *, idempotency_key: str, payment_method: str | None = None
    ) -> StripePayment:
        """Confirm (retry) a PaymentIntent. A declined card is an answer, not an error: the
        result then carries `error` and the status Stripe left the intent in."""
        params: dict[str, Any] = {}
        if payment_method:
            params["payment_method"] = payment_method
        options: stripe.RequestOptions = {"idempotency_key": _key(idempotency_key)}
        try:
            pi = await self._call(
                lambda: self._client.v1.payment_intents.confirm_async(
                    payment_intent, params, options),
                writes=True,
            )
        except StripeGatewayError as exc:
            cause = exc.__cause__
            if isinstance(cause, stripe.CardError):
                body = (cause.json_body or {}).get("error") or {}
                intent = body.get("payment_intent")
                if isinstance(intent, dict):
                    return payment_from(intent)
                current = await self.get_payment(payment_intent)
                return StripePayment(
                    current.id, current.amount, current.currency, current.status,
                    current.metadata, exc.message, body.get("decline_code"),
                    current.payment_method, current.failed_payment_method)
            raise
        return payment_from(pi.to_dict())

    async def create_payment_link(
        self,
        *,
        amount: int,
        currency: str,
        name: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> StripePaymentLink:
        """A one-time Payment Link for `amount` (minor units), paid at most once."""
        code = checked_currency(currency)
        meta = {str(k): str(v) for k, v in metadata.items()}
        params: dict[str, Any] = {
            "line_items": [{
                "price_data": {"currency": code.lower(), "unit_amount": to_stripe_amount(
                    amount, code), "product_data": {"name": name[:250] or "Booking"}},
                "quantity": 1,
            }],
            "metadata": meta,
            "payment_intent_data": {"metadata": meta},
            "restrictions": {"completed_sessions": {"limit": 1}},
        }
        options: stripe.RequestOptions = {"idempotency_key": _key(idempotency_key)}
        link = await self._call(
            lambda: self._client.v1.payment_links.create_async(params, options), writes=True
        )
        data = link.to_dict()
        return StripePaymentLink(str(data["id"]), str(data["url"]), bool(data.get("active")))

    # ---- internals ---------------------------------------------------------------------------

    async def _listed_refunds(self, params: Mapping[str, Any]) -> AsyncIterator[StripeRefund]:
        """Every refund Stripe lists for `params`, newest first, page by page: each next page
        starts after the last refund of the one before, until Stripe says there is no more.

        Pages are read as plain JSON through the official client's `raw_request_async` (auth,
        API version, retries and errors stay its job) and only the fields a `StripeRefund`
        holds are kept: no client object is built per refund. While the caller works through
        one page the next is already being fetched, one page ahead and never more; a caller
        that stops early cancels it."""
        query = dict(params)
        ahead: asyncio.Task[tuple[list[StripeRefund], bool]] | None = \
            asyncio.ensure_future(self._refund_page(dict(query)))
        try:
            while ahead is not None:
                refunds, has_more = await ahead
                ahead = None
                if has_more and refunds:
                    query["starting_after"] = refunds[-1].id
                    ahead = asyncio.ensure_future(self._refund_page(dict(query)))
                for refund in refunds:
                    yield refund
        finally:
            if ahead is not None:
                ahead.cancel()

    async def _refund_page(self, query: dict[str, Any]) -> tuple[list[StripeRefund], bool]:
        """One page of `GET /v1/refunds`: its refunds and whether Stripe has more."""
        response = await self._call(
            partial(self._client.raw_request_async, "get", "/v1/refunds", **query),
            writes=False,
        )
        return refunds_page(response.data)

    async def _payment_currency(self, payment_ref: str) -> str:
        if payment_ref.startswith("pi_"):
            pi = await self._call(
                lambda: self._client.v1.payment_intents.retrieve_async(payment_ref),
                writes=False,
            )
            return str(pi.to_dict()["currency"]).upper()
        charge = await self._charge_of(payment_ref)
        return str(charge["currency"]).upper()

    async def _charge_of(self, payment_ref: str) -> dict[str, Any]:
        if _ref_field(payment_ref) == "payment_intent":
            pi = (
                await self._call(
                    lambda: self._client.v1.payment_intents.retrieve_async(payment_ref),
                    writes=False,
                )
            ).to_dict()
            charge_id = ref_id(pi.get("latest_charge"))
            if not charge_id:
                raise StripeGatewayError(
                    "invalid",
                    f"payment {payment_ref} has no charge (status {pi.get('status')})",
                )
        else:
            charge_id = payment_ref
        charge = await self._call(
            lambda: self._client.v1.charges.retrieve_async(charge_id), writes=False
        )
        return charge.to_dict()

    async def _call(self, op: Callable[[], Awaitable[T]], *, writes: bool) -> T:
        attempt = 0
        while True:
            try:
                return await op()
            except stripe.RateLimitError as exc:
                if attempt >= self._rate_limit_retries:
                    raise gateway_error(exc, writes=writes) from exc
                await asyncio.sleep(self._retry_delay(exc, attempt))
                attempt += 1
            except stripe.StripeError as exc:
                raise gateway_error(exc, writes=writes) from exc

    def _retry_delay(self, exc: stripe.StripeError, attempt: int) -> float:
        retry_after = _header(exc, "retry-after")
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self._max_retry_after)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return min(self._backoff_base * 2**attempt, self._max_retry_after)


def _ref_field(payment_ref: str) -> str:
    if payment_ref.startswith("pi_"):
        return "payment_intent"
    if payment_ref.startswith(("ch_", "py_")):
        return "charge"
    raise StripeGatewayError(
        "invalid", f"not a Stripe payment reference (pi_... or ch_...): {payment_ref!r}"
    )


def _key(idempotency_key: str) -> str:
    if not idempotency_key or len(idempotency_key) > 255:
        raise StripeGatewayError("invalid", "idempotency key must be 1..255 characters")
    return idempotency_key


def _header(exc: stripe.StripeError, name: str) -> str | None:
    headers = exc.headers or {}
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None
