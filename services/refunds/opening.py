"""Opening a case: quote the booking, open its one case and make the first decision under the
case's mode (its product's, `services.refunds.modes`: a stored override, the policy file's
product or policy mode, else `MODE`) and the automation switch; then tell the notifier. The
case's mode and where it came from are stored with it (`case_modes`) and named in the audit row
of the decision. A cancellation a waiver rule matched
(`services.quoting.waiver_rules`) is quoted with its waiver and opened involuntary, the audit
saying where the waiver came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from services import correlation, faults
from services.config import Mode
from services.deps import Deps
from services.money import to_minor
from services.privacy import scrub
from services.quoting.booking import BookingSnapshot
from services.quoting.policy import PolicyBook
from services.quoting.quote import Decision, Quote
from services.quoting.waiver_rules import WaiverMatch
from services.refunds import cases, modes
from services.refunds.automation import Automation
from services.refunds.models import Case, Status
from services.refunds.snapshots import quote_snapshot
from services.store import audit


@dataclass(frozen=True)
class OpenedCase:
    case: Case
    quote: Quote
    created: bool  # False: an open case for this booking already existed


async def open_case(
    svc: Deps,
    raw: dict[str, Any],
    *,
    cancelled_at: datetime,
    source: str,
    requested_by: str | None = None,
    waiver: str | None = None,
    waiver_match: WaiverMatch | None = None,
    no_case_yet: bool = False,
) -> OpenedCase:
    """Quote the booking, open its case (one open case per booking) and decide.

    `no_case_yet`: the caller has just found no case at all for the booking, so the look-up of
    an open one is not made again; one opened meanwhile is still found, since a second open
    case of a booking is refused by the store (its key is unique among open cases).

    `waiver_match`: what a waiver rule found in Checkfront's notice; its waiver is quoted (in
    place of `waiver`) and the case is involuntary."""
    if waiver_match is not None:
        waiver = waiver_match.waiver
    snapshot, quote = await quote_snapshot(svc, raw, cancelled_at, waiver)
    if not no_case_yet:
        existing = await cases.find_open(svc.store, snapshot.code)  # by the booking's key
        if existing is not None:
            return OpenedCase(existing, quote, created=False)
    automation, mode = await modes.with_automation(svc.store, svc.book, svc.config.mode,
                                                   snapshot)
    try:
        async with svc.store.transaction() as tx:
            case = await _insert_case(tx, svc, snapshot, quote, source, requested_by, raw,
                                      waiver_match)
            await modes.record_case_mode(tx, case.id, mode)
            status, reason, decided_by = _initial_status(svc, quote, automation, mode.mode)
            decision = {Status.AUTO_APPROVED: "auto_approve", Status.DENIED: "deny",
                        Status.SKIPPED: "skip"}.get(status)
            if decision is not None:
                await cases.record_decision(tx, case, decision, by=decided_by,
                                            amount=quote.total_refund, reason=reason)
            changes = {"approved_amount": quote.total_refund} \
                if status == Status.AUTO_APPROVED else None
            case = await cases.transition(tx, case, status, actor=decided_by, reason=reason,
                                          changes=changes, detail=mode.audit())
    except aiosqlite.IntegrityError:
        # another delivery opened the case between our check and our insert
        existing = await cases.find_open(svc.store, snapshot.code)
        if existing is None:
            raise
        return OpenedCase(existing, quote, created=False)
    faults.reached("after_case_stored")
    correlation.bind(case_id=case.id, booking_code=case.booking_code)  # the lines from here on
    await svc.notifier.case_opened(case, quote)
    return OpenedCase(case, quote, created=True)


async def _insert_case(
    tx: aiosqlite.Connection, svc: Deps, snapshot: BookingSnapshot, quote: Quote,
    source: str, requested_by: str | None, raw: dict[str, Any],
    waiver_match: WaiverMatch | None = None,
) -> Case:
    salt = svc.config.customer_hash_salt
    kept = redact(raw, salt)
    case = await cases.insert(
        tx, booking_id=snapshot.booking_id, booking_code=snapshot.code,
        currency=snapshot.currency, quote=quote, source=source, requested_by=requested_by,
        customer_hash=snapshot.customer_key(salt), snapshot=kept,
        waiver_source=waiver_match.source if waiver_match is not None else None)
    case_id = case.id
    detail: dict[str, Any] = {"source": source, "booking": snapshot.code,
                              "cancelled_at": quote.cancelled_at, "waiver": quote.waiver}
    if waiver_match is not None:   # "waiver WEATHER from Checkfront status WTHR"
        detail.update(involuntary=True, waiver_from=waiver_match.text(),
                      waiver_rule=waiver_match.rule)
    await audit.append(tx, actor=requested_by or source, action="case.opened", case_id=case_id,
                       detail={**detail, "snapshot": kept})
    await audit.append(tx, actor="policy", action="quote.made", case_id=case_id,
                       detail={"quote": quote.to_dict(), "policy_file": svc.book.source,
                               "policy_digest": svc.book.digest})
    return case


def _initial_status(
    svc: Deps, quote: Quote, automation: Automation, mode: Mode | None = None
) -> tuple[Status, str, str]:
    """Status, reason and deciding actor for a fresh quote under the case's mode (default: the
    deployment's) and the breaker."""
    mode = svc.config.mode if mode is None else mode
    reason = "; ".join(quote.reasons)
    if quote.decision == Decision.SKIP:
        return Status.SKIPPED, reason, "policy"
    if quote.decision == Decision.DENY:
        return Status.DENIED, reason, "policy"
    automatic = quote.decision == Decision.AUTO_APPROVE or (
        mode == Mode.AUTONOMOUS and policy_clear(quote, svc.book)
    )
    if not automatic:
        return Status.PENDING_APPROVAL, reason, "policy"
    if mode == Mode.SHADOW:
        return Status.PENDING_APPROVAL, "shadow mode: would auto-approve; " + reason, "policy"
    if automation.paused:
        return Status.PENDING_APPROVAL, f"automation paused ({automation.reason}); " + reason, \
            "policy"
    return Status.AUTO_APPROVED, reason, "policy"


def policy_clear(quote: Quote, book: PolicyBook) -> bool:
    """No risk, no manual money, the policy's own currency, not above the escalation limit."""
    return (
        quote.decision in (Decision.AUTO_APPROVE, Decision.NEEDS_APPROVAL)
        and not quote.risk_flags
        and all(a.method == "stripe" for a in quote.allocations)
        and quote.currency == book.currency
        and quote.total_refund <= to_minor(book.escalate_over, book.currency)
    )


def redact(raw: dict[str, Any], salt: str | None = None) -> dict[str, Any]:
    """The snapshot as it is kept (the quote's and the audit trail's): the customer's contact
    details are left out but the first name and, with `salt`, the salted email hash, so a
    re-quote from it flags the same risks."""
    return scrub(raw, salt)
