"""The refund quote: a booking, a cancellation time and a policy book in; an itemised,
exact refund with a recommended decision out. Pure functions, no I/O.

The rules are numbered as in README ("Quote rules"); comments below cite them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any

from services.errors import DomainError
from services.money import (
    _CENTS,
    _EXACT_BELOW,
    MoneyError,
    exponent,
    format_minor,
    percent_of,
    to_minor,
)
from services.money import format_places as _format
from services.quoting.booking import (
    BookingLine,
    BookingSnapshot,
    Transaction,
    computed_once,
    frozen_new,
)
from services.quoting.canonical import line_text, quote_text, short_hash
from services.quoting.plans import Plan, keep_route, plain, plan_of, routes_of
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
        return self.to_row(exponent(currency))

    def to_row(self, places: int) -> dict[str, Any]:
        """`to_dict` for a currency of `places` minor digits."""
        return self.row_and_text(places)[0]

    def row_and_text(self, places: int) -> tuple[dict[str, Any], str | None]:
        """`to_row(places)` and the row's canonical JSON (`canonical.line_text`), its amounts
        formatted once for both; None for the text when a value is not one the template
        writes (the encoder then writes the whole quote)."""
        amount, tax = _format(self.amount, places), _format(self.tax, places)
        refund, tax_refund = _format(self.refund, places), _format(self.tax_refund, places)
        try:
            text: str | None = line_text(amount, self.line_id, self.name, self.notice_hours,
                                         self.percent, self.policy_id, self.reason, refund,
                                         self.sku, self.start, tax, tax_refund)
        except TypeError:
            text = None
        return {
            "line_id": self.line_id,
            "sku": self.sku,
            "name": self.name,
            "start": self.start,
            "notice_hours": self.notice_hours,
            "policy_id": self.policy_id,
            "percent": self.percent,
            "amount": amount,
            "tax": tax,
            "refund": refund,
            "tax_refund": tax_refund,
            "reason": self.reason,
        }, text


@dataclass(frozen=True)
class Allocation:
    payment: str  # Stripe pi_/ch_ id, or "manual"
    amount: int
    method: str  # "stripe" | "manual"

    def to_dict(self, currency: str) -> dict[str, Any]:
        return {"payment": self.payment, "amount": _format(self.amount, exponent(currency)),
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

        A fresh dict each call (callers may change it), copied from `_serialised`, which is
        built once per quote; it equals what `dataclasses.asdict` gives with those
        conversions, which tests/test_quote_serialise.py checks, so a field added here must be
        added there too.
        """
        body = self._serialised
        return {
            **body,
            "policy_ids": list(body["policy_ids"]),
            "clauses": dict(body["clauses"]),
            "lines": tuple([dict(line) for line in body["lines"]]),
            "allocations": tuple([dict(a) for a in body["allocations"]]),
            "reasons": list(body["reasons"]),
            "risk_flags": tuple([dict(flag) for flag in body["risk_flags"]]),
            "version": self.version,
        }

    @computed_once
    def _serialised(self) -> dict[str, Any]:
        """Everything `to_dict` says but the version, written out field by field; built once
        (the quote is frozen) and never handed out: `to_dict` gives copies, `build_quote`
        hashes it for the version. Not a dataclass field: `fields`, `asdict`, `replace` and
        equality do not see it."""
        currency = self.currency
        places = exponent(currency)
        return {
            "booking_id": self.booking_id,
            "booking_code": self.booking_code,
            "currency": currency,
            "cancelled_at": self.cancelled_at,
            "waiver": self.waiver,
            "policy_ids": list(self.policy_ids),
            "clauses": dict(self.clauses),
            "lines": tuple([line.to_dict(currency) for line in self.lines]),
            "fee": _format(self.fee, places),
            "entitlement": _format(self.entitlement, places),
            "order_total": _format(self.order_total, places),
            "paid": _format(self.paid, places),
            "already_refunded": _format(self.already_refunded, places),
            "net_paid": _format(self.net_paid, places),
            "retained": _format(self.retained, places),
            "total_refund": _format(self.total_refund, places),
            "allocations": tuple([a.to_dict(currency) for a in self.allocations]),
            "decision": self.decision.value,
            "reasons": list(self.reasons),
            "risk_flags": tuple([flag.to_dict() for flag in self.risk_flags]),
            "booking_fingerprint": self.booking_fingerprint,
            "policy_digest": self.policy_digest,
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
    places = exponent(currency)
    waiver_code = waiver.strip().upper() if waiver else None

    lines: list[QuoteLine] = []
    rows: list[dict[str, Any]] = []  # the lines as `_serialised` writes them
    texts: list[str | None] = []  # and as its canonical JSON does
    applied: list[Policy] = []
    plans: dict[int, Plan] = {}  # id(policy): its plan, for the policies applied so far
    routes = routes_of(book)
    gross = 0
    for line in snapshot.lines:
        route = (line.sku, line.item_id)
        policy = routes.get(route)
        if policy is None:
            policy = book.policy_for(line.sku, line.item_id)  # rule 1
            if policy is None:
                raise QuoteError(
                    f"no policy applies to line {line.line_id} (sku {line.sku or '-'}, "
                    f"item {line.item_id or '-'}) and no policy is marked default"
                )
            keep_route(routes, route, policy)
        plan = plans.get(id(policy))  # ids are unique: identity is equality
        if plan is None:
            applied.append(policy)
            plan = plans[id(policy)] = plan_of(policy)
        q = _quote_line(line, policy, plan, cancelled_at, waiver_code)
        lines.append(q)
        gross += q.refund + q.tax_refund
        row, text = q.row_and_text(places)
        rows.append(row)
        texts.append(text)

    waived = {p.id for p in applied if waiver_code and waiver_code in p.waivers}
    fee = max(
        (_minor(p.cancellation_fee, currency, f"{p.id}.cancellation_fee")
         for p in applied if p.id not in waived),
        default=0,
    )  # rule 6
    entitlement = max(0, gross - fee)

    payments, paid, already_refunded = snapshot.unrefunded()
    net_paid = paid - already_refunded  # rule 7 (snapshot.net_paid, in the same pass)
    order_total = snapshot.order_total
    retained = order_total - entitlement
    refund = min(max(net_paid - retained, 0), max(net_paid, 0))

    allocations = _allocate(payments, refund)  # rule 9
    decision, reasons = _decide(snapshot, book, net_paid, refund, allocations, risk_flags)
    if waiver_code and not waived:
        reasons.append(f"waiver {waiver_code} is not offered by the applied policies")

    policy_ids = tuple([p.id for p in applied])
    clauses = {p.id: p.text for p in applied}
    flags = tuple(risk_flags)
    reasons_kept = tuple(reasons)
    at = cancelled_at.isoformat()
    quote = frozen_new(
        Quote,
        booking_id=snapshot.booking_id, booking_code=snapshot.code, currency=currency,
        cancelled_at=at, waiver=waiver_code, policy_ids=policy_ids, clauses=clauses,
        lines=tuple(lines), fee=fee, entitlement=entitlement, order_total=order_total,
        paid=paid, already_refunded=already_refunded, net_paid=net_paid, retained=retained,
        total_refund=refund, allocations=tuple(allocations), decision=decision,
        reasons=reasons_kept, risk_flags=flags, booking_fingerprint=snapshot.fingerprint,
        policy_digest=book.digest, version="",
    )
    # What `Quote._serialised` writes, from the values at hand (the amounts formatted once,
    # the lines' rows made beside them): tests/test_quote_serialise.py compares the two.
    quote.__dict__["_serialised"] = material = {
        "booking_id": snapshot.booking_id,
        "booking_code": snapshot.code,
        "currency": currency,
        "cancelled_at": at,
        "waiver": waiver_code,
        "policy_ids": list(policy_ids),
        "clauses": dict(clauses),
        "lines": tuple(rows),
        "fee": _format(fee, places),
        "entitlement": _format(entitlement, places),
        "order_total": _format(order_total, places),
        "paid": _format(paid, places),
        "already_refunded": _format(already_refunded, places),
        "net_paid": _format(net_paid, places),
        "retained": _format(retained, places),
        "total_refund": _format(refund, places),
        "allocations": tuple([a.to_dict(currency) for a in allocations]),
        "decision": decision.value,
        "reasons": list(reasons_kept),
        "risk_flags": tuple([flag.to_dict() for flag in flags]),
        "booking_fingerprint": snapshot.fingerprint,
        "policy_digest": book.digest,
    }
    # The version, set before anyone sees the quote (as __init__ sets the other fields): a
    # short hash of everything the quote says, which a button carries to detect staleness.
    written = None if None in texts else texts
    object.__setattr__(quote, "version", short_hash(lambda: quote_text(material, written),
                                                    lambda: material, 12))
    return quote


_MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)


