"""The refund quote: a booking, a cancellation time and a policy book in; an itemised,
exact refund with a recommended decision out. Pure functions, no I/O.

The rules are numbered as in README ("Quote rules"); comments below cite them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any

from services.errors import DomainError
from services.money import MoneyError, format_minor, percent_of, to_minor
from services.quoting.booking import BookingLine, BookingSnapshot
from services.quoting.policy import Policy, PolicyBook


class QuoteError(DomainError, ValueError):
    """A booking the rules cannot quote (no policy for a line, amount not expressible...)."""


class Decision(StrEnum):
    SKIP = "skip"
    DENY = "deny"
    AUTO_APPROVE = "auto_approve"
    NEEDS_APPROVAL = "needs_approval"


@dataclass(frozen=True)
class RiskFlag:
    code: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class QuoteLine:
    line_id: str
    sku: str
    name: str
    start: str  # ISO-8601 UTC
    notice_hours: str  # decimal string, two places
    policy_id: str
    percent: str
    amount: int  # excluding tax, minor units
    tax: int
    refund: int
    tax_refund: int
    reason: str  # which tier, "non-refundable", "already started", "waiver WEATHER"

    def to_dict(self, currency: str) -> dict[str, Any]:
        """JSON-ready, amounts as decimal strings in `currency` (see `Quote.to_dict`)."""
        return {
            "line_id": self.line_id,
            "sku": self.sku,
            "name": self.name,
            "start": self.start,
            "notice_hours": self.notice_hours,
            "policy_id": self.policy_id,
            "percent": self.percent,
            "amount": format_minor(self.amount, currency),
            "tax": format_minor(self.tax, currency),
            "refund": format_minor(self.refund, currency),
            "tax_refund": format_minor(self.tax_refund, currency),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Allocation:
    payment: str  # Stripe pi_/ch_ id, or "manual"
    amount: int
    method: str  # "stripe" | "manual"

    def to_dict(self, currency: str) -> dict[str, Any]:
        return {"payment": self.payment, "amount": format_minor(self.amount, currency),
                "method": self.method}


@dataclass(frozen=True)
class Quote:
    booking_id: str
    booking_code: str
    currency: str
    cancelled_at: str
    waiver: str | None
    policy_ids: tuple[str, ...]
    clauses: dict[str, str]
    lines: tuple[QuoteLine, ...]
    fee: int
    entitlement: int
    order_total: int
    paid: int
    already_refunded: int
    net_paid: int
    retained: int
    total_refund: int
    allocations: tuple[Allocation, ...]
    decision: Decision
    reasons: tuple[str, ...]
    risk_flags: tuple[RiskFlag, ...] = ()
    booking_fingerprint: str = ""
    policy_digest: str = ""
    version: str = field(default="")

    def amount(self, minor: int) -> str:
        return format_minor(minor, self.currency)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: amounts as decimal strings in major units with the currency's exponent.

        Written out field by field (it runs twice per quote: for `version`, and into the
        audit row); it equals what `dataclasses.asdict` gives with those conversions, which
        tests/test_quote_serialise.py checks, so a field added here must be added there too.
        """
        currency = self.currency
        return {
            "booking_id": self.booking_id,
            "booking_code": self.booking_code,
            "currency": currency,
            "cancelled_at": self.cancelled_at,
            "waiver": self.waiver,
            "policy_ids": list(self.policy_ids),
            "clauses": dict(self.clauses),
            "lines": tuple(line.to_dict(currency) for line in self.lines),
            "fee": format_minor(self.fee, currency),
            "entitlement": format_minor(self.entitlement, currency),
            "order_total": format_minor(self.order_total, currency),
            "paid": format_minor(self.paid, currency),
            "already_refunded": format_minor(self.already_refunded, currency),
            "net_paid": format_minor(self.net_paid, currency),
            "retained": format_minor(self.retained, currency),
            "total_refund": format_minor(self.total_refund, currency),
            "allocations": tuple(a.to_dict(currency) for a in self.allocations),
            "decision": self.decision.value,
            "reasons": list(self.reasons),
            "risk_flags": tuple(flag.to_dict() for flag in self.risk_flags),
            "booking_fingerprint": self.booking_fingerprint,
            "policy_digest": self.policy_digest,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quote:
        """The inverse of `to_dict`: a stored quote read back, amounts in minor units again.

        Keys a quote stored by an older version lacks take their defaults."""
        currency = str(data["currency"])

        def known(kind: type, row: Mapping[str, Any]) -> dict[str, Any]:
            names = {f.name for f in fields(kind)}
            return {k: v for k, v in row.items() if k in names}

        def minor(row: dict[str, Any], *names: str) -> dict[str, Any]:
            return {**row, **{n: to_minor(str(row[n]), currency) for n in names}}

        body = minor(known(cls, data), *_MONEY_FIELDS)
        body["lines"] = tuple(QuoteLine(**minor(known(QuoteLine, ln), *_LINE_MONEY))
                              for ln in data.get("lines") or ())
        body["allocations"] = tuple(Allocation(**minor(known(Allocation, a), "amount"))
                                    for a in data.get("allocations") or ())
        body["risk_flags"] = tuple(RiskFlag(**known(RiskFlag, f))
                                   for f in data.get("risk_flags") or ())
        body["decision"] = Decision(data["decision"])
        body["policy_ids"] = tuple(data.get("policy_ids") or ())
        body["reasons"] = tuple(data.get("reasons") or ())
        body["clauses"] = dict(data.get("clauses") or {})
        return cls(**body)


_MONEY_FIELDS = ("fee", "entitlement", "order_total", "paid", "already_refunded", "net_paid",
                 "retained", "total_refund")
_LINE_MONEY = ("amount", "tax", "refund", "tax_refund")


def build_quote(
    snapshot: BookingSnapshot,
    book: PolicyBook,
    cancelled_at: datetime,
    *,
    waiver: str | None = None,
    risk_flags: tuple[RiskFlag, ...] = (),
) -> Quote:
    if cancelled_at.tzinfo is None:
        raise QuoteError("cancellation time must carry a timezone")
    currency = snapshot.currency
    waiver_code = waiver.strip().upper() if waiver else None

    lines: list[QuoteLine] = []
    applied: list[Policy] = []
    for line in snapshot.lines:
        policy = book.policy_for(line.sku, line.item_id)  # rule 1
        if policy is None:
            raise QuoteError(
                f"no policy applies to line {line.line_id} (sku {line.sku or '-'}, "
                f"item {line.item_id or '-'}) and no policy is marked default"
            )
        if all(p is not policy for p in applied):  # ids are unique: identity is equality
            applied.append(policy)
        lines.append(_quote_line(line, policy, cancelled_at, waiver_code))

    waived = {p.id for p in applied if waiver_code and waiver_code in p.waivers}
    fee = max(
        (_minor(p.cancellation_fee, currency, f"{p.id}.cancellation_fee")
         for p in applied if p.id not in waived),
        default=0,
    )  # rule 6
    gross = sum(q.refund + q.tax_refund for q in lines)
    entitlement = max(0, gross - fee)

    net_paid = snapshot.net_paid  # rule 7
    retained = snapshot.order_total - entitlement
    refund = min(max(net_paid - retained, 0), max(net_paid, 0))

    allocations = _allocate(snapshot, refund)  # rule 9
    decision, reasons = _decide(snapshot, book, net_paid, refund, allocations, risk_flags)
    if waiver_code and not waived:
        reasons.append(f"waiver {waiver_code} is not offered by the applied policies")

    quote = Quote(
        booking_id=snapshot.booking_id,
        booking_code=snapshot.code,
        currency=currency,
        cancelled_at=cancelled_at.isoformat(),
        waiver=waiver_code,
        policy_ids=tuple(p.id for p in applied),
        clauses={p.id: p.text for p in applied},
        lines=tuple(lines),
        fee=fee,
        entitlement=entitlement,
        order_total=snapshot.order_total,
        paid=snapshot.paid,
        already_refunded=snapshot.already_refunded,
        net_paid=net_paid,
        retained=retained,
        total_refund=refund,
        allocations=tuple(allocations),
        decision=decision,
        reasons=tuple(reasons),
        risk_flags=tuple(risk_flags),
        booking_fingerprint=snapshot.fingerprint,
        policy_digest=book.digest,
    )
    return _with_version(quote)


_NO_REFUND = Decimal(0)
_HUNDREDTHS = Decimal("0.01")
_MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)


