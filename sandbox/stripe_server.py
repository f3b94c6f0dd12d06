"""A local Stripe stand-in: payment intents, charges, refunds, disputes, events, signed webhooks.

It speaks the v1 form-encoded API the official client sends and keeps Stripe's documented
semantics where refunds depend on them:

- Bearer auth with any `sk_test_...` key, or a registered restricted `rk_test_...` key with
  its permissions (401 otherwise, 403 for a missing permission: `sandbox.stripe_account`,
  which also serves `GET /v1/account` and `GET /v1/webhook_endpoints`); errors as
  `{"error": {type, message, code, param}}` with the HTTP statuses the client maps to its
  exception classes.
- Idempotency (POST, `Idempotency-Key`, scoped per API key): the first answer of an executed
  request - success, a processing error (over-refund, no such payment) or a 500 after processing -
  is stored and replayed byte for byte with `Idempotent-Replayed: true`. Other parameters under
  the same key: 400 `idempotency_error`. Parameter validation errors happen before execution and
  are not stored. A request arriving while the same key is executing: 409. With
  `idempotency_ttl_seconds` (off by default) a key is forgotten that long after its first
  answer, as Stripe prunes keys after 24 hours: its reuse is then a new request
  (`sandbox.stripe_idempotency`).
- Refunds: several partial refunds per charge; pending and succeeded refunds count against the
  charge; more than what is left is refused with Stripe's message, nothing left is
  `charge_already_refunded`. Three-decimal currencies need amounts divisible by 10.
- Faults (`inject`) for the next matching requests: 500 before or after processing, 429 with
  Retry-After, timeouts, connection resets. See `sandbox.stripe_faults.Fault`.
- A rate limit (`rate_limit=Limit(rate, burst)`, off by default; settable while serving): a
  token bucket over every authenticated request of the account, as Stripe's global limiter
  (25 a second in test mode, 100 live). Over it: 429 with Stripe's body (`invalid_request_error`,
  code `rate_limit`) and `Stripe-Rate-Limited-Reason: global-rate`, and no `Retry-After`:
  Stripe documents none, it asks for exponential back-off. Nothing is executed or stored; the
  request is recorded with `limited=True` and counted in `rate_limited`.
- Events for refund.created/updated/failed, charge.refunded, charge.refund.updated,
  charge.dispute.created/updated/closed and payment_intent.payment_failed, delivered signed to
  one endpoint.
- Disputes take evidence (`POST /v1/disputes/{id}`, staged or submitted) and can be closed
  (`POST /v1/disputes/{id}/close`, the dispute is then lost); payment links
  (`POST /v1/payment_links`) with inline `price_data`, one URL each.

- Balance transactions and automatic daily payouts (`sandbox.stripe_balance`): a charge's
  transaction carries its processing fee, a refund's is negative with no fee returned, a failed
  refund gets its `refund_failure` reversal; `hold_from_payouts` keeps a refund out of every
  payout, `run_payouts` makes the payouts due by a time.

Setting up payments (`add_payment`, `POST /v1/payment_intents`) emits no events. Retrieving a
PaymentIntent takes `expand[]=latest_charge`, as Stripe's does: the charge comes in its place.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from sandbox.rate_limit import Buckets, Limit
from sandbox.stripe_account import AccountKeys
from sandbox.stripe_balance import Balance
from sandbox.stripe_faults import Fault, FaultQueue
from sandbox.stripe_forms import FormError, parse_form
from sandbox.stripe_idempotency import (
    IdempotencyMemory,
    StoredAnswer,
    idempotency_mismatch,
    in_progress,
)
from sandbox.stripe_objects import (
    ACTIVE_REFUND_STATUSES,
    REFUND_REASONS,
    Charge,
    Dispute,
    Event,
    PaymentIntent,
    Refund,
    amount_rule_violation,
    format_amount,
    new_id,
)
from sandbox.stripe_params import (
    ApiError,
    Ordered,
    allow,
    flag,
    invalid,
    list_page,
    metadata_param,
    missing,
    opt_int,
    opt_str,
    required_int,
)
from sandbox.stripe_webhooks import Delivery, WebhookSender

API_VERSION = "2026-10-28.endive"
RATE_LIMIT_MESSAGE = ("Request rate limit exceeded. You can learn more about rate limits here "
                      "https://stripe.com/docs/rate-limits.")
REFUND_FAILURE_REASONS = (
    "charge_for_pending_refund_disputed",
    "declined",
    "expired_or_canceled_card",
    "insufficient_funds",
    "lost_or_stolen_card",
    "merchant_request",
    "unknown",
)
DISPUTE_TEXT_EVIDENCE = frozenset({
    "access_activity_log", "billing_address", "cancellation_policy_disclosure",
    "cancellation_rebuttal", "customer_email_address", "customer_name", "customer_purchase_ip",
    "duplicate_charge_explanation", "duplicate_charge_id", "product_description",
    "refund_policy_disclosure", "refund_refusal_explanation", "service_date", "shipping_address",
    "shipping_carrier", "shipping_date", "shipping_tracking_number", "uncategorized_text",
})
DISPUTE_FILE_EVIDENCE = frozenset({
    "cancellation_policy", "customer_communication", "customer_signature",
    "duplicate_charge_documentation", "receipt", "refund_policy", "service_documentation",
    "shipping_documentation", "uncategorized_file",
})
EVIDENCE_TEXT_LIMIT = 150_000
DISPUTE_CLOSED = frozenset({"won", "lost", "warning_closed", "prevented"})
DISPUTE_FREED = frozenset({"won", "prevented"})   # the charge can be refunded again
DISPUTE_APPEALED = frozenset({"appeal_needs_response", "appeal_under_review"})  # after a loss
DECLINING_PAYMENT_METHODS = frozenset(
    {"pm_card_chargeDeclined", "pm_card_visa_chargeDeclined",
     "pm_card_chargeDeclinedInsufficientFunds"}
)
_CURRENCY = re.compile(r"^[a-z]{3}$")
_BEARER = re.compile(r"^Bearer\s+(\S+)$", re.IGNORECASE)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Call:
    """What the middleware learnt about the request being answered."""

    request_id: str
    idempotency_key: str | None
    params: dict[str, Any] = field(default_factory=dict)
    fault: Fault | None = None
    replayed: bool = False
    reset: bool = False
    limited: bool = False


_CALL: ContextVar[_Call | None] = ContextVar("stripe_sandbox_call", default=None)


def _current() -> _Call:
    call = _CALL.get()
    assert call is not None, "only inside a request"
    return call


def _ok(payload: dict[str, Any]) -> web.Response:
    return _json(payload, _current().request_id)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the stand-in saw it. `status` is None when the connection was dropped
    (reset); a held answer (timeout) is recorded with the status it carried, client gone or not."""

    method: str
    path: str
    idempotency_key: str | None
    status: int | None
    replayed: bool
    fault: str | None
    limited: bool = False  # refused by the rate limit (429, not executed)


