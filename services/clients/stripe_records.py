"""What Stripe's refunds, disputes, PaymentIntents and Payment Links read as in the project's
terms: frozen records with amounts in project minor units and currencies in upper case.

The readers take the official client's objects or the plain JSON of a response alike;
`refunds_page` reads a list page's JSON straight into records, no client object in between,
each currency's rules looked up once a page (a listing holds thousands of refunds in a currency
or two)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_money import checked_currency, from_stripe_amount


@dataclass(frozen=True)
class StripeRefund:
    id: str
    amount: int  # project minor units
    currency: str  # upper case
    status: str  # pending | requires_action | succeeded | failed | canceled
    payment_intent: str | None
    charge: str | None
    failure_reason: str | None
    metadata: dict[str, str] = field(hash=False)
    created: int


@dataclass(frozen=True)
class StripeDispute:
    id: str
    amount: int  # project minor units
    currency: str  # upper case
    status: str  # needs_response | under_review | won | lost | warning_* ...
    reason: str
    charge: str | None
    payment_intent: str | None
    due_by: int | None  # evidence deadline, Unix seconds
    submission_count: int
    evidence: dict[str, str] = field(hash=False)  # text evidence Stripe holds


@dataclass(frozen=True)
class StripePayment:
    """A PaymentIntent as the bot needs it: `error` is the last payment error's message,
    `payment_method` the one attached now, `failed_payment_method` the one that failed."""

    id: str
    amount: int  # project minor units
    currency: str
    status: str
    metadata: dict[str, str] = field(hash=False)
    error: str | None = None
    decline_code: str | None = None
    payment_method: str | None = None
    failed_payment_method: str | None = None


@dataclass(frozen=True)
class StripePaymentLink:
    id: str
    url: str
    active: bool


def refund_from(obj: Any) -> StripeRefund:
    """A Stripe refund (object or mapping) as a `StripeRefund`."""
    data: Mapping[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else obj
    currency = str(data["currency"]).upper()
    metadata = data.get("metadata") or {}
    return StripeRefund(
        id=str(data["id"]),
        amount=from_stripe_amount(int(data["amount"]), currency),
        currency=currency,
        status=str(data.get("status") or "pending"),
        payment_intent=ref_id(data.get("payment_intent")),
        charge=ref_id(data.get("charge")),
        failure_reason=data.get("failure_reason"),
        metadata={str(k): str(v) for k, v in metadata.items()},
        created=int(data["created"]),
    )


def refunds_page(page: Mapping[str, Any]) -> tuple[list[StripeRefund], bool]:
    """A list page of refunds (its JSON: `data`, `has_more`) as records, and whether Stripe
    has more after it."""
    if page.get("object") != "list" or not isinstance(page.get("data"), list):
        raise StripeGatewayError("unavailable", "Stripe's answer to a listing is not a list")
    read: list[StripeRefund] = []
    scales: dict[str, tuple[str, int]] = {}   # Stripe's currency -> (ours, divisor): a page
    for item in page["data"]:                 # holds a currency or two, read once each
        raw = item["currency"]
        known = scales.get(raw)
        if known is None:
            code = str(raw).upper()
            known = scales[raw] = (checked_currency(code), _divisor(code))
        metadata = item.get("metadata")
        read.append(StripeRefund(
            str(item["id"]), int(item["amount"]) // known[1], known[0],
            str(item.get("status") or "pending"), ref_id(item.get("payment_intent")),
            ref_id(item.get("charge")), item.get("failure_reason"),
            {str(k): str(v) for k, v in metadata.items()} if metadata else {},
            int(item["created"])))
    return read, bool(page.get("has_more"))


def _divisor(currency: str) -> int:
    """What a Stripe amount in `currency` is divided by for project minor units (1, or 100
    for ISK): `from_stripe_amount` is that floor division."""
    return 10 ** 9 // from_stripe_amount(10 ** 9, currency)


def dispute_from(obj: Any) -> StripeDispute:
    """A Stripe dispute (object or dict) as a `StripeDispute`, with its non-empty text evidence."""
    data: dict[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    currency = str(data["currency"]).upper()
    details = data.get("evidence_details") or {}
    evidence = {str(k): str(v) for k, v in (data.get("evidence") or {}).items()
                if isinstance(v, str) and v}
    due = details.get("due_by")
    return StripeDispute(
        id=str(data["id"]),
        amount=from_stripe_amount(int(data["amount"]), currency),
        currency=currency,
        status=str(data.get("status") or ""),
        reason=str(data.get("reason") or "general"),
        charge=ref_id(data.get("charge")),
        payment_intent=ref_id(data.get("payment_intent")),
        due_by=int(due) if due is not None else None,
        submission_count=int(details.get("submission_count") or 0),
        evidence=evidence,
    )


def payment_from(data: dict[str, Any]) -> StripePayment:
    """A PaymentIntent (as a dict) as a `StripePayment`."""
    currency = str(data["currency"]).upper()
    error = data.get("last_payment_error") or {}
    return StripePayment(
        id=str(data["id"]),
        amount=from_stripe_amount(int(data["amount"]), currency),
        currency=currency,
        status=str(data.get("status") or ""),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        error=error.get("message"),
        decline_code=error.get("decline_code") or error.get("code"),
        payment_method=ref_id(data.get("payment_method")),
        failed_payment_method=ref_id(error.get("payment_method")),
    )


def ref_id(value: Any) -> str | None:
    """The id of a reference Stripe sends either as an id or expanded to an object."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        inner = value.get("id")
        return str(inner) if inner else None
    return None