def _quote_line(
    line: BookingLine, policy: Policy, cancelled_at: datetime, waiver: str | None
) -> QuoteLine:
    notice = _hours(line.start - cancelled_at)  # rule 2
    if waiver and waiver in policy.waivers:  # rule 4
        percent, reason = policy.waivers[waiver], f"waiver {waiver}"
    elif line.sku and line.sku in policy.non_refundable_skus:  # rule 3
        percent, reason = _NO_REFUND, "non-refundable"
    elif line.start <= cancelled_at:
        percent, reason = _NO_REFUND, "already started"
    else:
        tier = policy.tier_for(notice)
        percent = tier.refund_percent
        reason = f"{_plain(tier.min_notice_hours)}h+ notice tier"
    refund = percent_of(line.amount_excl_tax, percent)  # rule 5
    tax_refund = percent_of(line.tax, percent) if policy.refund_tax else 0
    return QuoteLine(
        line_id=line.line_id,
        sku=line.sku,
        name=line.name,
        start=line.start.isoformat(),
        notice_hours=str(notice.quantize(_HUNDREDTHS, rounding=ROUND_FLOOR)),
        policy_id=policy.id,
        percent=_plain(percent),
        amount=line.amount_excl_tax,
        tax=line.tax,
        refund=refund,
        tax_refund=tax_refund,
        reason=reason,
    )


