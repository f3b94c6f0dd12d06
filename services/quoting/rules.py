"""The quote rules' general forms, which `services.quoting.engine.build_quote` calls: a line
quoted by rules 2-5 where the engine's inline path does not apply (a Decimal percent, another
exponent, an amount out of the usual range, a book without a tier plan), rule 8's decision
with rule 9's manual override, and a policy amount (fee, limit) in minor units. Pure, no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from services.money import (
    CENTS,
    EXACT_BELOW,
    MoneyError,
    format_minor,
    percent_of,
    to_minor,
)
from services.money import format_places as _format
from services.quoting.booking import BookingLine, BookingSnapshot
from services.quoting.plans import Plan, plain
from services.quoting.policy import Policy, PolicyBook
from services.quoting.quote import Allocation, Decision, QuoteError, QuoteLine, RiskFlag

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
