"""The quote engine: a booking, a cancellation time and a policy book in; an itemised,
exact refund with a recommended decision out (`build_quote`). Pure functions, no I/O.

The rules are numbered as in README ("Quote rules"); comments below cite them. `build_quote`
applies them to the usual line inline (a whole percent, amounts an exponent-2 currency writes
as whole.cents) and writes the quote's JSON form and version beside its fields, in one pass;
the general forms (any line, the decision, policy amounts) are in `services.quoting.rules`,
the quote's types in `services.quoting.quote`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

from services.money import CENTS_TEXT, EXACT_BELOW, cents_text, exponent, format_minor
from services.money import format_places as _format
from services.quoting.booking import BookingSnapshot, epoch_micros
from services.quoting.canonical import CANONICAL_JSON, plain_json, quote_text
from services.quoting.plans import _BOOKS, BookPlan, Plan, book_plan, keep_route
from services.quoting.policy import Policy, PolicyBook
from services.quoting.quote import Allocation, Quote, QuoteError, QuoteLine, RiskFlag
from services.quoting.rules import _decide, _minor, _quote_line


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
