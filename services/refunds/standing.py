"""Where a case stands, read for a form about to be answered: waiting, or decided by whom and
when, or re-quoted since the form was opened.

Read on the store's read-only connection (committed state, never behind a write), so a modal's
submission can be answered inside the modal: the decision itself still runs its own
compare-and-set (`cases.approve`, `cases.deny`), this only spares the person a form that
closes on a decision already made.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.refunds.models import AlreadyDecided, Case, Status
from services.store.db import Store

VERBS = {"approve": "approved", "auto_approve": "approved", "deny": "denied", "skip": "skipped"}


@dataclass(frozen=True)
class Standing:
    case: Case
    decided: AlreadyDecided | None  # who decided it and when, once it is no longer waiting

    def stale(self, quote_version: str | None) -> bool:
        """Whether a form opened on `quote_version` is out of date (the case was re-quoted)."""
        return quote_version is not None and quote_version != self.case.quote_version


async def standing(store: Store, case_id: int) -> Standing | None:
    """The case as committed, and its last decision when it is no longer waiting; None when
    there is no such case."""
    row = await store.read_one("SELECT * FROM cases WHERE id = ?", (case_id,))
    if row is None:
        return None
    case = Case.from_row(row)
    if case.status in (Status.PENDING_APPROVAL, Status.QUOTED):
        return Standing(case, None)
    last = await store.read_one(
        "SELECT decision, decided_by, decided_at FROM decisions WHERE case_id = ? "
        "ORDER BY id DESC LIMIT 1", (case_id,))
    if last is None:
        return Standing(case, AlreadyDecided(f"case {case_id} is {case.status}"))
    verb = VERBS.get(last["decision"], str(last["decision"]))
    return Standing(case, AlreadyDecided(
        f"already {verb} by {last['decided_by']}", decided_by=last["decided_by"],
        decided_at=last["decided_at"], outcome=verb))