def _quote_line(
    line: BookingLine, policy: Policy, plan: Plan, cancelled_at: datetime, waiver: str | None
) -> QuoteLine:
    delta = line.start - cancelled_at
    notice = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds  # rule 2, µs
    percent: Decimal | int
    if waiver and waiver in plan.waivers:  # rule 4
        percent, percent_text = plan.waivers[waiver]
        reason = f"waiver {waiver}"
    elif line.sku and line.sku in plan.non_refundable:  # rule 3
        percent, percent_text, reason = 0, "0", "non-refundable"
    elif notice <= 0:  # the line starts at or before the cancellation
        percent, percent_text, reason = 0, "0", "already started"
    elif plan.tiers is not None:
        # the tier with the most notice not above this one; the 0h tier always qualifies
        for tier in plan.tiers:
            if tier.min_notice <= notice:
                break
        _, percent, percent_text, reason = tier
    else:
        chosen = policy.tier_for(_hours(delta))
        percent, percent_text = chosen.refund_percent, plain(chosen.refund_percent)
        reason = f"{plain(chosen.min_notice_hours)}h+ notice tier"
    tax = line.tax
    amount = line.total - tax
    if (type(percent) is int and type(amount) is int and type(tax) is int
            and 0 <= percent <= 100 and 0 <= amount < _EXACT_BELOW and 0 <= tax < _EXACT_BELOW):
        # percent_of's integer path, for the amounts it sees almost always (not negative)
        refund = (amount * percent + 50) // 100  # rule 5, halves up
        tax_refund = (tax * percent + 50) // 100 if policy.refund_tax else 0
    else:
        refund = percent_of(amount, percent)  # rule 5
        tax_refund = percent_of(tax, percent) if policy.refund_tax else 0
    hundredths = notice // 36_000_000  # hours of notice, floored to the hundredth
    quoted = object.__new__(QuoteLine)
    quoted.__dict__.update(
        line_id=line.line_id,
        sku=line.sku,
        name=line.name,
        start=line.start_iso,
        notice_hours=(f"{hundredths // 100}.{_CENTS[hundredths % 100]}" if hundredths >= 0
                      else _notice_text(notice)),  # _notice_text's usual case, inline
        policy_id=policy.id,
        percent=percent_text,
        amount=amount,
        tax=tax,
        refund=refund,
        tax_refund=tax_refund,
        reason=reason,
    )
    return quoted


def _notice_text(microseconds: int) -> str:
    """Hours of notice rounded down to the hundredth, as `str(Decimal.quantize)` writes it:
    "53.00", "-0.50". Exactly the Decimal form of `_hours(delta)` quantized with ROUND_FLOOR:
    floor division is the floor, and datetimes span too few hours (< 10**8) for Decimal's 28
    digits to have rounded the quotient across a hundredth."""
    return _format(microseconds // 36_000_000, 2)  # hundredths of an hour, as money's cents


def _allocate(payments: list[tuple[Transaction, int]], refund: int) -> list[Allocation]:
    """Newest Stripe payments first, each capped at what is left of it; the rest is manual.
    `payments` as `BookingSnapshot.unrefunded` gives them."""
    allocations: list[Allocation] = []
    left = refund
    for transaction, unrefunded in payments:
        if left == 0:
            break
        if unrefunded <= 0 or not transaction.is_stripe:
            continue
        take = min(left, unrefunded)
        allocations.append(frozen_new(Allocation, payment=transaction.id, amount=take,
                                      method="stripe"))
        left -= take
    if left > 0:
        allocations.append(frozen_new(Allocation, payment="manual", amount=left, method="manual"))
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
