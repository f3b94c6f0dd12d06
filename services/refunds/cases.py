"""Refund cases' tables (cases, quotes, decisions): the lifecycle, the decisions on a case, and
the queries of them the refund path and its risk flags ask; what the finance side counts of
them is `case_counts`. The record types are `models`.

Every state change is one transaction holding the store's write lock: the status check, the
update, the decision row and the audit row commit together or not at all. A transition is a
compare-and-set on `status`, so two managers clicking at once produce one decision. A
transition that closes a case (refunded, partly refunded, denied) also owes the customer their
message (`services.customers.outbox`), in the same transaction. A transition to an approval
(`approved`, `auto_approved`) leases the case to this instance in the same statement
(`services.store.leases`): until it is executing, an approval whose instance died is taken up
by another once the lease has passed (`execution.claim_stale`).
"""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from services.customers import outbox as customer_outbox
from services.money import to_minor
from services.privacy import scrub
from services.quoting.quote import Quote
from services.refunds.models import (
    APPROVED,
    OPEN,
    TRANSITIONS,
    AlreadyDecided,
    Case,
    CaseError,
    CaseNotFound,
    IllegalTransition,
    InvalidAmount,
    StaleQuote,
    Status,
    StoredQuote,
    booking_key,
)
from services.store import audit, leases
from services.store.db import Row, Store, clock_utc, dumps, now_iso, one, utcnow, write


async def get(store: Store, case_id: int) -> Case:
    row = await store.fetch_one("SELECT * FROM cases WHERE id = ?", (case_id,))
    if row is None:
        raise CaseNotFound(f"no refund case {case_id}")
    return Case.from_row(row)


async def status_of(store: Store, case_id: int) -> str | None:
    """The case's status as stored; None when there is no such case."""
    row = await store.fetch_one("SELECT status FROM cases WHERE id = ?", (case_id,))
    return row["status"] if row else None


async def booking_id_of(store: Store, case_id: int) -> str | None:
    """The Checkfront reference of the case's booking; None when there is no such case."""
    row = await store.fetch_one("SELECT booking_id FROM cases WHERE id = ?", (case_id,))
    return row["booking_id"] if row else None


# a booking given by its key, its code or its Checkfront id (cases from before the key
# existed, and the few a migration left unkeyed, are found by the other two)
_BOOKING = "(booking_key = ? OR booking_id = ? OR booking_code = ?)"


def _booking_params(booking: str) -> tuple[str, str, str]:
    return booking_key(booking), booking, booking


async def find_open(store: Store, booking: str) -> Case | None:
    """The booking's open case (by key, code or Checkfront id), if any."""
    marks = ",".join("?" for _ in OPEN)
    row = await store.fetch_one(
        f"SELECT * FROM cases WHERE {_BOOKING} AND status IN ({marks}) ORDER BY id LIMIT 1",
        (*_booking_params(booking), *OPEN),
    )
    return Case.from_row(row) if row else None


def latest_for_booking_query(booking: str) -> tuple[str, tuple[Any, ...]]:
    """The query of `latest_for_booking`, for a caller that reads it with others in one trip
    (`db.reads`); its one row, if any, through `Case.from_row`."""
    return (f"SELECT * FROM cases WHERE {_BOOKING} ORDER BY id DESC LIMIT 1",
            tuple(_booking_params(booking)))


async def latest_for_booking(store: Store, booking: str) -> Case | None:
    row = await store.fetch_one(*latest_for_booking_query(booking))
    return Case.from_row(row) if row else None


async def list_cases(store: Store, status: Status | None = None, limit: int = 200) -> list[Case]:
    if status is None:
        rows = await store.read_all("SELECT * FROM cases ORDER BY id DESC LIMIT ?", (limit,))
    else:
        rows = await store.read_all(
            "SELECT * FROM cases WHERE status = ? ORDER BY id DESC LIMIT ?", (status, limit)
        )
    return [Case.from_row(r) for r in rows]


