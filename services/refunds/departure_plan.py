"""Planning a departure's run (`/refund departure`): which bookings, and what each refunds.

`plan` finds every booking of one departure (Checkfront's `booking/index` filtered by the day
and the item, paged; each booking then read and kept only when one of its lines is that item
at that start time and it is not cancelled already), quotes each with and without the waiver
and stores the run: the count, both totals, and the bookings that need a person anyway (a
payment under a dispute that holds it, a part paid outside Stripe, a case already open). The
run itself (the click, the steps, a resume) is `services.refunds.departure`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from services.deps import Deps
from services.money import display
from services.quoting.booking import BookingSnapshot
from services.quoting.booking_read import parse_snapshot
from services.quoting.quote import Quote
from services.refunds import cases
from services.refunds.departure import DepartureError, Run, get_run
from services.refunds.models import Case
from services.refunds.snapshots import booking_status, quote_snapshot, read_booking
from services.store import audit
from services.store.db import now_iso, utcnow

MAX_BOOKINGS = 500


def _on_departure(snapshot: BookingSnapshot, item: str, starts_at: datetime) -> bool:
    wanted = item.strip().lower()
    return any((line.sku.lower() == wanted or line.item_id == item.strip()
                or line.name.strip().lower() == wanted)
               and abs((line.start - starts_at).total_seconds()) < 60
               for line in snapshot.lines)


async def find_bookings(svc: Deps, item: str, starts_at: datetime, *,
                        day: date | None = None) -> list[tuple[dict[str, Any], BookingSnapshot]]:
    """The bookings of the departure not cancelled yet, each as read now (snapshot with its
    payments) and parsed. `day`: the departure's day as Checkfront's account sees it (default
    its UTC day)."""
    if svc.checkfront is None:
        raise DepartureError("Checkfront is not configured.")
    on = (day or starts_at.astimezone(UTC).date()).isoformat()
    rows = await svc.checkfront.list_bookings(
        start_date=on, item_id=item.strip() if item.strip().isdigit() else None)
    found = []
    for row in rows[:MAX_BOOKINGS * 2]:
        code = str(row.get("code") or row.get("booking_id") or "").strip()
        status = str(row.get("status_id") or "").upper()
        if not code or status in svc.config.cancelled_statuses:
            continue
        read = await read_booking(svc, code)
        if booking_status(read.raw.get("booking") or {}) in svc.config.cancelled_statuses:
            continue
        snapshot = parse_snapshot(read.raw, default_currency=svc.book.currency)
        if _on_departure(snapshot, item, starts_at):
            found.append((read.raw, snapshot))
    if len(found) > MAX_BOOKINGS:
        raise DepartureError(f"That departure has more than {MAX_BOOKINGS} bookings; "
                             "cancel it in parts.")
    return found


def _attention(quote: Quote, existing: Case | None) -> str | None:
    """Why this booking needs a person whatever the click: a dispute, money outside Stripe, a
    case of its own."""
    reasons = [flag.reason for flag in quote.risk_flags if flag.code == "payment_disputed"]
    manual = sum(a.amount for a in quote.allocations if a.method == "manual")
    if manual:
        reasons.append(f"{display(manual, quote.currency)} was not paid through Stripe and "
                       "must be refunded by hand")
    if existing is not None:
        reasons.append(f"has case #{existing.id} of its own ({existing.status.value})")
    return "; ".join(reasons) or None


def offered_waivers(svc: Deps) -> set[str]:
    return {code for policy in svc.book.policies for code in policy.waivers}


async def plan(svc: Deps, item: str, starts_at: datetime, *, waiver: str | None,
               requested_by: str, day: date | None = None) -> Run:
    """Find the departure's bookings, quote each, store the run (`planned`)."""
    waiver = waiver.strip().upper() if waiver else None
    if waiver is not None and waiver not in offered_waivers(svc):
        raise DepartureError(f"No policy offers the waiver {waiver}.")
    found = await find_bookings(svc, item, starts_at, day=day)
    if not found:
        raise DepartureError("No bookings that are not cancelled yet were found for that "
                             "departure.")
    currencies = {snapshot.currency for _, snapshot in found}
    if len(currencies) > 1:
        raise DepartureError("That departure's bookings are in more than one currency.")
    now = utcnow()
    planned = []
    for raw, snapshot in found:
        _, with_waiver = await quote_snapshot(svc, raw, now, waiver)
        _, without = await quote_snapshot(svc, raw, now, None) if waiver else (None, with_waiver)
        existing = await cases.find_open(svc.store, snapshot.code)
        planned.append((snapshot, with_waiver.total_refund, without.total_refund,
                        _attention(with_waiver, existing)))
    total = sum(p[1] for p in planned)
    total_without = sum(p[2] for p in planned)
    at = now_iso()
    async with svc.store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT INTO departure_runs (item, starts_at, waiver, currency, total, "
            "total_without_waiver, state, requested_by, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 'planned', ?, ?, ?) RETURNING id",
            (item.strip(), starts_at.astimezone(UTC).isoformat(), waiver, currencies.pop(),
             total, total_without, requested_by, at, at))
        run_id = int((await cursor.fetchone())["id"])
        await tx.executemany(
            "INSERT INTO departure_bookings (run_id, booking_code, booking_id, position, "
            "amount, amount_without_waiver, attention, step, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'waiting', ?)",
            [(run_id, snapshot.code.strip().upper(), snapshot.booking_id, n, amount, without,
              attention, at) for n, (snapshot, amount, without, attention) in enumerate(planned)])
        await audit.append(tx, actor=requested_by, action="departure.planned", detail={
            "run": run_id, "item": item.strip(), "starts_at": starts_at.isoformat(),
            "waiver": waiver, "bookings": [p[0].code for p in planned], "total": total,
            "total_without_waiver": total_without})
    return await get_run(svc, run_id)
