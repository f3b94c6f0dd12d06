"""The Stripe gateway: refunds, refund look-ups and listings, and what disputes and failed
payments need (evidence, closing, re-confirming, payment links), each call paced and retried.

Only `services/clients/` speaks Stripe: this module makes the calls; `stripe_money` holds
Stripe's amount rules, `stripe_records` reads Stripe's objects, `stripe_errors` its failures and
`stripe_events` its webhook signatures. Amounts cross this boundary in the project's minor
units (`services.money` exponents, ISO 4217).

Retries and pacing are `stripe_calls.StripeCalls`: the official client retries connection
errors, timeouts, 409 and 5xx itself (same idempotency key each time); 429 is retried there,
with the same key, on one paced schedule per gateway at `max_requests_per_second` (by default
Stripe's documented limit for the key, `documented_limit`: 25 a second in test mode, 100 live;
0 turns pacing off). A 5xx Stripe stored under a key is replayed on every retry: such a
failure is reported as `unavailable` with `maybe_applied=True`, meaning the refund may exist;
look for it (`refunds_for`, by metadata) before deciding anything.

Calls per refund: what is left on a PaymentIntent is one retrieve (`expand=["latest_charge"]`
brings the charge along); the refund is one create. The currency check before the create
uses the currency Stripe gave for that payment when it was read: a payment with a successful
charge never changes currency, so the gateway remembers it (`PAID_IN_REMEMBERED` payments) and
asks Stripe only for a payment it has not read yet. Those answers (the refund, the
PaymentIntent, the charge) are read as plain JSON through the official client's
`raw_request_async` (`_raw`): its auth, retries, idempotency key and error mapping, without
building its objects.

Settlement reads (`iter_balance_transactions`, `iter_payouts`) are read-only listings of
balance transactions and payouts, read the same way; `stripe_balance` holds their records and
the listing, given the gateway's paced plain-JSON read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote_plus

import stripe

from services.clients.pacing import Pacer
from services.clients.stripe_balance import (
    StripeBalanceTransaction,
    StripePayout,
    balance_transactions,
    payouts,
)
from services.clients.stripe_calls import StripeCalls
from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_listing import one_page_ahead
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
from services.clients.stripe_sdk import get_json, quiet_sdk_logging, request_json

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
# Stripe's documented global rate limits, requests a second per account
TEST_MODE_LIMIT = 25.0
LIVE_MODE_LIMIT = 100.0
PAID_IN_REMEMBERED = 10_000  # payments whose currency is kept for the check before a refund

quiet_sdk_logging()   # the client's request log formatted only when it would be shown

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
        max_requests_per_second: float | None = None,
        request_burst: int | None = None,
        http_client: stripe.AIOHTTPClient | None = None,  # the SDK's client, e.g. timed
    ) -> None:
        if not api_key:
            raise ValueError("a Stripe API key is required")
        rate = documented_limit(api_key) if max_requests_per_second is None \
            else max_requests_per_second
        self.pacer = Pacer(rate, request_burst or max(1, int(rate // 5))) if rate > 0 else None
        # the SDK's aiohttp client: a call costs a third of the CPU its httpx client takes
        self._http = http_client or stripe.AIOHTTPClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            http_client=self._http,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=max_network_retries,
        )
        self._call = StripeCalls(self.pacer, rate_limit_retries=rate_limit_retries,
                                 backoff_base=backoff_base, max_retry_after=max_retry_after)
        self._send_reason = send_reason
        # payment (pi_/ch_) -> its currency, read from a successful charge: it never changes
        self._paid_in: OrderedDict[str, str] = OrderedDict()

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
        # read as plain JSON (`_raw`): the idempotency key goes as the request's option
        refund = await self._raw("post", "/v1/refunds", params, writes=True,
                                 idempotency_key=key)
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

    # ---- settlement: balance transactions and payouts (read only, `stripe_balance`) -------

    def iter_balance_transactions(
        self, *, type: str | None = None, payout: str | None = None,
        source: str | None = None, created_gte: int | None = None,
        created_lt: int | None = None, expand: Sequence[str] = (), page_size: int = 100,
    ) -> AsyncIterator[StripeBalanceTransaction]:
        """Balance transactions, newest first, page by page (`GET /v1/balance_transactions`):
        of one `type`, one automatic `payout`, one `source`, created in [gte, lt)."""
        return balance_transactions(
            self._get, type=type, payout=payout, source=source, created_gte=created_gte,
            created_lt=created_lt, expand=expand, page_size=page_size)

    def iter_payouts(self, *, created_gte: int | None = None, created_lt: int | None = None,
                     page_size: int = 100) -> AsyncIterator[StripePayout]:
        """Payouts, newest first, page by page (`GET /v1/payouts`), created in [gte, lt)."""
        return payouts(self._get, created_gte=created_gte, created_lt=created_lt,
                       page_size=page_size)

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

    async def card_of(self, payment_ref: str) -> tuple[str, str] | None:
        """(brand, last four) of the card a payment was made with, from the charge's
        `payment_method_details.card`; None for another method. Nothing more of the card is
        read (a customer message says "Visa ending 4242", never more)."""
        charge = await self._charge_of(payment_ref)
        details = charge.get("payment_method_details") or {}
        card = details.get("card") if details.get("type") == "card" else None
        if not isinstance(card, dict) or not card.get("last4"):
            return None
        return str(card.get("brand") or "card"), str(card["last4"])[-4:]

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

    def _listed_refunds(self, params: Mapping[str, Any]) -> AsyncIterator[StripeRefund]:
        """Every refund Stripe lists for `params`, newest first, one page ahead
        (`stripe_listing.one_page_ahead`), each page read as plain JSON (`_refund_page`)."""
        return one_page_ahead(self._refund_page, params)

    async def _refund_page(self, query: dict[str, Any]) -> tuple[list[StripeRefund], bool]:
        """One page of `GET /v1/refunds`: its refunds and whether Stripe has more. Read as plain
        JSON (orjson) through the official client's request (`stripe_sdk.get_json`: auth, API
        version, retries and errors stay its job), keeping only what a `StripeRefund` holds: no
        client object is built per refund."""
        page = await self._call(partial(get_json, self._client, "/v1/refunds", query),
                                writes=False)
        return refunds_page(page)

    async def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """A read-only call read as plain JSON (`_raw`)."""
        return await self._raw("get", path, params, writes=False)

    async def _raw(self, method: str, path: str, params: dict[str, Any], *, writes: bool,
                   idempotency_key: str | None = None) -> dict[str, Any]:
        """One call read as plain JSON through the official client's request
        (`stripe_sdk.request_json`, what `raw_request_async` sends): its auth, API version,
        retries (with the idempotency key given, the same on every retry) and error mapping
        (the same `StripeError` subclasses, then `gateway_error`) are the client's; only the
        client objects (`StripeObject`, about a tenth of a refund's CPU) are not built, and a
        successful answer is parsed by orjson. Used where a record (`stripe_records`) or a few
        fields are all that is read of the answer."""
        data = await self._call(
            partial(request_json, self._client, method, path, params,
                    idempotency_key=idempotency_key),
            writes=writes,
        )
        if not isinstance(data, dict):
            raise StripeGatewayError("unavailable", f"Stripe's answer to {path} is not an object")
        return data

    async def _payment_currency(self, payment_ref: str) -> str:
        """The payment's currency: as Stripe gave it when the payment was last read here (a
        payment with a successful charge keeps its currency), else asked now."""
        known = self._paid_in.get(payment_ref)
        if known is not None:
            self._paid_in.move_to_end(payment_ref)
            return known
        if payment_ref.startswith("pi_"):
            pi = await self._raw("get", f"/v1/payment_intents/{quote_plus(payment_ref)}", {},
                                 writes=False)
            return str(pi["currency"]).upper()
        charge = await self._charge_of(payment_ref)
        return str(charge["currency"]).upper()

    async def _charge_of(self, payment_ref: str) -> dict[str, Any]:
        """The charge of a payment: a PaymentIntent's latest charge comes expanded in the same
        call (a Stripe emulator that leaves it an id costs one more); remembers the currency
        of a successful charge."""
        if _ref_field(payment_ref) == "payment_intent":
            pi = await self._raw("get", f"/v1/payment_intents/{quote_plus(payment_ref)}",
                                 {"expand": ["latest_charge"]}, writes=False)
            latest = pi.get("latest_charge")
            charge_id = ref_id(latest)
            if not charge_id:
                raise StripeGatewayError(
                    "invalid",
                    f"payment {payment_ref} has no charge (status {pi.get('status')})",
                )
        else:
            latest, charge_id = None, payment_ref
        if isinstance(latest, dict):
            charge = latest
        else:
            charge = await self._raw("get", f"/v1/charges/{quote_plus(charge_id)}", {},
                                     writes=False)
        if charge.get("status") == "succeeded":
            self._remember_currency((payment_ref, charge_id), str(charge["currency"]).upper())
        return charge

    def _remember_currency(self, refs: tuple[str, ...], currency: str) -> None:
        for ref in refs:
            self._paid_in[ref] = currency
            self._paid_in.move_to_end(ref)
        while len(self._paid_in) > PAID_IN_REMEMBERED:
            self._paid_in.popitem(last=False)


def documented_limit(api_key: str) -> float:
    """Stripe's global rate limit for the key's mode (a test key: test mode, else live)."""
    return TEST_MODE_LIMIT if api_key.startswith(("sk_test_", "rk_test_")) else LIVE_MODE_LIMIT


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