async def oldest(store: Store, status: Status, limit: int) -> list[Case]:
    """The cases in `status` that have been there longest, the oldest first."""
    rows = await store.fetch_all(
        "SELECT * FROM cases WHERE status = ? ORDER BY created_at, id LIMIT ?",
        (status.value, limit))
    return [Case.from_row(r) for r in rows]


async def changed_before(store: Store, statuses: tuple[Status, ...], cutoff: str,
                         limit: int = 1000) -> list[Case]:
    """Cases in one of `statuses` that last changed before `cutoff` (a stored time), the
    longest unchanged first."""
    marks = ",".join("?" for _ in statuses)
    rows = await store.fetch_all(
        f"SELECT * FROM cases WHERE status IN ({marks}) AND updated_at < ? "
        "ORDER BY updated_at, id LIMIT ?", (*statuses, cutoff, limit))
    return [Case.from_row(r) for r in rows]


async def count(store: Store, status: Status) -> int:
    """How many cases are in `status`."""
    row = await store.read_one("SELECT COUNT(*) FROM cases WHERE status = ?", (status.value,))
    return int(row[0]) if row else 0


async def current_quote(store: Store, case: Case) -> StoredQuote:
    row = await store.fetch_one(
        "SELECT version, created_at, snapshot, quote FROM quotes WHERE case_id = ? "
        "AND version = ?", (case.id, case.quote_version),
    )
    if row is None:
        raise CaseError(f"case {case.id} has no stored quote")
    return StoredQuote(row["version"], row["created_at"], json.loads(row["snapshot"]),
                       Quote.from_dict(json.loads(row["quote"])))


async def last_decision(store: Store, case_id: int) -> Row | None:
    return await store.fetch_one(
        "SELECT * FROM decisions WHERE case_id = ? ORDER BY id DESC LIMIT 1", (case_id,)
    )


async def transition(
    tx: aiosqlite.Connection,
    case: Case,
    to: Status,
    *,
    actor: str,
    reason: str | None = None,
    changes: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
) -> Case:
    """Move a case from the status it was read in to `to`, or raise and change nothing."""
    if to not in TRANSITIONS[case.status]:
        raise IllegalTransition(f"case {case.id} cannot go from {case.status} to {to}")
    fields: dict[str, Any] = {"status": str(to), "status_reason": reason,
                              "updated_at": now_iso()}
    if to in APPROVED:   # an intent to refund: this instance's until it executes or dies
        me = leases.this()
        fields.update(claimed_by=me.id, lease_until=me.until(utcnow()))
    fields.update(changes or {})
    assignments = ", ".join(f"{name} = ?" for name in fields)
    # the compare-and-set and the row it leaves, in one trip (`RETURNING`: no row, no change)
    row = await one(
        tx, f"UPDATE cases SET {assignments}, revision = revision + 1 "
        "WHERE id = ? AND status = ? AND revision = ? RETURNING *",
        (*fields.values(), case.id, str(case.status), case.revision),
    )
    if row is None:
        raise AlreadyDecided(f"case {case.id} changed while this request was handled")
    await audit.append(
        tx, actor=actor, action=f"case.{to}", case_id=case.id,
        detail={"from": str(case.status), "to": str(to), "reason": reason, **(detail or {})},
    )
    closed = Case.from_row(row)
    told = customer_outbox.outcome_of(closed.status, closed.refund_amount,
                                      closed.approved_amount)
    if told is not None:   # the customer is owed a message: in the closing transaction, once
        await customer_outbox.enqueue(tx, closed.id, told)
    return closed


async def record_decision(
    tx: aiosqlite.Connection, case: Case, decision: str, *, by: str,
    amount: int | None = None, reason: str | None = None,
) -> None:
    await write(   # no answer read: with the transaction's next trip
        tx, "INSERT INTO decisions (case_id, decision, amount, reason, decided_by, quote_version, "
        "decided_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (case.id, decision, amount, reason, by, case.quote_version, now_iso()),
    )


