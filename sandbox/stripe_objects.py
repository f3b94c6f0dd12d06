"""Records of the Stripe stand-in, their JSON in Stripe's v1 shapes, and Stripe's amount rules."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Any

# Stripe's own lists (they differ from ISO 4217: ISK is two-decimal at Stripe, for example).
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
     "xaf", "xof", "xpf"}
)
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
WHOLE_UNITS_ONLY = frozenset({"isk"})  # two-decimal in the API, amounts must divide by 100

REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
REFUND_STATUSES = ("pending", "requires_action", "succeeded", "failed", "canceled")
ACTIVE_REFUND_STATUSES = frozenset({"pending", "requires_action", "succeeded"})
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$"}
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def stripe_exponent(currency: str) -> int:
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def amount_rule_violation(amount: int, currency: str) -> str | None:
    """Stripe's per-currency rule an amount breaks, or None."""
    code = currency.lower()
    if code in THREE_DECIMAL and amount % 10:
        return (
            f"Invalid amount: {code.upper()} is a three-decimal currency and amounts must be "
            "divisible by 10 (the last digit must be 0)."
        )
    if code in WHOLE_UNITS_ONLY and amount % 100:
        return (
            f"Invalid amount. Currency {code.upper()} has become effectively zero-decimal and "
            "charged amounts must be evenly divisible by 100."
        )
    return None


def format_amount(amount: int, currency: str) -> str:
    """Stripe-style amount in messages: $25.00, ¥500, KWD 1.250."""
    places = stripe_exponent(currency)
    whole, frac = divmod(amount, 10**places)
    text = f"{whole}.{frac:0{places}d}" if places else str(whole)
    symbol = _SYMBOLS.get(currency.lower())
    return f"{symbol}{text}" if symbol else f"{currency.upper()} {text}"


@dataclass
class Charge:
    id: str
    amount: int
    currency: str
    created: int
    payment_intent: str | None
    metadata: dict[str, str]
    status: str = "succeeded"  # or "failed"
    failure_code: str | None = None
    failure_message: str | None = None
    disputed: bool = False
    amount_refunded: int = 0  # kept by the sandbox: pending + succeeded refunds
    balance_transaction: str | None = None
    card_brand: str = "visa"   # payment_method_details.card, as Stripe shows a card charge
    card_last4: str = "4242"

    @property
    def refunded(self) -> bool:
        return self.amount > 0 and self.amount_refunded >= self.amount

    def to_json(self) -> dict[str, Any]:
        paid = self.status == "succeeded"
        return {
            "id": self.id,
            "object": "charge",
            "amount": self.amount,
            "amount_captured": self.amount if paid else 0,
            "amount_refunded": self.amount_refunded,
            "balance_transaction": self.balance_transaction,
            "captured": paid,
            "created": self.created,
            "currency": self.currency,
            "disputed": self.disputed,
            "failure_code": self.failure_code,
            "failure_message": self.failure_message,
            "livemode": False,
            "metadata": dict(self.metadata),
            "paid": paid,
            "payment_intent": self.payment_intent,
            "payment_method_details": {"type": "card", "card": {
                "brand": self.card_brand, "last4": self.card_last4, "exp_month": 12,
                "exp_year": 2030, "funding": "credit", "country": "US"}},
            "refunded": self.refunded,
            "status": self.status,
        }


@dataclass
class PaymentIntent:
    id: str
    amount: int
    currency: str
    created: int
    metadata: dict[str, str]
    status: str = "succeeded"
    latest_charge: str | None = None
    payment_method: str | None = None
    description: str | None = None
    last_payment_error: dict[str, Any] | None = None
    client_secret: str = field(default="")

    @property
    def amount_received(self) -> int:
        return self.amount if self.status == "succeeded" else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": 0,
            "amount_received": self.amount_received,
            "capture_method": "automatic",
            "client_secret": self.client_secret or f"{self.id}_secret_sandbox",
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "description": self.description,
            "last_payment_error": self.last_payment_error,
            "latest_charge": self.latest_charge,
            "livemode": False,
            "metadata": dict(self.metadata),
            "payment_method": self.payment_method,
            "payment_method_types": ["card"],
            "status": self.status,
        }


