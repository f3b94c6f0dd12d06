"""What the bot knows about a disputed payment: the booking and case behind it, and the
evidence pack for Stripe built from our own records only.

The pack maps the booking, the policy clause, the cancellation time, the refund history with
Stripe refund ids and a summary of the audit trail onto Stripe's text evidence fields. Nothing
in it names the customer beyond what the booking itself holds.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.clients.checkfront_errors import CheckfrontError
from services.deps import Deps
from services.money import display
from services.quoting.booking import SnapshotError
from services.quoting.booking_read import parse_snapshot
from services.quoting.quote import Quote
from services.refunds import cases, ledger, snapshots
from services.refunds.ledger import SETTLED
from services.refunds.models import Case, Status
from services.store import audit

log = logging.getLogger(__name__)

FIELD_LIMIT = 20_000  # characters per evidence field (Stripe allows 150,000 in all)
AUDIT_LINES = 40
BOOKING_KEYS = ("booking_code", "booking", "booking_id")


# --- the booking behind a payment ----------------------------------------------------------

@dataclass(frozen=True)
class BookingLink:
    booking_code: str | None
    booking_id: str | None
    case: Case | None
    found_by: str  # which record linked it, in plain words


async def find_booking(svc: Deps, refs: list[str],
                       metadata: dict[str, str] | None = None) -> BookingLink:
    """The booking (and its latest refund case) behind a payment, from our own records."""
    store = svc.store
    for ref in refs:
        case_id = await ledger.latest_case_on_payment(store, ref)
        if case_id is not None:
            case = await cases.get(store, case_id)
            return BookingLink(case.booking_code, case.booking_id, case, "refund executions")
    for ref in refs:
        paid = await snapshots.booking_paid_by(store, [ref])
        if paid is not None:
            code = str(paid)
            case = await cases.latest_for_booking(store, code)
            return BookingLink(code, case.booking_id if case else code, case,
                               "Checkfront payments")
    for key in BOOKING_KEYS:
        code = str((metadata or {}).get(key) or "").strip()
        if code:
            case = await cases.latest_for_booking(store, code)
            return BookingLink(case.booking_code if case else code,
                               case.booking_id if case else code, case,
                               f"payment metadata ({key})")
    return BookingLink(None, None, None, "nothing")


# --- the evidence pack ---------------------------------------------------------------------

@dataclass(frozen=True)
class EvidencePack:
    fields: dict[str, str]  # Stripe text evidence field -> text
    facts: list[str] = field(default_factory=list)  # short lines for the card, no PII


def _utc(iso: str | None) -> str:
    if not iso:
        return "unknown"
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _clip(text: str, limit: int = FIELD_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


async def build_evidence(svc: Deps, link: BookingLink, *, dispute_id: str, amount: int,
                         currency: str, reason: str) -> EvidencePack:
    """Evidence from our records only: no customer contact details, no card data."""
    facts: list[str] = []
    fields: dict[str, str] = {}
    code = link.booking_code
    if code is None:
        facts.append("No booking in our records for this payment.")
        fields["uncategorized_text"] = (
            f"Dispute {dispute_id} ({reason}) for {display(amount, currency)}. "
            "No booking matching this payment was found in the merchant's booking records.")
        return EvidencePack(fields, facts)
    facts.append(f"Booking {code} (linked by {link.found_by}).")
    lines: list[dict[str, Any]] = []
    clauses: dict[str, str] = {}
    quote: Quote | None = None
    case = link.case
    if case is not None:
        quote = (await cases.current_quote(svc.store, case)).quote
        clauses = dict(quote.clauses)
        lines = [asdict(line) for line in quote.lines]  # amounts in minor units
    else:
        lines, clauses = await _booking_lines(svc, code)
    if lines:
        fields["product_description"] = _clip(f"Booking {code}: " + "; ".join(
            f"{ln.get('name') or ln.get('sku')} starting {_utc(ln.get('start'))}"
            for ln in lines))
        starts = sorted(str(ln.get("start")) for ln in lines if ln.get("start"))
        if starts:
            fields["service_date"] = _utc(starts[0])[:10]
            facts.append(f"Service date {_utc(starts[0])}.")
    if clauses:
        policy = "\n".join(f"[{pid}] {text}" for pid, text in clauses.items())
        fields["cancellation_policy_disclosure"] = _clip(
            f"Cancellation policy that applies to booking {code}:\n{policy}")
        facts.append("Policy: " + ", ".join(clauses) + ".")
    if case is None:
        fields["uncategorized_text"] = _clip(
            f"Dispute {dispute_id} ({reason}) for {display(amount, currency)} on booking {code}. "
            "The booking has not been cancelled in the merchant's records and no refund was "
            "requested.")
        facts.append("No cancellation or refund case on record.")
        return EvidencePack(fields, facts)

    refunds = await ledger.refund_history(svc.store, case.id)
    done = [r for r in refunds if r["status"] in SETTLED]
    refunded = sum(int(r["amount"]) for r in done)
    history = [f"{r['stripe_refund_id']}: {display(int(r['amount']), r['currency'])} "
               f"{r['status']} on {_utc(r['updated_at'])} (payment {r['payment_ref']})"
               for r in refunds]
    facts.append(f"Case #{case.id} {case.status.value}; cancelled {_utc(case.cancelled_at)}.")
    facts += [f"Refund {h}" for h in history] or ["No Stripe refund made."]

    if lines:
        tiers = "\n".join(
            f"{ln.get('name') or ln.get('sku')}: cancelled {ln.get('notice_hours')} hours before "
            f"the start; policy {ln.get('policy_id')} gives {ln.get('percent')}% "
            f"({ln.get('reason')}), refund {display(int(ln.get('refund') or 0), case.currency)}"
            for ln in lines)
        fields["refund_policy_disclosure"] = _clip(
            "Refunds follow the cancellation policy above, by the notice given before the "
            f"start of each activity. For booking {code}:\n{tiers}")
    entitled = display(quote.total_refund, case.currency) if quote else "unknown"
    if done:
        what = (f"{display(refunded, case.currency)} has been refunded to the customer's "
                "original payment (" + "; ".join(history) + ")")
    else:
        what = f"no refund has been issued yet (case {case.status.value})"
    fields["cancellation_rebuttal"] = _clip(
        f"Booking {code} was cancelled on {_utc(case.cancelled_at)}. Under the cancellation "
        f"policy the customer was entitled to a refund of {entitled}; {what}. "
        f"The disputed amount is {display(amount, currency)}.")
    retained = quote.retained if quote else 0
    if case.status == Status.DENIED:
        fields["refund_refusal_explanation"] = _clip(
            f"The refund request was declined: {case.status_reason or 'see policy'}.")
    elif retained > 0:
        why = [f"{ln.get('name') or ln.get('sku')}: {ln.get('reason')} "
               f"({ln.get('percent')}% refundable)"
               for ln in lines if Decimal(str(ln.get("percent") or 0)) < 100]
        fee = quote.fee if quote else 0
        if fee > 0:
            why.append(f"the policy's cancellation fee of {display(fee, case.currency)}")
        fields["refund_refusal_explanation"] = _clip(
            f"{display(retained, case.currency)} was retained under the cancellation policy: "
            + ("; ".join(why) or "the policy's refund tiers") + ".")
    trail = await _audit_summary(svc, case.id)
    fields["uncategorized_text"] = _clip(
        f"Dispute {dispute_id} ({reason}) for {display(amount, currency)} on booking {code}, "
        f"refund case {case.id}.\nRefund history:\n" + ("\n".join(f"- {h}" for h in history)
                                                        or "- none") +
        "\nAudit trail of the refund case (tamper-evident log, oldest first):\n" + trail)
    return EvidencePack(fields, facts)


async def _booking_lines(svc: Deps, code: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Lines and policy clauses from Checkfront when no refund case exists."""
    if svc.checkfront is None:
        return [], {}
    try:
        snapshot = parse_snapshot(await svc.checkfront.get_booking_snapshot(code),
                                  default_currency=svc.book.currency)
    except (CheckfrontError, SnapshotError) as exc:
        log.info("no booking snapshot for evidence: %s", exc.__class__.__name__)
        return [], {}
    lines, clauses = [], {}
    for line in snapshot.lines:
        lines.append({"name": line.name, "sku": line.sku, "start": line.start.isoformat()})
        policy = svc.book.policy_for(line.sku, line.item_id)
        if policy is not None:
            clauses[policy.id] = policy.text
    return lines, clauses


async def _audit_summary(svc: Deps, case_id: int) -> str:
    entries = await audit.history(svc.store, case_id)
    shown = entries[-AUDIT_LINES:]
    lines = []
    for e in shown:
        d = e.detail
        extra = ""
        if e.action == "stripe.refund":
            extra = f" {d.get('refund_id')} {d.get('amount')} {d.get('status')}"
        elif e.action.startswith("case.") and d.get("reason"):
            extra = f": {str(d.get('reason'))[:200]}"
        lines.append(f"- {_utc(e.at)} {e.action} by {e.actor}{extra}")
    skipped = len(entries) - len(shown)
    head = [f"- ({skipped} earlier entries not shown)"] if skipped > 0 else []
    return "\n".join(head + lines) or "- none"
