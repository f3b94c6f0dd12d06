"""Deciding a case and running it: the one entry point for people's decisions and for cases
the policy approved on its own.

Each function records the decision (`cases`), tells the notifier what changed and, for an
approval, executes the refund (`execution`), so no caller has to remember any of the three.
Permission checks stay with the caller: they depend on who is asking and through what.
"""

from __future__ import annotations

from services.deps import Deps
from services.refunds import cases
from services.refunds.execution import execute
from services.refunds.models import Case, Status


async def approve(svc: Deps, case_id: int, *, by: str, amount: int | None = None,
                  reason: str | None = None, quote_version: str | None = None) -> Case:
    """A person approves a pending case (the quoted amount, or an adjusted one with a reason);
    the card shows the approval, then the refund runs. Returns the case after execution."""
    case = await cases.approve(svc.store, case_id, by=by, amount=amount, reason=reason,
                               quote_version=quote_version)
    await svc.notifier.case_updated(case)
    return await execute(svc, case.id, actor=by)


async def deny(svc: Deps, case_id: int, *, by: str, reason: str,
               quote_version: str | None = None) -> Case:
    """A person denies a pending case, with a reason; the card shows the denial."""
    case = await cases.deny(svc.store, case_id, by=by, reason=reason,
                            quote_version=quote_version)
    await svc.notifier.case_updated(case)
    return case


async def run_if_auto_approved(svc: Deps, case: Case) -> Case:
    """A freshly opened case the policy approved is refunded at once; any other is returned
    as it is (a person decides, or there is nothing to refund)."""
    if case.status != Status.AUTO_APPROVED:
        return case
    return await execute(svc, case.id, actor="policy")


async def retry(svc: Deps, case_id: int, *, by: str) -> Case:
    """Run a failed case again; refunds Stripe already made are not repeated."""
    return await execute(svc, case_id, actor=by)