async def approve(
    store: Store, case_id: int, *, by: str, amount: int | None = None,
    reason: str | None = None, quote_version: str | None = None,
) -> Case:
    """A person approves a pending case, at the quoted amount or an adjusted one."""
    async with store.transaction(durable=True) as tx:   # a person's decision
        case = await _pending(store, case_id, quote_version)
        quoted = (await current_quote(store, case)).quote
        net_paid = quoted.net_paid
        final = case.refund_amount if amount is None else amount
        if final != case.refund_amount and not (reason or "").strip():
            raise InvalidAmount("an adjusted amount needs a reason")
        if final <= 0:
            raise InvalidAmount("the refund amount must be positive")
        if final > net_paid:
            raise InvalidAmount(
                f"{case.money(final)} is more than the {case.money(net_paid)} {case.currency} "
                "paid on this booking"
            )
        await record_decision(tx, case, "approve", by=by, amount=final, reason=reason)
        return await transition(
            tx, case, Status.APPROVED, actor=by, reason=reason,
            changes={"approved_amount": final},
            detail={"amount": case.money(final), "quoted": case.money(case.refund_amount),
                    "adjusted": final != case.refund_amount},
        )


async def deny(store: Store, case_id: int, *, by: str, reason: str,
               quote_version: str | None = None) -> Case:
    if not reason.strip():
        raise CaseError("a denial needs a reason")
    async with store.transaction(durable=True) as tx:   # a person's decision
        case = await _pending(store, case_id, quote_version)
        await record_decision(tx, case, "deny", by=by, reason=reason)
        return await transition(tx, case, Status.DENIED, actor=by, reason=reason)


async def _pending(store: Store, case_id: int, quote_version: str | None) -> Case:
    case = await get(store, case_id)
    if case.status != Status.PENDING_APPROVAL:
        last = await last_decision(store, case_id)
        if last is not None and case.status not in (Status.QUOTED,):
            verb = "approved" if last["decision"] in ("approve", "auto_approve") else "denied"
            raise AlreadyDecided(
                f"already {verb} by {last['decided_by']} at {clock_utc(last['decided_at'])}",
                decided_by=last["decided_by"], decided_at=last["decided_at"], outcome=verb,
            )
        raise IllegalTransition(f"case {case_id} is {case.status}, not waiting for approval")
    if quote_version is not None and quote_version != case.quote_version:
        raise StaleQuote(f"case {case_id} was re-quoted; the card you clicked is out of date")
    return case



# --- writing a case and its quotes (inside the caller's transaction) -------------------------

async def insert(tx: aiosqlite.Connection, *, booking_id: str, booking_code: str,
                 currency: str, quote: Quote, source: str, requested_by: str | None,
                 customer_hash: str | None, snapshot: dict[str, Any],
                 waiver_source: str | None = None) -> Case:
    """A new case in `quoted`, with its first quote and the snapshot it was made from (kept
    scrubbed of the customer's contact details); keyed on the booking's code (one open case
    per key: a second raises IntegrityError). `waiver_source`: where a waiver rule found the
    waiver in Checkfront's notice; the case is then involuntary."""
    now = now_iso()
    row = await one(
        tx, "INSERT INTO cases (booking_id, booking_code, booking_key, status, currency, "
        "cancelled_at, waiver, source, requested_by, quote_version, refund_amount, "
        "customer_hash, created_at, updated_at, involuntary, waiver_source) "
        "VALUES (?, ?, ?, 'quoted', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        (booking_id, booking_code, booking_key(booking_code), currency, quote.cancelled_at,
         quote.waiver, source, requested_by, quote.version, quote.total_refund, customer_hash,
         now, now, int(waiver_source is not None), waiver_source),
    )
    assert row is not None
    case_id = int(row["id"])
    data = quote.to_dict()
    await write(   # no answer read: with the transaction's next trip
        tx, "INSERT INTO quotes (case_id, version, created_at, snapshot, quote, currency, "
        "order_total, skus) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (case_id, quote.version, now, dumps(scrub(snapshot)), dumps(data),
         *_outlier_columns(data, currency)),
    )
    return Case.from_row(row)


