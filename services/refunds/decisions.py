"""Deciding a case and running it: the one entry point for people's decisions and for cases
the policy approved on its own.

Each function records the decision (`cases`), tells the notifier what changed and, for an
approval, executes the refund (`execution`), so no caller has to remember any of the three.
An approval is an intent that survives: one a crash left unexecuted is run by the sweep
(`run_approved`) and nudged by a re-delivered webhook (`nudge`); start-up runs them all; one
whose instance died is run by another instance's worker once the approval's lease has passed
(`resume`).
Permission checks stay with the caller: they depend on who is asking and through what.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from services import faults
from services.deps import Deps
from services.quoting.quote import Quote
from services.refunds import cases
from services.refunds.execution import execute
from services.refunds.models import APPROVED, AlreadyDecided, Case, IllegalTransition, Status
from services.refunds.snapshots import BookingRead
from services.store import audit
from services.store.db import iso_utc, utcnow

# an approval its own executor claims within moments; one unclaimed this long was left by a
# crash (the sweep and a re-delivered webhook then run it, never racing a live click)
INTENT_GRACE = timedelta(minutes=2)


async def approve(svc: Deps, case_id: int, *, by: str, amount: int | None = None,
                  reason: str | None = None, quote_version: str | None = None) -> Case:
    """A person approves a pending case (the quoted amount, or an adjusted one with a reason);
    the card shows the approval, then the refund runs. Returns the case after execution."""
    case = await cases.approve(svc.store, case_id, by=by, amount=amount, reason=reason,
                               quote_version=quote_version)
    faults.reached("after_approval")
    await svc.notifier.case_updated(case)
    return await execute(svc, case.id, actor=by)


async def deny(svc: Deps, case_id: int, *, by: str, reason: str,
               quote_version: str | None = None) -> Case:
    """A person denies a pending case, with a reason; the card shows the denial."""
    case = await cases.deny(svc.store, case_id, by=by, reason=reason,
                            quote_version=quote_version)
    await svc.notifier.case_updated(case)
    return case


async def run_if_auto_approved(svc: Deps, case: Case, *, read: BookingRead | None = None,
                               quote: Quote | None = None) -> Case:
    """A freshly opened case the policy approved is refunded at once; any other is returned
    as it is (a person decides, or there is nothing to refund). `read`: the booking as the
    caller read it to open the case, moments ago; the execution then does not read it again, nor
    the case and its quote (`quote`), which are as the opening transaction stored them."""
    if case.status != Status.AUTO_APPROVED:
        return case
    return await execute(svc, case.id, actor="policy", read=read, case=case,
                         quote=quote)


async def retry(svc: Deps, case_id: int, *, by: str) -> Case:
    """Run a failed case again; refunds Stripe already made are not repeated."""
    return await execute(svc, case_id, actor=by)


async def nudge(svc: Deps, case: Case, *, by: str, now: datetime | None = None) -> Case:
    """Run an approved or auto-approved case whose approval has waited longer than
    `INTENT_GRACE`; any other case (or one claimed meanwhile) is returned as it is."""
    cutoff = iso_utc((now or utcnow()) - INTENT_GRACE)
    if case.status not in APPROVED or case.updated_at >= cutoff:
        return case
    return await resume(svc, case, by=by)


async def resume(svc: Deps, case: Case, *, by: str) -> Case:
    """Run an approved or auto-approved case its own executor left (a crash, or an instance
    gone whose lease passed: `execution.claim_stale_approved`); one claimed meanwhile is
    returned as it is."""
    await audit.record(svc.store, actor=by, action="execution.resumed", case_id=case.id,
                       detail={"status": str(case.status)})
    try:
        return await execute(svc, case.id, actor=by)
    except (AlreadyDecided, IllegalTransition):   # its own executor claimed it first
        return await cases.get(svc.store, case.id)


async def run_approved(svc: Deps, now: datetime | None = None) -> list[int]:
    """The sweep: run every approval left unexecuted longer than `INTENT_GRACE`; the ids of
    the cases it ran."""
    cutoff = iso_utc((now or utcnow()) - INTENT_GRACE)
    ran = []
    for case in await cases.changed_before(svc.store, APPROVED, cutoff):
        if (await nudge(svc, case, by="sweep", now=now)).status not in APPROVED:
            ran.append(case.id)
    return ran