class StripeSandbox:
    """State and HTTP face of the stand-in. Build once per test; serve `app()` on loopback."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        timeout_delay: float = 1.0,
        refund_mode: Literal["succeeded", "pending"] = "succeeded",
        webhook_timeout: float = 5.0,
        idempotency_ttl_seconds: float | None = None,
        rate_limit: Limit | None = None,
        rate_clock: Callable[[], float] = time.monotonic,
        automatic_payouts: bool = True,
    ) -> None:
        self.clock = clock
        # balance transactions and automatic payouts (`sandbox.stripe_balance`)
        self.balance = Balance(lambda: self.clock(), automatic_payouts=automatic_payouts)
        self._rate_clock = rate_clock
        self._limiter: Buckets | None = None
        self._refused_before = 0
        self.rate_limit = rate_limit
        self.timeout_delay = timeout_delay
        self.refund_mode: str = refund_mode
        self.payment_intents: dict[str, PaymentIntent] = {}
        self.charges: dict[str, Charge] = {}
        self.disputes: dict[str, Dispute] = {}
        self.dispute_evidence: dict[str, dict[str, str]] = {}
        self.dispute_submissions: dict[str, int] = {}
        self.payment_links: dict[str, dict[str, Any]] = {}
        self._refunds: dict[str, Refund] = {}
        self._events: dict[str, Event] = {}
        self._refund_order = Ordered()   # refund lists page through this
        self._refund_moves = 0           # bumped when a refund moves in time (backdate)
        self._event_order = Ordered()
        self.requests: list[RequestRecord] = []
        self.faults = FaultQueue()
        self.webhooks = WebhookSender(clock=clock, timeout=webhook_timeout)
        self.keys = IdempotencyMemory(lambda: self.clock(), idempotency_ttl_seconds)
        self.account = AccountKeys()  # restricted keys: `account.restrict(key, permissions)`
        self._seq = 0

    # ---- Python API for tests and the demo -------------------------------------------------

    @property
    def refunds(self) -> list[Refund]:
        """All refunds, oldest first."""
        return list(self._refunds.values())

    @property
    def events(self) -> list[Event]:
        """All events, oldest first."""
        return list(self._events.values())

    @property
    def deliveries(self) -> list[Delivery]:
        return self.webhooks.deliveries

    def refund(self, refund_id: str) -> Refund:
        return self._refunds[refund_id]

    @property
    def idempotency_ttl_seconds(self) -> float | None:
        """Keys older than this (by `clock`) are forgotten, as Stripe prunes them after 24 hours
        (`STRIPE_KEY_TTL_SECONDS`); None (the default): kept for the stand-in's life."""
        return self.keys.ttl_seconds

    @idempotency_ttl_seconds.setter
    def idempotency_ttl_seconds(self, seconds: float | None) -> None:
        self.keys.ttl_seconds = seconds

    @property
    def rate_limit(self) -> Limit | None:
        """The token bucket every request passes (None: no limit). Setting it starts a full
        bucket and keeps the count of requests refused so far."""
        return self._limiter.limit if self._limiter is not None else None

    @rate_limit.setter
    def rate_limit(self, limit: Limit | None) -> None:
        refused = self.rate_limited
        self._limiter = Buckets(limit, self._rate_clock) if limit is not None else None
        self._refused_before = refused

    @property
    def rate_limited(self) -> int:
        """How many requests the rate limit refused (with a 429) since the stand-in started."""
        return self._refused_before + (self._limiter.limited if self._limiter is not None else 0)

    def backdate(self, refund_id: str, created: int) -> Refund:
        """Move a refund in time (tests of day windows); list pages see it at once."""
        refund = self._refunds[refund_id]
        refund.created = created
        self._refund_moves += 1
        self.balance.moved(refund)
        return refund

    def hold_from_payouts(self, refund_id: str) -> Refund:
        """Keep a refund out of every automatic payout (until `release_to_payouts`)."""
        refund = self._refunds[refund_id]
        self.balance.hold(refund.id)
        return refund

    def release_to_payouts(self, refund_id: str) -> None:
        self.balance.release(refund_id)

    def run_payouts(self, until: int | None = None) -> list[Any]:
        """Make the automatic payouts due by `until` (the clock's now by default)."""
        return self.balance.run_payouts(until)

    def add_payment(
        self,
        amount: int,
        currency: str,
        *,
        metadata: dict[str, str] | None = None,
        created: int | None = None,
    ) -> PaymentIntent:
        """A succeeded PaymentIntent `pi_...` with its charge `ch_...` (amount in Stripe units)."""
        currency = _check_setup_amount(amount, currency)
        pi = self._new_payment_intent(amount, currency, metadata or {}, created)
        pi.payment_method = "pm_card_visa"
        self._succeed(pi)
        return pi

    def fail_payment(
        self,
        amount: int,
        currency: str,
        *,
        metadata: dict[str, str] | None = None,
        decline_code: str = "insufficient_funds",
        created: int | None = None,
    ) -> PaymentIntent:
        """A PaymentIntent whose card was declined; emits payment_intent.payment_failed."""
        currency = _check_setup_amount(amount, currency)
        pi = self._new_payment_intent(amount, currency, metadata or {}, created)
        pi.payment_method = "pm_card_chargeDeclined"
        self._decline(pi, decline_code)
        return pi

    def create_dispute(
        self,
        charge_id: str,
        amount: int | None = None,
        reason: str = "fraudulent",
        due_by: int | None = None,
        charge_refundable: bool = False,
    ) -> Dispute:
        """Open a dispute on a charge; emits charge.dispute.created. A `charge_refundable`
        dispute (an inquiry, say) still lets the charge be refunded."""
        charge = self.charges[charge_id]
        now = self._now()
        dispute = Dispute(
            id=new_id("dp_"),
            amount=charge.amount if amount is None else amount,
            currency=charge.currency,
            charge=charge.id,
            payment_intent=charge.payment_intent,
            reason=reason,
            due_by=due_by if due_by is not None else now + 14 * 86400,
            created=now,
            charge_refundable=charge_refundable,
        )
        self.disputes[dispute.id] = dispute
        charge.disputed = True
        self._emit("charge.dispute.created", dispute.to_json())
        return dispute

    def decide_dispute(self, dispute_id: str,
                       status: Literal["won", "lost", "prevented"]) -> Dispute:
        """The card network's verdict (`prevented`: stopped before it became a chargeback);
        emits charge.dispute.closed."""
        return self._move_dispute(dispute_id, status, "charge.dispute.closed")

    def update_dispute_status(self, dispute_id: str, status: str) -> Dispute:
        """Move an open dispute on (under review, or an appeal of a lost one); emits
        charge.dispute.updated."""
        return self._move_dispute(dispute_id, status, "charge.dispute.updated")

    def _move_dispute(self, dispute_id: str, status: str, event_type: str) -> Dispute:
        dispute = self.disputes[dispute_id]
        previous = {"status": dispute.status}
        dispute.status = status
        self._emit(event_type, self.dispute_json(dispute), previous=previous)
        return dispute

    def set_refund_mode(self, mode: Literal["succeeded", "pending"]) -> None:
        """Whether new refunds come back `succeeded` or `pending` (then `settle_refund`)."""
        if mode not in ("succeeded", "pending"):
            raise ValueError("refund mode is 'succeeded' or 'pending'")
        self.refund_mode = mode

    def settle_refund(
        self,
        refund_id: str,
        status: Literal["succeeded", "failed", "canceled"] = "succeeded",
        failure_reason: str | None = None,
    ) -> Refund:
        """Move a refund on: pending -> succeeded|failed|canceled, or succeeded -> failed."""
        refund = self._refunds[refund_id]
        allowed = {
            "pending": ("succeeded", "failed", "canceled"),
            "requires_action": ("succeeded", "failed", "canceled"),
            "succeeded": ("failed",),
        }.get(refund.status, ())
        if status not in allowed:
            raise ValueError(f"refund {refund_id} is {refund.status}; cannot become {status}")
        if status == "failed":
            reason = failure_reason or "unknown"
            if reason not in REFUND_FAILURE_REASONS:
                raise ValueError(f"unknown refund failure_reason {reason!r}")
        elif failure_reason is not None:
            raise ValueError("failure_reason only applies to failed refunds")
        self._change_refund_status(refund, status, failure_reason)
        return refund

    def inject(self, fault: Fault | str, **options: Any) -> Fault:
        """Queue a fault: `inject("429", retry_after=0.1)` or `inject(Fault(...))`."""
        if isinstance(fault, str):
            fault = Fault(kind=fault, **options)  # type: ignore[arg-type]
        elif options:
            raise TypeError("options apply only when the fault is given by kind")
        return self.faults.add(fault)

    def configure_webhook(
        self,
        url: str,
        secret: str,
        *,
        events: Collection[str] | None = None,
        retries: int = 0,
        retry_delay: float = 0.05,
    ) -> None:
        """Deliver future events (all, or the given types) to `url`, signed with `secret`."""
        self.webhooks.configure(url, secret, events=events, retries=retries,
                                retry_delay=retry_delay)

    async def drain_webhooks(self) -> None:
        """Wait until all queued deliveries are done."""
        await self.webhooks.drain()

    def resend_event(self, event_id: str) -> bool:
        """Queue an event again, as Stripe does when it retries or duplicates a delivery."""
        return self.webhooks.enqueue(self._events[event_id].to_json())

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        routes = [
            ("POST", "/v1/payment_intents", self._create_payment_intent),
            ("GET", "/v1/payment_intents/{id}", self._get_payment_intent),
            ("POST", "/v1/payment_intents/{id}/confirm", self._confirm_payment_intent),
            ("GET", "/v1/charges/{id}", self._get_charge),
            ("POST", "/v1/refunds", self._create_refund),
            ("GET", "/v1/refunds", self._list_refunds),
            ("GET", "/v1/refunds/{id}", self._get_refund),
            ("POST", "/v1/refunds/{id}/cancel", self._cancel_refund),
            ("GET", "/v1/events", self._list_events),
            ("GET", "/v1/events/{id}", self._get_event),
            ("GET", "/v1/disputes/{id}", self._get_dispute),
            ("POST", "/v1/disputes/{id}", self._update_dispute),
            ("POST", "/v1/disputes/{id}/close", self._close_dispute),
            ("POST", "/v1/payment_links", self._create_payment_link),
            ("GET", "/v1/payment_links/{id}", self._get_payment_link),
            ("GET", "/v1/account", self._get_account),
            ("GET", "/v1/webhook_endpoints", self._list_webhook_endpoints),
            ("GET", "/v1/balance_transactions", self._list_balance_transactions),
            ("GET", "/v1/balance_transactions/{id}", self._get_balance_transaction),
            ("GET", "/v1/payouts", self._list_payouts),
            ("GET", "/v1/payouts/{id}", self._get_payout),
            ("POST", "/v1/test_helpers/payouts/run", self._run_payouts),
            ("POST", "/v1/test_helpers/refunds/{id}/hold_from_payouts", self._hold_refund),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_cleanup(self, _app: web.Application) -> None:
        await self.webhooks.close()

    # ---- HTTP plumbing -----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        call = _Call(request_id=new_id("req_"), idempotency_key=key)
        token = _CALL.set(call)
        status: int | None = None
        try:
            response = await self._answer(request, handler, call)
            if not call.reset:
                status = response.status
            return response
        finally:
            _CALL.reset(token)
            self.requests.append(
                RequestRecord(
                    method=request.method,
                    path=request.path,
                    idempotency_key=key,
                    status=status,
                    replayed=call.replayed,
                    fault=call.fault.kind if call.fault else None,
                    limited=call.limited,
                )
            )

    async def _answer(
        self, request: web.Request, handler: Handler, call: _Call
    ) -> web.StreamResponse:
        request_id, key = call.request_id, call.idempotency_key
        try:
            api_key = self.account.authenticate(_api_key(request))
            resource = request.match_info.route.resource
            self.account.authorize(api_key, request.method,
                                   resource.canonical if resource is not None else None)
        except ApiError as exc:
            return self._error(exc, request_id)
        if self._limiter is not None and self._limiter.take():
            call.limited = True
            return self._rate_limited(request_id)
        fault = call.fault = self.faults.take(request.method, request.path)
        if fault and not fault.after_processing:
            if fault.kind in ("500", "429"):
                return self._fault_answer(fault, request_id)
            if fault.kind == "reset":
                return _reset(request)
        try:
            call.params, pairs = await _read_params(request)
        except ApiError as exc:
            return self._error(exc, request_id)
        holding = None
        if fault and fault.kind == "timeout" and not fault.after_processing:
            holding = fault

        if key is None:
            if holding:
                await asyncio.sleep(self._delay(holding))
            response, _ = await self._execute(request, handler)
            if fault and fault.kind == "500" and fault.after_processing:
                response = self._fault_answer(fault, request_id)
            return await self._after(request, fault, response)

        scope = (api_key, key)
        fingerprint = (request.method, request.path, tuple(sorted(pairs)))
        stored = self.keys.answer(scope)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                return self._error(idempotency_mismatch(key), request_id)
            call.replayed = True
            return await self._after(request, fault, self._replay(stored, request_id))
        if self.keys.executing(scope):
            return self._error(in_progress(key), request_id)
        self.keys.begin(scope)
        try:
            if holding:
                await asyncio.sleep(self._delay(holding))
            response, keep = await self._execute(request, handler)
            if fault and fault.kind == "500" and fault.after_processing:
                response, keep = self._fault_answer(fault, request_id), True
            if keep:
                self.keys.keep(scope, fingerprint, response.status, _body(response), request_id)
        finally:
            self.keys.end(scope)
        return await self._after(request, fault, response)

    async def _after(
        self, request: web.Request, fault: Fault | None, response: web.Response
    ) -> web.StreamResponse:
        if fault and fault.after_processing:
            if fault.kind == "timeout":
                await asyncio.sleep(self._delay(fault))
            elif fault.kind == "reset":
                return _reset(request)
        return response

    async def _execute(
        self, request: web.Request, handler: Handler
    ) -> tuple[web.Response, bool]:
        request_id = _current().request_id
        try:
            response = await handler(request)
        except ApiError as exc:
            return self._error(exc, request_id), exc.stored
        except web.HTTPNotFound:
            exc = ApiError(
                404, f"Unrecognized request URL ({request.method}: {request.path}).",
                stored=False,
            )
            return self._error(exc, request_id), False
        except web.HTTPMethodNotAllowed:
            exc = ApiError(
                405, f"Unrecognized request URL ({request.method}: {request.path}).",
                stored=False,
            )
            return self._error(exc, request_id), False
        assert isinstance(response, web.Response)
        return response, True

    def _delay(self, fault: Fault) -> float:
        return fault.delay if fault.delay is not None else self.timeout_delay

    def _fault_answer(self, fault: Fault, request_id: str) -> web.Response:
        headers: dict[str, str] = {}
        if fault.should_retry is not None:
            headers["Stripe-Should-Retry"] = "true" if fault.should_retry else "false"
        if fault.kind == "429":
            headers["Retry-After"] = _seconds(fault.retry_after)
            exc = ApiError(429, RATE_LIMIT_MESSAGE, code="rate_limit")
        else:
            exc = ApiError(
                500,
                "An unknown error occurred while processing your request.",
                type="api_error",
            )
        return self._error(exc, request_id, headers)

    def _rate_limited(self, request_id: str) -> web.Response:
        """Stripe's answer from its rate limiter: the reason header, no Retry-After."""
        exc = ApiError(429, RATE_LIMIT_MESSAGE, code="rate_limit")
        return self._error(exc, request_id, {"Stripe-Rate-Limited-Reason": "global-rate"})

    def _error(
        self, exc: ApiError, request_id: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return _json(exc.payload(), request_id, status=exc.status, headers=headers)

    def _replay(self, stored: StoredAnswer, request_id: str) -> web.Response:
        return web.Response(
            status=stored.status,
            body=stored.body,
            content_type="application/json",
            headers={
                "Request-Id": request_id,
                "Original-Request": stored.request_id,
                "Idempotent-Replayed": "true",
                "Stripe-Version": API_VERSION,
            },
        )

    # ---- Payment intents and charges ----------------------------------------------------------

    async def _create_payment_intent(self, request: web.Request) -> web.Response:
        p = _current().params
        allow(p, {"amount", "currency", "confirm", "payment_method", "payment_method_types",
                   "automatic_payment_methods", "metadata", "description", "customer",
                   "expand", "return_url", "off_session", "receipt_email"})
        amount = required_int(p, "amount")
        currency = p.get("currency")
        if not isinstance(currency, str) or not _CURRENCY.match(currency.lower()):
            raise invalid("Missing required param: currency.", "currency", "parameter_missing")
        currency = currency.lower()
        rule = amount_rule_violation(amount, currency)
        if rule:
            raise invalid(rule, "amount", "invalid_charge_amount")
        metadata = metadata_param(p)
        confirm = flag(p, "confirm")
        payment_method = opt_str(p, "payment_method")
        if confirm and not payment_method:
            raise invalid(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                "payment_method", "payment_intent_unexpected_state",
            )
        pi = self._new_payment_intent(amount, currency, metadata, None)
        pi.payment_method = payment_method
        pi.description = opt_str(p, "description")
        pi.status = "requires_confirmation" if payment_method else "requires_payment_method"
        if confirm:
            self._confirm(pi)
        return _ok(pi.to_json())

    async def _confirm_payment_intent(self, request: web.Request) -> web.Response:
        p = _current().params
        allow(p, {"payment_method", "expand", "return_url", "off_session"})
        pi = self._payment_intent(request.match_info["id"], "intent")
        payment_method = opt_str(p, "payment_method")
        if payment_method:
            pi.payment_method = payment_method
        if pi.status not in ("requires_confirmation", "requires_payment_method"):
            raise ApiError(
                400,
                f"This PaymentIntent's status is {pi.status}, which does not allow confirmation.",
                code="payment_intent_unexpected_state",
            )
        if not pi.payment_method:
            raise invalid(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                "payment_method", "payment_intent_unexpected_state",
            )
        self._confirm(pi)
        return _ok(pi.to_json())

    async def _get_payment_intent(self, request: web.Request) -> web.Response:
        p = _current().params
        allow(p, {"expand"})
        pi = self._payment_intent(request.match_info["id"], "intent")
        body = pi.to_json()
        for path in _expanded(p):   # Stripe expands `latest_charge` into the charge itself
            if path != "latest_charge":
                raise invalid(f"This property cannot be expanded ({path}).", "expand")
            if pi.latest_charge:
                body["latest_charge"] = self._charge(pi.latest_charge, "latest_charge").to_json()
        return _ok(body)

    async def _get_charge(self, request: web.Request) -> web.Response:
        charge = self._charge(request.match_info["id"], "id")
        return _ok(charge.to_json())

    def _new_payment_intent(
        self, amount: int, currency: str, metadata: dict[str, str], created: int | None
    ) -> PaymentIntent:
        pi = PaymentIntent(
            id=new_id("pi_"),
            amount=amount,
            currency=currency,
            created=self._now() if created is None else created,
            metadata=dict(metadata),
            status="requires_payment_method",
        )
        pi.client_secret = f"{pi.id}_secret_{new_id('')[:16]}"
        self.payment_intents[pi.id] = pi
        return pi

    def _confirm(self, pi: PaymentIntent) -> None:
        if pi.payment_method in DECLINING_PAYMENT_METHODS:
            self._decline(pi, "generic_decline")
            raise ApiError(
                402,
                "Your card was declined.",
                type="card_error",
                code="card_declined",
                extra={"decline_code": "generic_decline",
                       "payment_intent": pi.to_json()},
            )
        self._succeed(pi)

    def _succeed(self, pi: PaymentIntent) -> None:
        charge = Charge(
            id=new_id("ch_"),
            amount=pi.amount,
            currency=pi.currency,
            created=pi.created,
            payment_intent=pi.id,
            metadata=dict(pi.metadata),
        )
        self.charges[charge.id] = charge
        charge.balance_transaction = self.balance.charged(charge).id
        pi.latest_charge = charge.id
        pi.status = "succeeded"

    def _decline(self, pi: PaymentIntent, decline_code: str) -> None:
        charge = Charge(
            id=new_id("ch_"),
            amount=pi.amount,
            currency=pi.currency,
            created=pi.created,
            payment_intent=pi.id,
            metadata=dict(pi.metadata),
            status="failed",
            failure_code="card_declined",
            failure_message="Your card was declined.",
        )
        self.charges[charge.id] = charge
        pi.latest_charge = charge.id
        pi.status = "requires_payment_method"
        pi.last_payment_error = {
            "charge": charge.id,
            "code": "card_declined",
            "decline_code": decline_code,
            "message": "Your card was declined.",
            "payment_method": {"id": pi.payment_method, "object": "payment_method",
                               "type": "card"},
            "type": "card_error",
        }
        self._emit("payment_intent.payment_failed", pi.to_json())

    # ---- Refunds -----------------------------------------------------------------------------

    async def _create_refund(self, request: web.Request) -> web.Response:
        p = _current().params
        allow(p, {"amount", "charge", "payment_intent", "reason", "metadata", "expand",
                   "instructions_email"})
        amount = opt_int(p, "amount")
        reason = opt_str(p, "reason")
        if reason is not None and reason not in REFUND_REASONS:
            raise invalid(
                "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                "reason",
            )
        metadata = metadata_param(p)
        charge_id = opt_str(p, "charge")
        pi_id = opt_str(p, "payment_intent")
        if not charge_id and not pi_id:
            raise invalid(
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
            )
        # Validation ends here: from now on the request executes and its answer is kept.
        charge = self._refundable_charge(charge_id, pi_id)
        remaining = charge.amount - charge.amount_refunded
        if remaining <= 0:
            raise ApiError(
                400, f"Charge {charge.id} has already been refunded.",
                code="charge_already_refunded",
            )
        if amount is None:
            amount = remaining
        rule = amount_rule_violation(amount, charge.currency)
        if rule:
            raise ApiError(400, rule, param="amount", code="invalid_charge_amount")
        if amount > remaining:
            limit = "charge amount" if charge.amount_refunded == 0 else (
                "unrefunded amount on charge"
            )
            raise ApiError(
                400,
                f"Refund amount ({format_amount(amount, charge.currency)}) is greater than "
                f"{limit} ({format_amount(remaining, charge.currency)})",
                param="amount",
            )
        self._seq += 1
        refund = Refund(
            id=new_id("re_"),
            amount=amount,
            currency=charge.currency,
            charge=charge.id,
            payment_intent=charge.payment_intent,
            status=self.refund_mode,
            reason=reason,
            metadata=metadata,
            created=self._now(),
            seq=self._seq,
        )
        self._refunds[refund.id] = refund
        refund.balance_transaction = self.balance.refunded(refund).id
        before = charge.to_json()
        charge.amount_refunded += amount
        self._emit("refund.created", refund.to_json())
        self._emit(
            "charge.refunded",
            charge.to_json(),
            previous={"amount_refunded": before["amount_refunded"],
                      "refunded": before["refunded"]},
        )
        return _ok(refund.to_json())

    def _refundable_charge(self, charge_id: str | None, pi_id: str | None) -> Charge:
        if pi_id:
            pi = self._payment_intent(pi_id, "payment_intent")
            if pi.status != "succeeded" or not pi.latest_charge:
                raise ApiError(
                    400,
                    f"This PaymentIntent ({pi.id}) does not have a successful charge to refund.",
                    param="payment_intent",
                )
            charge = self.charges[pi.latest_charge]
            if charge_id and charge_id != charge.id:
                raise ApiError(
                    400, f"Charge {charge_id} does not belong to PaymentIntent {pi.id}.",
                    param="charge",
                )
        else:
            assert charge_id is not None
            charge = self._charge(charge_id, "charge")
        if charge.status != "succeeded":
            raise ApiError(400, f"Charge {charge.id} has not succeeded; nothing to refund.",
                           param="charge")
        if self._refund_blocked_by_dispute(charge):
            raise ApiError(
                400, f"Charge {charge.id} has been charged back; cannot issue a refund.",
                code="charge_disputed",
            )
        return charge

    def _refund_blocked_by_dispute(self, charge: Charge) -> bool:
        """A dispute still open and not refundable, lost, or appealed after a loss: no refund
        (a won or prevented one frees it)."""
        return any(d.charge == charge.id and d.status not in DISPUTE_FREED and (
            d.status in DISPUTE_APPEALED
            or not (d.charge_refundable and d.status not in DISPUTE_CLOSED))
            for d in self.disputes.values())

    async def _get_refund(self, request: web.Request) -> web.Response:
        refund = self._refund(request.match_info["id"])
        return _ok(refund.to_json())

    async def _cancel_refund(self, request: web.Request) -> web.Response:
        allow(_current().params, {"expand"})
        refund = self._refund(request.match_info["id"])
        if refund.status not in ("pending", "requires_action"):
            raise ApiError(
                400,
                f"Refund {refund.id} cannot be canceled because it has a status of "
                f"{refund.status}. Only refunds with status requires_action can be canceled.",
                code="refund_cannot_be_canceled" if refund.status != "canceled" else None,
            )
        self._change_refund_status(refund, "canceled", None)
        return _ok(refund.to_json())

    async def _list_refunds(self, request: web.Request) -> web.Response:
        p = _current().params
        allow(p, {"charge", "payment_intent", "created", "limit", "starting_after",
                   "ending_before", "expand"})
        charge_id = opt_str(p, "charge")
        pi_id = opt_str(p, "payment_intent")
        ordered = self._refund_order.of(self._refunds.values(), self._refund_moves)
        if charge_id or pi_id:
            if charge_id:
                self._charge(charge_id, "charge")
            if pi_id:
                self._payment_intent(pi_id, "payment_intent")
            ordered = Ordered.fresh([r for r in ordered.rows
                                     if (not charge_id or r.charge == charge_id)
                                     and (not pi_id or r.payment_intent == pi_id)])
        return _ok(list_page(ordered, self._refunds, p, "/v1/refunds", "refund"))

    def _change_refund_status(
        self, refund: Refund, status: str, failure_reason: str | None
    ) -> None:
        previous: dict[str, Any] = {"status": refund.status}
        charge = self.charges[refund.charge]
        was_active = refund.status in ACTIVE_REFUND_STATUSES
        refund.status = status
        if status == "failed":
            refund.failure_reason = failure_reason or "unknown"
            refund.failure_balance_transaction = self.balance.refund_failed(refund).id
            previous["failure_reason"] = None
        if was_active and status not in ACTIVE_REFUND_STATUSES:
            charge.amount_refunded -= refund.amount
        snapshot = refund.to_json()
        self._emit("refund.updated", snapshot, previous=previous)
        if status == "failed":
            self._emit("refund.failed", snapshot)
        self._emit("charge.refund.updated", snapshot, previous=previous)

    # ---- Events and disputes -----------------------------------------------------------------

    async def _list_events(self, request: web.Request) -> web.Response:
        p = _current().params
        allow(p, {"type", "types", "created", "limit", "starting_after", "ending_before",
                   "expand", "delivery_success"})
        ordered = self._event_order.of(self._events.values())
        wanted = opt_str(p, "type")
        types = p.get("types")
        if wanted or isinstance(types, list):
            pattern = re.compile("^" + re.escape(wanted).replace(r"\*", ".*") + "$") \
                if wanted else None
            ordered = Ordered.fresh([
                e for e in ordered.rows if (pattern is None or pattern.match(e.type))
                and (not isinstance(types, list) or e.type in types)])
        return _ok(list_page(ordered, self._events, p, "/v1/events", "event"))

    async def _get_event(self, request: web.Request) -> web.Response:
        event_id = request.match_info["id"]
        event = self._events.get(event_id)
        if event is None:
            raise missing("event", event_id, "id")
        return _ok(event.to_json())

    async def _get_dispute(self, request: web.Request) -> web.Response:
        return _ok(self.dispute_json(self._dispute(request.match_info["id"])))

    async def _update_dispute(self, request: web.Request) -> web.Response:
        p = _current().params
        allow(p, {"evidence", "metadata", "submit", "expand"})
        evidence = p.get("evidence") or {}
        if not isinstance(evidence, dict):
            raise invalid("Invalid object", "evidence")
        for name, value in evidence.items():
            if name not in DISPUTE_TEXT_EVIDENCE | DISPUTE_FILE_EVIDENCE:
                raise invalid(f"Received unknown parameter: evidence[{name}]",
                              f"evidence[{name}]", "parameter_unknown")
            if not isinstance(value, str):
                raise invalid(f"Invalid string: {value!r}", f"evidence[{name}]")
            if name in DISPUTE_FILE_EVIDENCE and value and not value.startswith("file_"):
                raise invalid(f"No such file upload: '{value}'", f"evidence[{name}]",
                              "resource_missing")
        text = sum(len(v) for k, v in evidence.items() if k in DISPUTE_TEXT_EVIDENCE)
        if text > EVIDENCE_TEXT_LIMIT:
            raise invalid(f"The combined character count of all evidence fields is limited "
                          f"to {EVIDENCE_TEXT_LIMIT}.", "evidence")
        metadata = metadata_param(p)
        submit = True if p.get("submit") is None else flag(p, "submit")
        dispute = self._dispute(request.match_info["id"])
        if dispute.status not in ("needs_response", "warning_needs_response"):
            raise ApiError(
                400, f"This dispute is {dispute.status}; its evidence can no longer be changed.",
                code="dispute_already_submitted" if dispute.status not in DISPUTE_CLOSED
                else "dispute_closed")
        before = self.dispute_json(dispute)
        stored = self.dispute_evidence.setdefault(dispute.id, {})
        for name, value in evidence.items():
            if value:
                stored[name] = value
            else:
                stored.pop(name, None)
        dispute.metadata.update(metadata)
        previous: dict[str, Any] = {"evidence": before["evidence"]}
        if submit:
            previous["status"] = dispute.status
            dispute.status = "under_review" if dispute.status == "needs_response" \
                else "warning_under_review"
            self.dispute_submissions[dispute.id] = self.dispute_submissions.get(dispute.id, 0) + 1
        snapshot = self.dispute_json(dispute)
        self._emit("charge.dispute.updated", snapshot, previous=previous)
        return _ok(snapshot)

    async def _close_dispute(self, request: web.Request) -> web.Response:
        allow(_current().params, {"expand"})
        dispute = self._dispute(request.match_info["id"])
        if dispute.status in DISPUTE_CLOSED:
            raise ApiError(400, f"This dispute is already closed ({dispute.status}).",
                           code="dispute_closed")
        previous = {"status": dispute.status}
        dispute.status = "warning_closed" if dispute.status.startswith("warning_") else "lost"
        snapshot = self.dispute_json(dispute)
        self._emit("charge.dispute.closed", snapshot, previous=previous)
        return _ok(snapshot)

    def dispute_json(self, dispute: Dispute) -> dict[str, Any]:
        """The dispute with the evidence it holds (every evidence field, null when unset)."""
        data = dispute.to_json()
        held = self.dispute_evidence.get(dispute.id, {})
        fields = sorted(DISPUTE_TEXT_EVIDENCE | DISPUTE_FILE_EVIDENCE)
        data["evidence"] = {name: held.get(name) for name in fields}
        data["evidence_details"]["has_evidence"] = bool(held)
        data["evidence_details"]["submission_count"] = self.dispute_submissions.get(dispute.id, 0)
        return data

    def _dispute(self, dispute_id: str) -> Dispute:
        dispute = self.disputes.get(dispute_id)
        if dispute is None:
            raise missing("dispute", dispute_id, "dispute")
        return dispute

    # ---- Payment links -----------------------------------------------------------------------

    async def _create_payment_link(self, request: web.Request) -> web.Response:
        p = _current().params
        allow(p, {"line_items", "metadata", "payment_intent_data", "restrictions", "currency",
                   "after_completion", "expand", "inactive_message"})
        items = p.get("line_items")
        if not isinstance(items, list) or not items:
            raise invalid("Missing required param: line_items.", "line_items", "parameter_missing")
        currency: str | None = None
        for n, item in enumerate(items):
            where = f"line_items[{n}]"
            if not isinstance(item, dict):
                raise invalid("Invalid object", where)
            allow(item, {"price", "price_data", "quantity", "adjustable_quantity"})
            required_int(item, "quantity")
            if item.get("price"):
                raise ApiError(400, f"No such price: '{item['price']}'", code="resource_missing",
                               param=f"{where}[price]", stored=False)
            data = item.get("price_data")
            if not isinstance(data, dict):
                raise invalid("One of `price` or `price_data` is required.", where)
            code = str(data.get("currency") or "").lower()
            if not _CURRENCY.match(code):
                raise invalid("Missing required param: currency.",
                              f"{where}[price_data][currency]", "parameter_missing")
            if currency not in (None, code):
                raise invalid("All prices on a payment link must share a currency.", where)
            currency = code
            unit = required_int(data, "unit_amount")
            rule = amount_rule_violation(unit, code)
            if rule:
                raise invalid(rule, f"{where}[price_data][unit_amount]")
            product = data.get("product_data")
            if not isinstance(product, dict) or not opt_str(product, "name"):
                raise invalid("Missing required param: name.",
                              f"{where}[price_data][product_data][name]", "parameter_missing")
        metadata = metadata_param(p)
        intent_data = p.get("payment_intent_data") or {}
        restrictions = None
        limits = (p.get("restrictions") or {}).get("completed_sessions") \
            if isinstance(p.get("restrictions"), dict) else None
        if isinstance(limits, dict):
            limit = required_int(limits, "limit")
            restrictions = {"completed_sessions": {"count": 0, "limit": limit}}
        link_id = new_id("plink_")
        link: dict[str, Any] = {
            "id": link_id,
            "object": "payment_link",
            "active": True,
            "allow_promotion_codes": False,
            "currency": currency,
            "livemode": False,
            "metadata": metadata,
            "payment_intent_data": intent_data if isinstance(intent_data, dict) else None,
            "restrictions": restrictions,
            "url": f"https://buy.stripe.com/test_{link_id[len('plink_'):]}",
            "line_items_sandbox": items,
        }
        self.payment_links[link_id] = link
        return _ok(_public_link(link))

    async def _get_payment_link(self, request: web.Request) -> web.Response:
        link_id = request.match_info["id"]
        link = self.payment_links.get(link_id)
        if link is None:
            raise missing("payment_link", link_id, "id")
        return _ok(_public_link(link))

    def _emit(
        self,
        event_type: str,
        obj: dict[str, Any],
        *,
        previous: dict[str, Any] | None = None,
    ) -> Event:
        """Record an event; inside a request it carries that request's id and idempotency key."""
        call = _CALL.get()
        self._seq += 1
        data: dict[str, Any] = {"object": obj}
        if previous:
            data["previous_attributes"] = previous
        event = Event(
            id=new_id("evt_"),
            type=event_type,
            created=self._now(),
            seq=self._seq,
            data=data,
            request_id=call.request_id if call is not None else None,
            idempotency_key=call.idempotency_key if call is not None else None,
            pending_webhooks=1 if self.webhooks.will_deliver(event_type) else 0,
            api_version=API_VERSION,
        )
        self._events[event.id] = event
        self.webhooks.enqueue(event.to_json())
        return event

    # ---- Lookups -----------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self.clock())

    def _payment_intent(self, pi_id: str, param: str) -> PaymentIntent:
        pi = self.payment_intents.get(pi_id)
        if pi is None:
            raise missing("payment_intent", pi_id, param)
        return pi

    def _charge(self, charge_id: str, param: str) -> Charge:
        charge = self.charges.get(charge_id)
        if charge is None:
            raise missing("charge", charge_id, param)
        return charge

    def _refund(self, refund_id: str) -> Refund:
        refund = self._refunds.get(refund_id)
        if refund is None:
            raise missing("refund", refund_id, "id")
        return refund

    # ---- Balance transactions and payouts (sandbox.stripe_balance) ---------------------------

    async def _list_balance_transactions(self, request: web.Request) -> web.Response:
        return _ok(self.balance.list_transactions(_current().params, self._object_json))

    async def _get_balance_transaction(self, request: web.Request) -> web.Response:
        return _ok(self.balance.get_transaction(request.match_info["id"], _current().params,
                                                self._object_json))

    async def _list_payouts(self, request: web.Request) -> web.Response:
        return _ok(self.balance.list_payouts(_current().params))

    async def _get_payout(self, request: web.Request) -> web.Response:
        allow(_current().params, {"expand"})
        return _ok(self.balance.get_payout(request.match_info["id"]))

    async def _run_payouts(self, request: web.Request) -> web.Response:
        """Test control: make the automatic payouts due by `until` (default: now)."""
        p = _current().params
        allow(p, {"until"})
        until = opt_int(p, "until")
        made = self.balance.run_payouts(until)
        now = self._now()
        return _ok({"object": "list", "url": "/v1/test_helpers/payouts/run",
                    "has_more": False, "data": [po.to_json(now) for po in made]})

    async def _hold_refund(self, request: web.Request) -> web.Response:
        """Test control: keep a refund out of every payout."""
        allow(_current().params, set())
        refund = self._refund(request.match_info["id"])
        self.balance.hold(refund.id)
        return _ok(refund.to_json())

    def _object_json(self, object_id: str) -> dict[str, Any] | None:
        """Any object by its id, for `expand[]`."""
        if object_id.startswith("re_") and object_id in self._refunds:
            return self._refunds[object_id].to_json()
        if object_id.startswith(("ch_", "py_")) and object_id in self.charges:
            return self.charges[object_id].to_json()
        if object_id.startswith("pi_") and object_id in self.payment_intents:
            return self.payment_intents[object_id].to_json()
        if object_id.startswith("dp_") and object_id in self.disputes:
            return self.dispute_json(self.disputes[object_id])
        return self.balance.json_of(object_id)

    # ---- The account and its webhook endpoints (sandbox.stripe_account) ----------------------

    async def _get_account(self, request: web.Request) -> web.Response:
        return _ok(self.account.account_json())

    async def _list_webhook_endpoints(self, request: web.Request) -> web.Response:
        return _ok(self.account.webhook_endpoints_json(self.webhooks.endpoint))


# ---- Helpers --------------------------------------------------------------------------------


def _api_key(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    match = _BEARER.match(header.strip())
    if not match:
        raise ApiError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
            stored=False,
        )
    return match.group(1)  # which keys are valid: `AccountKeys.authenticate`


async def _read_params(request: web.Request) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    if request.method == "POST":
        form = await request.post()
        pairs = [(k, v) for k, v in form.items() if isinstance(v, str)]
    else:
        pairs = list(request.query.items())
    try:
        return parse_form(pairs), pairs
    except FormError as exc:
        raise invalid(str(exc)) from None


def _expanded(params: dict[str, Any]) -> list[str]:
    """The `expand[]` paths asked for (the form parser gives a list, or one string)."""
    value = params.get("expand")
    if value is None:
        return []
    paths = value if isinstance(value, list) else [value]
    if not all(isinstance(path, str) for path in paths):
        raise invalid("Invalid array", "expand")
    return paths


def _json(
    payload: dict[str, Any],
    request_id: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, indent=2).encode("utf-8"),
        content_type="application/json",
        headers={"Request-Id": request_id, "Stripe-Version": API_VERSION, **(headers or {})},
    )


def _body(response: web.Response) -> bytes:
    body = response.body
    assert isinstance(body, bytes)
    return body


def _reset(request: web.Request) -> web.Response:
    """Drop the connection; aiohttp then has nowhere to write the response it gets back."""
    _current().reset = True
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _public_link(link: dict[str, Any]) -> dict[str, Any]:
    """A payment link as the API shows it (line items are a separate, expandable list)."""
    return {k: v for k, v in link.items() if k != "line_items_sandbox"}


def _check_setup_amount(amount: int, currency: str) -> str:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        raise ValueError("amount must be a positive integer in Stripe's minor units")
    code = currency.lower()
    if not _CURRENCY.match(code):
        raise ValueError(f"not a currency code: {currency!r}")
    rule = amount_rule_violation(amount, code)
    if rule:
        raise ValueError(rule)
    return code