@dataclass
class Refund:
    id: str
    amount: int
    currency: str
    charge: str
    payment_intent: str | None
    status: str
    reason: str | None
    metadata: dict[str, str]
    created: int
    seq: int
    failure_reason: str | None = None
    balance_transaction: str | None = None
    failure_balance_transaction: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "refund",
            "amount": self.amount,
            "balance_transaction": self.balance_transaction,
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "destination_details": {"card": {"type": "refund"}, "type": "card"},
            "failure_balance_transaction": self.failure_balance_transaction,
            "failure_reason": self.failure_reason,
            "metadata": dict(self.metadata),
            "payment_intent": self.payment_intent,
            "reason": self.reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": self.status,
            "transfer_reversal": None,
        }


@dataclass
class Dispute:
    id: str
    amount: int
    currency: str
    charge: str
    payment_intent: str | None
    reason: str
    due_by: int
    created: int
    status: str = "needs_response"
    charge_refundable: bool = False   # Stripe's is_charge_refundable
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "dispute",
            "amount": self.amount,
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "evidence": {},
            "evidence_details": {
                "due_by": self.due_by,
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "is_charge_refundable": self.charge_refundable,
            "livemode": False,
            "metadata": dict(self.metadata),
            "payment_intent": self.payment_intent,
            "reason": self.reason,
            "status": self.status,
        }


@dataclass
class Event:
    id: str
    type: str
    created: int
    seq: int
    data: dict[str, Any]
    request_id: str | None = None
    idempotency_key: str | None = None
    pending_webhooks: int = 0
    api_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "event",
            "api_version": self.api_version,
            "created": self.created,
            "data": self.data,
            "livemode": False,
            "pending_webhooks": self.pending_webhooks,
            "request": {"id": self.request_id, "idempotency_key": self.idempotency_key},
            "type": self.type,
        }


@dataclass
class BalanceTransaction:
    """Funds moving through the balance, in Stripe's `balance_transaction` shape: `amount` is
    signed (negative when money leaves, as for a refund or a payout), `net` is `amount - fee`
    and `status` is `available` from `available_on` on (`to_json` is given the time)."""

    id: str
    type: str                 # charge | refund | refund_failure | payout | stripe_fee ...
    amount: int
    fee: int
    currency: str
    source: str | None
    created: int
    available_on: int
    seq: int
    fee_type: str = "stripe_fee"
    payout: str | None = None  # the automatic payout that carried it (not in Stripe's JSON)

    @property
    def net(self) -> int:
        return self.amount - self.fee

    def to_json(self, now: int | None = None) -> dict[str, Any]:
        details = [{"amount": self.fee, "application": None, "currency": self.currency,
                    "description": "Stripe processing fees", "type": self.fee_type}] \
            if self.fee else []
        available = now is None or self.available_on <= now
        return {
            "id": self.id,
            "object": "balance_transaction",
            "amount": self.amount,
            "available_on": self.available_on,
            "balance_type": "payments",
            "created": self.created,
            "currency": self.currency,
            "description": None,
            "exchange_rate": None,
            "fee": self.fee,
            "fee_details": details,
            "net": self.net,
            "reporting_category": self.type,
            "source": self.source,
            "status": "available" if available else "pending",
            "type": self.type,
        }


@dataclass
class Payout:
    """An automatic payout of what was available at `created`; `paid` once it has arrived."""

    id: str
    amount: int
    currency: str
    created: int
    arrival_date: int
    seq: int
    balance_transaction: str

    def to_json(self, now: int | None = None) -> dict[str, Any]:
        arrived = now is None or self.arrival_date <= now
        return {
            "id": self.id,
            "object": "payout",
            "amount": self.amount,
            "arrival_date": self.arrival_date,
            "automatic": True,
            "balance_transaction": self.balance_transaction,
            "created": self.created,
            "currency": self.currency,
            "description": "STRIPE PAYOUT",
            "destination": "ba_sandbox",
            "failure_balance_transaction": None,
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": {},
            "method": "standard",
            "reconciliation_status": "completed",
            "source_type": "card",
            "statement_descriptor": None,
            "status": "paid" if arrived else "in_transit",
            "type": "bank_account",
        }
