"""The refund quote: a booking, a cancellation time and a policy book in; an itemised,
exact refund with a recommended decision out. Pure functions, no I/O.

The rules are numbered as in README ("Quote rules"); comments below cite them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from hashlib import sha256
from typing import Any

from services.errors import DomainError
from services.money import (
    CENTS,
    CENTS_TEXT,
    EXACT_BELOW,
    MoneyError,
    cents_text,
    exponent,
    format_minor,
    percent_of,
    to_minor,
)
from services.money import format_places as _format
from services.quoting.booking import (
    BookingLine,
    BookingSnapshot,
    computed_once,
    epoch_micros,
)
from services.quoting.canonical import CANONICAL_JSON, plain_json, quote_text
from services.quoting.plans import _BOOKS, BookPlan, Plan, book_plan, keep_route, plain
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
        amount, tax = _format(self.amount, places), _format(self.tax, places)
        refund, tax_refund = _format(self.refund, places), _format(self.tax_refund, places)
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
        }


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

        A fresh dict each call (callers may change it). It equals what `dataclasses.asdict`
        gives with those conversions, which tests/test_quote_serialise.py checks, so a field
        added here must be added there too. The first call hands out the form `build_quote`
        wrote (nothing else holds it, and it is not kept); later calls copy `_serialised`,
        written again from the fields.
        """
        written = self.__dict__.pop("_written", None)
        if written is not None:
            written["version"] = self.version
            return written
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
        (the quote is frozen) and never handed out: `to_dict` gives copies. `build_quote`
        writes the same form from its own values (as `_written`, hashed for the version);
        tests/test_quote_serialise.py compares the two. Not a dataclass field: `fields`,
        `asdict`, `replace` and equality do not see it."""
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
    cents = places == 2  # amounts written inline as whole.cents; any other exponent by _format
    waiver_code = waiver.strip().upper() if waiver else None
    kept_instant = (_INSTANTS.get(cancelled_at)  # `_instant`'s kept answer, without the call
                    if type(cancelled_at) is datetime and cancelled_at.tzinfo is UTC else None)
    at, cancelled_us = kept_instant if kept_instant is not None else _instant(cancelled_at)

    lines: list[QuoteLine] = []
    rows: list[dict[str, Any]] = []  # the lines as `_serialised` writes them
    applied: dict[int, tuple[Policy, Plan]] = {}  # id(policy): the policies applied, in order
    kept_shelf = _BOOKS.get(id(book))  # `book_plan`'s kept answer, without the call
    shelf = kept_shelf[1] if kept_shelf is not None and kept_shelf[0] is book else book_plan(book)
    routes = shelf.routes
    gross = 0
    new, setattr_, written = object.__new__, object.__setattr__, CENTS_TEXT
    for line in snapshot.lines:
        sku = line.sku
        route = (sku, line.item_id)
        kept = routes.get(route)
        if kept is None:
            found = book.policy_for(sku, line.item_id)  # rule 1
            if found is None:
                raise QuoteError(
                    f"no policy applies to line {line.line_id} (sku {line.sku or '-'}, "
                    f"item {line.item_id or '-'}) and no policy is marked default"
                )
            kept = keep_route(routes, route, found)
        policy, plan = kept
        if id(policy) not in applied:  # ids are unique while kept: identity is equality
            applied[id(policy)] = kept
        # `_quote_line` and `QuoteLine.to_row`, in one step for the usual line: a tier
        # chosen in whole microseconds, a whole percent, amounts an exponent-2 currency writes
        # as whole.cents. tests/test_quote_fast_paths.py compares the two.
        notice = line._start_us - cancelled_us  # rule 2, µs
        if waiver_code and waiver_code in plan.waivers:  # rule 4
            rule = plan.waivers[waiver_code]
        elif sku and sku in plan.non_refundable:  # rule 3
            rule = plan.refused
        elif notice <= 0:  # the line starts at or before the cancellation
            rule = plan.started
        elif plan.tiers is not None:
            for tier in plan.tiers:  # the most notice not above this; 0h always qualifies
                if tier.min_notice <= notice:
                    break
            rule = tier
        else:
            rule = None
        tax = line.tax
        amount = line.total - tax
        percent = rule.percent if rule is not None else None
        if (cents and type(percent) is int and type(amount) is int and type(tax) is int
                and 0 <= percent <= 100 and 0 <= amount < EXACT_BELOW
                and 0 <= tax < EXACT_BELOW):
            refund = (amount * percent + 50) // 100  # rule 5, halves up
            tax_refund = (tax * percent + 50) // 100 if policy.refund_tax else 0
            # hours of notice floored to the hundredth, written as cents are (`_notice_text`)
            hundredths = notice // 36_000_000
            notice_text = written.get(hundredths) or cents_text(hundredths)
            amount_text = written.get(amount) or cents_text(amount)
            tax_text = written.get(tax) or cents_text(tax)
            refund_text = written.get(refund) or cents_text(refund)
            tax_refund_text = written.get(tax_refund) or cents_text(tax_refund)
            line_id, name, start = line.line_id, line.name, line.start_iso
            quoted = new(QuoteLine)
            values = {
                "line_id": line_id, "sku": sku, "name": name, "start": start,
                "notice_hours": notice_text, "policy_id": policy.id,
                "percent": rule.percent_text, "amount": amount, "tax": tax, "refund": refund,
                "tax_refund": tax_refund, "reason": rule.reason}
            setattr_(quoted, "__dict__", values)  # frozen: as frozen_new fills it
            row = values.copy()
            row["amount"], row["tax"] = amount_text, tax_text
            row["refund"], row["tax_refund"] = refund_text, tax_refund_text
            rows.append(row)
        else:
            quoted = _quote_line(line, policy, plan, cancelled_at, waiver_code)
            refund, tax_refund = quoted.refund, quoted.tax_refund
            rows.append(quoted.to_row(places))
        lines.append(quoted)
        gross += refund + tax_refund

    fee = 0  # rule 6: the largest fee of the applied policies the waiver does not waive
    offered = False  # whether an applied policy offers the waiver
    for policy, plan in applied.values():
        if waiver_code and waiver_code in plan.waivers:
            offered = True
            continue
        charged = plan.fees.get(currency)
        if charged is None:
            charged = plan.fees[currency] = _minor(policy.cancellation_fee, currency,
                                                   f"{policy.id}.cancellation_fee")
        if charged > fee:
            fee = charged
    entitlement = max(0, gross - fee)

    payments, paid, already_refunded = snapshot.unrefunded()
    net_paid = paid - already_refunded  # rule 7 (snapshot.net_paid, in the same pass)
    order_total = snapshot.order_total
    retained = order_total - entitlement
    refund = min(max(net_paid - retained, 0), max(net_paid, 0))
    if not (cents and type(order_total) is int and type(paid) is int
            and type(already_refunded) is int):  # then every amount below is an exact int
        written = {}  # and each is written by cents_text or _format, never looked up

    # rule 9: newest Stripe payments first, each capped at what is left of it; the rest is
    # manual. Each allocation's row beside it.
    allocations: list[Allocation] = []
    allocation_rows: list[dict[str, Any]] = []
    left = refund
    for transaction, unrefunded in payments:
        if left == 0:
            break
        if unrefunded <= 0 or not transaction.is_stripe:
            continue
        take = min(left, unrefunded)
        allocation = new(Allocation)
        payment = transaction.id
        setattr_(allocation, "__dict__", {"payment": payment, "amount": take,
                                          "method": "stripe"})
        allocations.append(allocation)
        take_text = (written.get(take) or cents_text(take)) if cents else _format(take, places)
        allocation_rows.append({"payment": payment, "amount": take_text, "method": "stripe"})
        left -= take
    if left > 0:
        allocation = new(Allocation)
        setattr_(allocation, "__dict__", {"payment": "manual", "amount": left,
                                          "method": "manual"})
        allocations.append(allocation)
        left_text = (written.get(left) or cents_text(left)) if cents else _format(left, places)
        allocation_rows.append({"payment": "manual", "amount": left_text, "method": "manual"})

    limits = shelf.limits.get(currency)
    if limits is None:
        auto_max = _minor(book.auto_approve_max, currency, "auto_approve_max")
        limits = shelf.limits[currency] = (
            _minor(book.escalate_over, currency, "escalate_over"), auto_max,
            f"within the auto-approve limit {format_minor(auto_max, currency)}")
    decision, reasons = _decide(snapshot, book, net_paid, refund, allocations, risk_flags,
                                limits)
    if waiver_code and not offered:
        reasons.append(f"waiver {waiver_code} is not offered by the applied policies")

    plans = list(applied.values())
    plain_plans = True  # whether every applied policy's texts are plain `str` (its plan says)
    if len(plans) == 1:
        (only, only_plan), = plans
        policy_ids: tuple[str, ...] = (only.id,)
        clauses = {only.id: only.text}
        plain_plans = only_plan.plain
    else:
        ids: list[str] = []
        clauses = {}
        for policy, plan in plans:  # one loop for the ids, the clauses and the plain check
            pid = policy.id
            ids.append(pid)
            clauses[pid] = policy.text
            if not plan.plain:
                plain_plans = False
        policy_ids = tuple(ids)
    flags = tuple(risk_flags)
    reasons_kept = tuple(reasons)
    booking_id, code, fingerprint = snapshot.booking_id, snapshot.code, snapshot.fingerprint
    quote = new(Quote)
    setattr_(quote, "__dict__", {
        "booking_id": booking_id, "booking_code": code, "currency": currency,
        "cancelled_at": at, "waiver": waiver_code, "policy_ids": policy_ids,
        "clauses": clauses, "lines": tuple(lines), "fee": fee, "entitlement": entitlement,
        "order_total": order_total, "paid": paid, "already_refunded": already_refunded,
        "net_paid": net_paid, "retained": retained, "total_refund": refund,
        "allocations": tuple(allocations), "decision": decision, "reasons": reasons_kept,
        "risk_flags": flags, "booking_fingerprint": fingerprint,
        "policy_digest": book.digest, "version": ""})
    if cents:
        fee_text = written.get(fee) or cents_text(fee)
        entitlement_text = written.get(entitlement) or cents_text(entitlement)
        order_total_text = written.get(order_total) or cents_text(order_total)
        paid_text = written.get(paid) or cents_text(paid)
        refunded_text = written.get(already_refunded) or cents_text(already_refunded)
        net_paid_text = written.get(net_paid) or cents_text(net_paid)
        retained_text = written.get(retained) or cents_text(retained)
        refund_text = written.get(refund) or cents_text(refund)
    else:
        fee_text, entitlement_text = _format(fee, places), _format(entitlement, places)
        order_total_text, paid_text = _format(order_total, places), _format(paid, places)
        refunded_text, net_paid_text = (_format(already_refunded, places),
                                        _format(net_paid, places))
        retained_text, refund_text = _format(retained, places), _format(refund, places)
    decision_text = decision._value_  # Enum.value's property, read directly
    # What `Quote._serialised` writes, from the values at hand (the amounts formatted once,
    # the lines' rows made beside them), for the first `to_dict`: tests compare the two.
    quote.__dict__["_written"] = material = {
        "booking_id": booking_id,
        "booking_code": code,
        "currency": currency,
        "cancelled_at": at,
        "waiver": waiver_code,
        "policy_ids": list(policy_ids),
        "clauses": dict(clauses),
        "lines": tuple(rows),
        "fee": fee_text,
        "entitlement": entitlement_text,
        "order_total": order_total_text,
        "paid": paid_text,
        "already_refunded": refunded_text,
        "net_paid": net_paid_text,
        "retained": retained_text,
        "total_refund": refund_text,
        "allocations": tuple(allocation_rows),
        "decision": decision_text,
        "reasons": list(reasons_kept),
        "risk_flags": tuple([flag.to_dict() for flag in flags]) if flags else (),
        "booking_fingerprint": fingerprint,
        "policy_digest": book.digest,
    }
    # The version, set before anyone sees the quote (as __init__ sets the other fields): a
    # short hash of everything the quote says, which a button carries to detect staleness.
    quote.__dict__["version"] = sha256(_version_text(
        material, snapshot, plain_plans, shelf, at, waiver_code, flags)).hexdigest()[:12]
    return quote


def _version_text(material: dict[str, Any], snapshot: BookingSnapshot, plain_plans: bool,
                  shelf: BookPlan, at: str, waiver: str | None,
                  flags: tuple[RiskFlag, ...]) -> bytes:
    """`CANONICAL_JSON.encode(material)`, UTF-8: the quote's canonical JSON, hashed for its
    version. Written by orjson (`plain_json`) when every text in it is a plain `str` from
    where the quote's texts come from (the snapshot's, the policies', the book's digest, the
    cancellation time's, the waiver's, the risk flags'; the engine's own amounts, rules and
    reasons are always so; `plain_plans`: every applied policy's plan says its texts are)
    and nothing in it needs escaping that orjson writes raw; else by `canonical.quote_text`,
    and by the encoder where a value is not one the template writes."""
    if (snapshot._plain and shelf.plain and type(at) is str
            and (waiver is None or type(waiver) is str)
            and plain_plans
            and (not flags or all([type(f) is RiskFlag and type(f.code) is str
                                   and type(f.reason) is str for f in flags]))):
        blob = plain_json(material, True)
        if blob is not None:
            return blob
    try:
        return quote_text(material).encode()
    except TypeError:
        return CANONICAL_JSON.encode(material).encode()


_INSTANTS: dict[datetime, tuple[str, int]] = {}
_MAX_INSTANTS = 4096  # distinct cancellation times kept: the cases of a storm share a few


def _instant(moment: datetime) -> tuple[str, int]:
    """An aware datetime's ISO text and its microseconds since the unix epoch, exactly. Kept
    for UTC datetimes (the cases of one cancelled departure share their time): equal UTC
    datetimes have equal fields, so one text; other zones are worked out each time."""
    if type(moment) is datetime and moment.tzinfo is UTC:
        kept = _INSTANTS.get(moment)
        if kept is None:
            if len(_INSTANTS) >= _MAX_INSTANTS:
                _INSTANTS.clear()
            kept = _INSTANTS[moment] = (moment.isoformat(), epoch_micros(moment))
        return kept
    return moment.isoformat(), epoch_micros(moment)


_MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)


def _quote_line(
    line: BookingLine, policy: Policy, plan: Plan, cancelled_at: datetime, waiver: str | None
) -> QuoteLine:
    delta = line.start - cancelled_at
    notice = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds  # rule 2, µs
    percent: Decimal | int
    if waiver and waiver in plan.waivers:  # rule 4
        percent, percent_text, reason = plan.waivers[waiver]
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
            and 0 <= percent <= 100 and 0 <= amount < EXACT_BELOW and 0 <= tax < EXACT_BELOW):
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
        notice_hours=(f"{hundredths // 100}.{CENTS[hundredths % 100]}" if hundredths >= 0
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


def _decide(
    snapshot: BookingSnapshot,
    book: PolicyBook,
    net_paid: int,
    refund: int,
    allocations: list[Allocation],
    risk_flags: tuple[RiskFlag, ...],
    limits: tuple[int, int, str],
) -> tuple[Decision, list[str]]:
    """Rule 8, then rule 9's manual override; `limits`: the book's escalate_over and
    auto_approve_max in the snapshot currency's minor units, and the reason a refund within
    the latter is given."""
    currency = snapshot.currency
    escalate_over, auto_max, within = limits
    reasons: list[str] = []
    if net_paid <= 0:
        reason = "nothing was paid" if net_paid == 0 else "refunds already exceed payments"
        return Decision.SKIP, [reason]
    if refund == 0:
        return Decision.DENY, ["the policy leaves nothing to refund"]
    if refund > escalate_over:
        reasons.append(f"refund {format_minor(refund, currency)} is over the escalation "
                       f"limit {format_minor(escalate_over, currency)}")
    if risk_flags:
        reasons.extend([f"risk: {flag.reason}" for flag in risk_flags])
    if currency != book.currency:
        reasons.append(f"booking currency {currency} differs from the policy currency "
                       f"{book.currency}")
    if reasons:
        decision = Decision.NEEDS_APPROVAL
    elif refund <= auto_max:
        decision = Decision.AUTO_APPROVE
        reasons.append(within)
    else:
        decision = Decision.NEEDS_APPROVAL
        reasons.append(f"refund {format_minor(refund, currency)} is over the auto-approve "
                       f"limit {format_minor(auto_max, currency)}")
    last = allocations[-1] if allocations else None  # the manual rest, if any, comes last
    manual = last.amount if last is not None and last.method == "manual" else 0
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
