"""Reconciliation runs and their discrepancies as records, and all the SQL that keeps them.

Each run is stored: one `recon_runs` row per business day (a re-run replaces it) and one
`recon_discrepancies` row per problem, keyed so that a re-run updates rather than duplicates.
Open problems from earlier days are checked again by every run; those that are gone are marked
resolved (by `reconcile:<day>`), as are problems of the re-run day that the re-run no longer
finds. A problem a person closed (`person:<who>`) stays closed when a later run finds it again.

Kinds: matched; external (in Stripe, not in our ledger: a dashboard refund, informational
unless above the policy's `escalate_over` or in another currency); missing_in_stripe;
amount_mismatch; currency_mismatch; failed (failed or canceled at Stripe); stale_pending
(pending for more than 48 hours, or planned and never sent); checkfront_not_updated (a
refunded booking that Checkfront still shows as active or paid).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from services.errors import DomainError
from services.money import display
from services.store import audit
from services.store.db import Row, Store, dumps, iso_utc, now_iso

MATCHED = "matched"
EXTERNAL = "external"
MISSING_IN_STRIPE = "missing_in_stripe"
AMOUNT_MISMATCH = "amount_mismatch"
CURRENCY_MISMATCH = "currency_mismatch"
FAILED = "failed"
STALE_PENDING = "stale_pending"
CHECKFRONT_NOT_UPDATED = "checkfront_not_updated"
KINDS = (MATCHED, EXTERNAL, MISSING_IN_STRIPE, AMOUNT_MISMATCH, CURRENCY_MISMATCH, FAILED,
         STALE_PENDING, CHECKFRONT_NOT_UPDATED)

AUTO_RESOLVER = "reconcile"
PENDING_STATUSES = ("pending", "requires_action")   # Stripe refund statuses still under way


class ReconcileError(DomainError):
    """A reconciliation that cannot run; the message is safe to show."""


@dataclass
class Discrepancy:
    """One thing a run found wrong (or, when not `error`, only worth recording)."""

    kind: str
    key: str
    detail: str
    error: bool = True
    booking_code: str | None = None
    amount: int | None = None
    currency: str | None = None
    refund_id: str | None = None
    execution_id: int | None = None
    case_id: int | None = None
    payment_ref: str | None = None
    day: str = ""
    first_seen: str = ""
    last_seen: str = ""
    resolved_at: str | None = None
    resolved_by: str | None = None
    id: int | None = None

    @property
    def money(self) -> str:
        if self.amount is None or not self.currency:
            return "-"
        return display(self.amount, self.currency)

    @classmethod
    def from_row(cls, row: Row) -> Discrepancy:
        return cls(kind=row["kind"], key=row["key"], detail=row["detail"],
                   error=bool(row["error"]), booking_code=row["booking_code"],
                   amount=row["amount"], currency=row["currency"], refund_id=row["refund_id"],
                   execution_id=row["execution_id"], case_id=row["case_id"],
                   payment_ref=row["payment_ref"], day=row["day"],
                   first_seen=row["first_seen"], last_seen=row["last_seen"],
                   resolved_at=row["resolved_at"], resolved_by=row["resolved_by"], id=row["id"])


@dataclass
class ReconRun:
    """One business day's reconciliation: its figures, what it found and what it resolved."""

    day: date
    tz: str
    window_start: datetime
    window_end: datetime
    ran_at: str
    stripe_count: int
    counts: dict[str, int]
    totals: dict[str, dict[str, int]]   # currency -> figure -> minor units
    discrepancies: list[Discrepancy]    # found by this run, informational ones included
    resolved: list[Discrepancy] = field(default_factory=list)  # closed by this run
    notes: list[str] = field(default_factory=list)

    @property
    def open_errors(self) -> list[Discrepancy]:
        return [d for d in self.discrepancies if d.error and d.resolved_at is None]

    @property
    def informational(self) -> list[Discrepancy]:
        return [d for d in self.discrepancies if not d.error]

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(), "tz": self.tz,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(), "ran_at": self.ran_at,
            "stripe_count": self.stripe_count, "counts": self.counts, "totals": self.totals,
            "discrepancies": [asdict(d) for d in self.discrepancies],
            "resolved": [asdict(d) for d in self.resolved], "notes": self.notes,
        }


# ---- writing a run ---------------------------------------------------------------------------

