"""Owns who is on a case: **I'll take it** claims a waiting case, its holder may release it.

One row per claimed case in `case_claims`. A claim is a compare-and-set: it takes the case
only when nobody holds it (or the claimer already does), and a release only removes the
claimer's own row, so two people clicking at once get one holder and the other is told who.
Each change is one transaction with its audit row (`case.claimed`, `case.released`); a claim
on a case no longer waiting for a person is refused without a change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.refunds.models import Status
from services.store import audit
from services.store.db import Store, now_iso, one


@dataclass(frozen=True)
class Claim:
    case_id: int
    user: str
    claimed_at: str


@dataclass(frozen=True)
class ClaimResult:
    """`claimed`: the claimer holds the case now (also when they already did); else
    `holder` is who does, or None when the case no longer waits for a person."""

    claimed: bool
    holder: Claim | None
    already: bool = False


async def claim(store: Store, case_id: int, user: str) -> ClaimResult:
    async with store.transaction() as tx:
        status = await one(tx, "SELECT status FROM cases WHERE id = ?", (case_id,))
        if status is None or status["status"] != Status.PENDING_APPROVAL.value:
            return ClaimResult(False, None)
        row = await one(tx, "SELECT * FROM case_claims WHERE case_id = ?", (case_id,))
        if row is not None:
            held = Claim(row["case_id"], row["user"], row["claimed_at"])
            return ClaimResult(held.user == user, held, already=held.user == user)
        at = now_iso()
        await tx.execute('INSERT INTO case_claims (case_id, "user", claimed_at) VALUES (?, ?, ?)',
                         (case_id, user, at))
        await audit.append(tx, actor=user, action="case.claimed", case_id=case_id)
        return ClaimResult(True, Claim(case_id, user, at))


async def release(store: Store, case_id: int, user: str) -> bool:
    """Release the claimer's own claim; False (nothing changed) when they do not hold it."""
    async with store.transaction() as tx:
        cursor = await tx.execute('DELETE FROM case_claims WHERE case_id = ? AND "user" = ?',
                                  (case_id, user))
        if not cursor.rowcount:
            return False
        await audit.append(tx, actor=user, action="case.released", case_id=case_id)
        return True


async def holder(store: Store, case_id: int) -> Claim | None:
    row = await store.fetch_one("SELECT * FROM case_claims WHERE case_id = ?", (case_id,))
    return Claim(row["case_id"], row["user"], row["claimed_at"]) if row else None


async def holders(store: Store, case_ids: Sequence[int]) -> dict[int, Claim]:
    if not case_ids:
        return {}
    marks = ",".join("?" * len(case_ids))
    found = await store.fetch_all(
        f"SELECT * FROM case_claims WHERE case_id IN ({marks})", tuple(case_ids))
    return {r["case_id"]: Claim(r["case_id"], r["user"], r["claimed_at"]) for r in found}