def _allocate(snapshot: BookingSnapshot, refund: int) -> list[Allocation]:
    """Newest Stripe payments first, each capped at what is left of it; the rest is manual."""
    allocations: list[Allocation] = []
    left = refund
    for payment in snapshot.payments():
        if left == 0:
            break
        if not payment.refundable_via_stripe or payment.unrefunded <= 0:
            continue
        take = min(left, payment.unrefunded)
        allocations.append(Allocation(payment=payment.transaction.id, amount=take, method="stripe"))
        left -= take
    if left > 0:
        allocations.append(Allocation(payment="manual", amount=left, method="manual"))
    return allocations


def _decide(
    snapshot: BookingSnapshot,
    book: PolicyBook,
    net_paid: int,
    refund: int,
    allocations: list[Allocation],
    risk_flags: tuple[RiskFlag, ...],
) -> tuple[Decision, list[str]]:
    """Rule 8, then rule 9's manual override."""
    currency = snapshot.currency
    escalate_over = _minor(book.escalate_over, currency, "escalate_over")
    auto_max = _minor(book.auto_approve_max, currency, "auto_approve_max")
    reasons: list[str] = []
    if net_paid <= 0:
        reason = "nothing was paid" if net_paid == 0 else "refunds already exceed payments"
        return Decision.SKIP, [reason]
    if refund == 0:
        return Decision.DENY, ["the policy leaves nothing to refund"]
    if refund > escalate_over:
        reasons.append(f"refund {format_minor(refund, currency)} is over the escalation "
                       f"limit {format_minor(escalate_over, currency)}")
    reasons.extend(f"risk: {flag.reason}" for flag in risk_flags)
    if currency != book.currency:
        reasons.append(f"booking currency {currency} differs from the policy currency "
                       f"{book.currency}")
    if reasons:
        decision = Decision.NEEDS_APPROVAL
    elif refund <= auto_max:
        decision = Decision.AUTO_APPROVE
        reasons.append(f"within the auto-approve limit {format_minor(auto_max, currency)}")
    else:
        decision = Decision.NEEDS_APPROVAL
        reasons.append(f"refund {format_minor(refund, currency)} is over the auto-approve "
                       f"limit {format_minor(auto_max, currency)}")
    manual = sum(a.amount for a in allocations if a.method == "manual")
    if manual:
        if decision == Decision.AUTO_APPROVE:  # "within the limit" no longer explains anything
            reasons.clear()
        decision = Decision.NEEDS_APPROVAL
        known = "unknown" if snapshot.transactions is None else "not refundable through Stripe"
        reasons.append(f"{format_minor(manual, currency)} must be refunded by hand "
                       f"(payment method {known})")
    return decision, reasons


def _minor(value: Decimal, currency: str, field_name: str) -> int:
    try:
        return _policy_minor(value, currency)
    except MoneyError as exc:
        raise QuoteError(f"policy {field_name}: {exc}") from exc


@lru_cache(maxsize=1024)
def _policy_minor(value: Decimal, currency: str) -> int:
    """A policy amount (fee, limit) in minor units: the same few values on every quote. Equal
    Decimals ("10", "10.00") are one key and have one minor amount; refusals are not kept."""
    return to_minor(value, currency)


def _hours(delta: timedelta) -> Decimal:
    """A time difference in hours, exactly (timedelta.total_seconds() is a float)."""
    microseconds = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return Decimal(microseconds) / _MICROSECONDS_PER_HOUR


def _plain(number: Decimal) -> str:
    text = format(number.normalize(), "f")
    return text


# json.dumps(material, sort_keys=True, separators=(",", ":")), byte for byte, with the encoder
# built once; the material is a fresh tree of dicts, lists and scalars, so the check for
# reference cycles has nothing to find.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)


def _with_version(quote: Quote) -> Quote:
    """A short hash of everything the quote says: a button carries it to detect staleness."""
    material = quote.to_dict()
    material.pop("version", None)
    blob = _CANONICAL_JSON.encode(material)
    version = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return Quote(**{**quote.__dict__, "version": version})