async def save_run(
    store: Store,
    *,
    day: date,
    tz: str,
    window: tuple[datetime, datetime],
    stripe_count: int,
    counts: dict[str, int],
    totals: dict[str, dict[str, int]],
    notes: list[str],
    found: Iterable[Discrepancy],
    resolved_ids: list[int],
) -> ReconRun:
    """Store one day's run in one transaction, and return it as stored: what it found (with
    ids and first sightings) and what it resolved, both the earlier problems in
    `resolved_ids` and the day's own problems this run no longer found."""
    ran_at = now_iso()
    day_text = day.isoformat()
    resolver = f"{AUTO_RESOLVER}:{day_text}"
    found = list(found)
    start, end = window
    async with store.transaction() as tx:
        for d in found:
            await tx.execute(
                "INSERT INTO recon_discrepancies (key, day, kind, error, booking_code, "
                "amount, currency, refund_id, execution_id, case_id, payment_ref, detail, "
                "first_seen, last_seen, last_run_day) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, "
                "error = excluded.error, booking_code = excluded.booking_code, "
                "amount = excluded.amount, currency = excluded.currency, "
                "refund_id = excluded.refund_id, execution_id = excluded.execution_id, "
                "case_id = excluded.case_id, payment_ref = excluded.payment_ref, "
                "detail = excluded.detail, last_seen = excluded.last_seen, "
                "last_run_day = excluded.last_run_day, "
                "resolved_at = CASE WHEN recon_discrepancies.resolved_by LIKE 'person:%' "
                "THEN recon_discrepancies.resolved_at END, "
                "resolved_by = CASE WHEN recon_discrepancies.resolved_by LIKE 'person:%' "
                "THEN recon_discrepancies.resolved_by END",
                (d.key, d.day or day_text, d.kind, int(d.error), d.booking_code, d.amount,
                 d.currency, d.refund_id, d.execution_id, d.case_id, d.payment_ref,
                 d.detail, ran_at, ran_at, day_text))
        await tx.execute(
            "UPDATE recon_discrepancies SET resolved_at = ?, resolved_by = ? "
            "WHERE day = ? AND resolved_at IS NULL AND last_seen != ?",
            (ran_at, resolver, day_text, ran_at))
        for n in range(0, len(resolved_ids), 500):
            chunk = resolved_ids[n:n + 500]
            marks = ",".join("?" for _ in chunk)
            await tx.execute(
                "UPDATE recon_discrepancies SET resolved_at = ?, resolved_by = ? "
                f"WHERE id IN ({marks}) AND resolved_at IS NULL",
                (ran_at, resolver, *chunk))
        await tx.execute(
            "INSERT INTO recon_runs (day, tz, window_start, window_end, ran_at, "
            "first_ran_at, stripe_count, counts, totals, notes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET "
            "tz = excluded.tz, window_start = excluded.window_start, "
            "window_end = excluded.window_end, ran_at = excluded.ran_at, "
            "runs = recon_runs.runs + 1, stripe_count = excluded.stripe_count, "
            "counts = excluded.counts, totals = excluded.totals, notes = excluded.notes",
            (day_text, tz, iso_utc(start), iso_utc(end), ran_at, ran_at,
             stripe_count, dumps(counts), dumps(totals), dumps(notes)))
        await audit.append(tx, actor="reconcile", action="reconcile.run", detail={
            "day": day_text, "tz": tz, "stripe_refunds": stripe_count,
            "counts": counts,
            "open_errors": sum(1 for d in found if d.error)})
    seen = await store.fetch_all(
        "SELECT * FROM recon_discrepancies WHERE last_seen = ? AND last_run_day = ? "
        "ORDER BY id", (ran_at, day_text))
    resolved = await store.fetch_all(
        "SELECT * FROM recon_discrepancies WHERE resolved_at = ? AND resolved_by = ? "
        "ORDER BY id", (ran_at, resolver))
    return ReconRun(
        day=day, tz=tz, window_start=start, window_end=end,
        ran_at=ran_at, stripe_count=stripe_count, counts=counts, totals=totals,
        discrepancies=[Discrepancy.from_row(r) for r in seen],
        resolved=[Discrepancy.from_row(r) for r in resolved], notes=list(notes))


# ---- reading stored runs ---------------------------------------------------------------------

async def load_run(store: Store, day: date) -> ReconRun | None:
    """The stored run of a day: its figures, the problems it found (with their state now) and
    those it resolved."""
    row = await store.fetch_one("SELECT * FROM recon_runs WHERE day = ?", (day.isoformat(),))
    if row is None:
        return None
    found = await store.fetch_all(
        "SELECT * FROM recon_discrepancies WHERE day = ? OR last_run_day = ? ORDER BY id",
        (day.isoformat(), day.isoformat()))
    resolved = await store.fetch_all(
        "SELECT * FROM recon_discrepancies WHERE resolved_by = ? ORDER BY id",
        (f"{AUTO_RESOLVER}:{day.isoformat()}",))
    return ReconRun(
        day=day, tz=row["tz"], window_start=datetime.fromisoformat(row["window_start"]),
        window_end=datetime.fromisoformat(row["window_end"]), ran_at=row["ran_at"],
        stripe_count=row["stripe_count"], counts=json.loads(row["counts"]),
        totals=json.loads(row["totals"]),
        discrepancies=[Discrepancy.from_row(r) for r in found],
        resolved=[Discrepancy.from_row(r) for r in resolved], notes=json.loads(row["notes"]))


async def open_discrepancies(store: Store, limit: int = 500) -> list[Discrepancy]:
    """Every unresolved problem (informational ones left out), oldest first."""
    rows = await store.fetch_all(
        "SELECT * FROM recon_discrepancies WHERE resolved_at IS NULL AND error = 1 "
        "ORDER BY day, id LIMIT ?", (limit,))
    return [Discrepancy.from_row(r) for r in rows]


async def open_from_other_days(store: Store, day: date, limit: int) -> list[Discrepancy]:
    """Unresolved problems (informational ones left out) of days other than `day`, in the
    order they were first found: the ones a run of `day` checks again."""
    rows = await store.fetch_all(
        "SELECT * FROM recon_discrepancies WHERE resolved_at IS NULL AND error = 1 "
        "AND day != ? ORDER BY id LIMIT ?", (day.isoformat(), limit))
    return [Discrepancy.from_row(r) for r in rows]


# ---- closing by hand -------------------------------------------------------------------------

async def resolve_discrepancy(store: Store, discrepancy_id: int, *, by: str, note: str) -> bool:
    """A person closes a problem (e.g. an external refund they made on purpose). False if it
    was not open. Later runs that find it again keep it closed."""
    if not note.strip():
        raise ReconcileError("closing a discrepancy needs a note")
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "UPDATE recon_discrepancies SET resolved_at = ?, resolved_by = ? "
            "WHERE id = ? AND resolved_at IS NULL", (now_iso(), f"person:{by}", discrepancy_id))
        if cursor.rowcount != 1:
            return False
        await audit.append(tx, actor=by, action="reconcile.resolved",
                           detail={"discrepancy": discrepancy_id, "note": note})
        return True