async def add_quote(tx: aiosqlite.Connection, case_id: int, quote: Quote,
                    snapshot: dict[str, Any]) -> None:
    """Keep a re-quote beside the case's earlier ones (a version already kept stays); its
    snapshot is kept scrubbed of the customer's contact details."""
    row = await one(tx, "SELECT currency FROM cases WHERE id = ?", (case_id,))
    data = quote.to_dict()
    columns = _outlier_columns(data, row["currency"]) if row is not None else (None, None, None)
    await write(
        tx, "INSERT INTO quotes (case_id, version, created_at, snapshot, quote, "
        "currency, order_total, skus) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (case_id, version) DO NOTHING",
        (case_id, quote.version, now_iso(), dumps(scrub(snapshot)), dumps(data), *columns),
    )


def _outlier_columns(quote: dict[str, Any],
                     currency: str) -> tuple[str, int | None, str | None]:
    """What the value-outlier flag reads of a quote, kept beside it: its case's currency, its
    order total in minor units and its lines' skus (as `recent_order_totals` would read them
    from the JSON; None when that would not read, so that it still reads the JSON)."""
    try:
        total: int | None = to_minor(quote["order_total"], currency)
        skus: str | None = dumps([line.get("sku") for line in quote.get("lines", [])])
    except (KeyError, TypeError, AttributeError, ValueError):
        total = skus = None
    return currency, total, skus


async def set_quote_version(tx: aiosqlite.Connection, case_id: int, version: str) -> None:
    """Point the case at a re-quote that changed nothing it was decided on."""
    await write(tx, "UPDATE cases SET quote_version = ? WHERE id = ?", (version, case_id))


# --- what risk flags ask of earlier cases ---------------------------------------------------

async def refunded_for_customer(store: Store, customer_hash: str, *, other_than_booking: str,
                                since: str) -> int:
    """How many other bookings of this customer (salted hash) were refunded, or are being,
    since `since`."""
    row = await store.fetch_one(
        "SELECT COUNT(*) AS n FROM cases WHERE customer_hash = ? AND booking_id != ? "
        "AND status IN ('refunded', 'partially_refunded', 'refunded_by_hand', 'executing', "
        "'approved', 'auto_approved') AND created_at >= ?",
        (customer_hash, other_than_booking, since),
    )
    return int(row["n"]) if row else 0


async def recent_order_totals(store: Store, *, currency: str, other_than_booking: str,
                              sku: str, limit: int) -> list[int]:
    """Order totals (minor units) of those current quotes of the latest `limit` cases of other
    bookings in `currency` that have a line of `sku`, newest quote first. This runs for every
    new case: it walks the quotes of the currency by index, newest first, reads the columns
    kept beside each quote and tests the sku on them (each distinct skus text parsed once); a
    quote's JSON is read only where those columns are missing."""
    rows = await store.fetch_all(
        "SELECT q.order_total, q.skus, "
        "CASE WHEN q.order_total IS NULL OR q.skus IS NULL THEN q.quote END AS quote "
        "FROM quotes q CROSS JOIN cases c "
        "WHERE c.id = q.case_id AND q.currency = ? AND c.currency = ? AND c.booking_id != ? "
        "AND q.version = c.quote_version ORDER BY q.id DESC LIMIT ?",
        (currency, currency, other_than_booking, limit))
    totals = []
    # the skus column: a JSON array of the lines' skus (strings, or null for a line without
    # one), tested here so that the SQL needs no engine's JSON functions; quotes of one product
    # share the same text, so each distinct text is parsed and tested once
    has_sku: dict[str, bool] = {}
    for row in rows:
        if row["quote"] is None:
            text = row["skus"]
            found = has_sku.get(text)
            if found is None:
                found = has_sku[text] = sku in json.loads(text)
            if found:
                totals.append(int(row["order_total"]))
            continue
        quote = json.loads(row["quote"])
        if sku in frozenset(line.get("sku") for line in quote.get("lines", [])):
            totals.append(to_minor(quote["order_total"], currency))
    return totals
