"""The queries rewritten to scale give what the queries before them gave: the value-outlier
flag's recent order totals (now read from columns kept beside each quote, backfilled by
migration 009), and the range report (now one look-up per row for the latest decision).
Each is compared with the query it replaced, kept here as the reference, on stores holding
the cases that make them differ if anything does: re-quotes, other currencies, quotes written
without the new columns, several decisions per case, a case whose quote is missing."""

from __future__ import annotations

import itertools
import json
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from services.finance.report import range_report
from services.money import format_minor, to_minor
from services.refunds import cases, ledger
from services.refunds.ledger import SETTLED, ExecutionStatus
from services.store import db as store_db
from services.store.db import Store
from tests.quote_fixtures import booking, item, policies, policy, quote

UTC = ZoneInfo("UTC")


async def reference_totals(store: Store, *, currency: str, other_than_booking: str,
                           sku: str, limit: int) -> list[int]:
    """What the value-outlier flag read before migration 009: every quote's JSON decoded,
    then the totals of those with a line of `sku` kept."""
    rows = await store.fetch_all(
        "SELECT q.quote FROM quotes q JOIN cases c ON c.id = q.case_id "
        "WHERE c.booking_id != ? AND q.version = c.quote_version AND c.currency = ? "
        "ORDER BY q.id DESC LIMIT ?", (other_than_booking, currency, limit))
    totals = []
    for row in rows:
        found = json.loads(row["quote"])
        if sku in frozenset(line.get("sku") for line in found.get("lines", [])):
            totals.append(to_minor(found["order_total"], currency))
    return totals


def a_quote(n: int, currency: str, skus: list[str], amount: int) -> Any:
    """A real quote of booking `n`: one line per sku, `amount` minor units each."""
    places = {"JPY": 0, "KWD": 3}.get(currency, 2)
    lines = [item(sku, format_minor(amount + k, currency), "0", item_id=str(k + 1))
             for k, sku in enumerate(skus)]
    snap = booking(lines, currency=currency, booking_id=str(1000 + n), code=f"B-{n}")
    book = policies(policy("any", default=True), currency=currency,
                    auto_approve_max="1" + "0" * 6 + ("." + "0" * places if places else ""),
                    escalate_over="2" + "0" * 6 + ("." + "0" * places if places else ""))
    return quote(snap, book), snap


async def open_case(store: Store, n: int, currency: str, skus: list[str],
                    amount: int) -> cases.Case:
    made, snap = a_quote(n, currency, skus, amount)
    async with store.transaction() as tx:
        return await cases.insert(tx, booking_id=str(1000 + n), booking_code=f"B-{n}",
                                  currency=currency, quote=made, source="cli",
                                  requested_by=None, customer_hash=None, snapshot=snap)


async def test_recent_order_totals_are_those_the_quotes_json_gives(tmp_path: Path) -> None:
    store = await Store(tmp_path / "r.db").open()
    try:
        opened = []
        for n in range(30):
            currency = ("USD", "JPY", "KWD")[n % 3]
            skus = [("kayak", "bike", "boat")[n % 4 % 3], "lunch"][: 1 + n % 2]
            opened.append(await open_case(store, n, currency, skus, 5_000 + 137 * n))
        for n, case in enumerate(opened):   # re-quotes come after every first quote
            currency = case.currency
            if n % 5 == 0:   # re-quoted: a newer quote, the case pointed at it
                later, snap = a_quote(n, currency, ["boat"], 90_000 + n)
                async with store.transaction() as tx:
                    await cases.add_quote(tx, case.id, later, snap)
                    await cases.set_quote_version(tx, case.id, later.version)
            if n % 7 == 0:   # re-quoted, the case kept its first quote
                later, snap = a_quote(n, currency, ["kayak"], 70_000 + n)
                async with store.transaction() as tx:
                    await cases.add_quote(tx, case.id, later, snap)
        async with store.transaction() as tx:  # quotes written without the new columns
            await tx.execute(
                "INSERT INTO cases (booking_id, booking_code, status, currency, cancelled_at, "
                "source, quote_version, created_at, updated_at) SELECT '999', 'B-999', status, "
                "currency, cancelled_at, source, quote_version, created_at, updated_at "
                "FROM cases WHERE id = 2")
            await tx.execute(
                "INSERT INTO quotes (case_id, version, created_at, snapshot, quote) "
                "SELECT last_insert_rowid(), version, created_at, snapshot, quote FROM quotes "
                "WHERE case_id = 2")
        raw = await store.fetch_all("SELECT currency, order_total, skus FROM quotes")
        assert sum(r["order_total"] is None for r in raw) == 1
        assert all(r["currency"] is not None for r in raw)

        checked = 0
        for currency in ("USD", "JPY", "KWD", "EUR"):
            for other in ("1000", "1001", "1004", "999", "none"):
                for sku in ("kayak", "bike", "boat", "lunch", "none"):
                    for limit in (3, 200):
                        args: dict[str, Any] = {"currency": currency, "sku": sku,
                                                "other_than_booking": other, "limit": limit}
                        found = await cases.recent_order_totals(store, **args)
                        assert found == await reference_totals(store, **args), args
                        checked += len(found)
        assert checked > 100
    finally:
        await store.close()


def store_at_version_8(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT "
                "NULL, applied_at TEXT NOT NULL)")
    for version, name, sql in store_db._migrations():
        if version > 8:
            continue
        for statement in store_db._statements(sql):
            con.execute(statement)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, 'then')", (version, name))
    return con


async def test_the_migration_keeps_each_quotes_total_and_skus_where_its_text_reads_exactly(
        tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    con = store_at_version_8(path)
    stored: list[tuple[str, Any, Any]] = [   # currency, order_total as stored, lines
        ("USD", "125.00", [{"sku": "kayak"}, {"sku": "lunch"}]),
        ("JPY", "1250", [{"sku": "kayak"}]),
        ("KWD", "1.250", [{"sku": "boat"}, {"name": "no sku"}]),
        ("usd", "0.05", [{"sku": "kayak"}]),
        ("USD", "-5.00", [{"sku": "kayak"}]),
        ("USD", "12.5", [{"sku": "kayak"}]),     # not as the bot writes it: read the JSON
        ("JPY", "12.00", [{"sku": "kayak"}]),    # the same
        ("USD", 125, [{"sku": "kayak"}]),        # a number, not text: read the JSON
        ("USD", "125.00", None),                 # no lines: read the JSON
    ]
    for n, (currency, total, lines) in enumerate(stored):
        con.execute("INSERT INTO cases (booking_id, booking_code, status, currency, "
                    "cancelled_at, source, quote_version, created_at, updated_at) "
                    "VALUES (?, ?, 'refunded', ?, 'then', 'cli', 'v1', 'then', 'then')",
                    (str(n), f"C-{n}", currency))
        body: dict[str, Any] = {"order_total": total}
        if lines is not None:
            body["lines"] = lines
        con.execute("INSERT INTO quotes (case_id, version, created_at, snapshot, quote) "
                    "VALUES (?, 'v1', 'then', '{}', ?)", (n + 1, json.dumps(body)))
    con.commit()
    con.close()

    store = await Store(path).open()
    try:
        rows = await store.fetch_all("SELECT currency, order_total, skus FROM quotes ORDER BY id")
        assert [(r["currency"], r["order_total"],
                 None if r["skus"] is None else sorted(json.loads(r["skus"]), key=str))
                for r in rows] == [
            ("USD", 12500, ["kayak", "lunch"]), ("JPY", 1250, ["kayak"]),
            ("KWD", 1250, [None, "boat"]), ("usd", 5, ["kayak"]), ("USD", -500, ["kayak"]),
            ("USD", None, ["kayak"]), ("JPY", None, ["kayak"]), ("USD", None, ["kayak"]),
            ("USD", None, None)]
        for currency, sku in itertools.product(("USD", "JPY", "KWD", "usd"),
                                               ("kayak", "boat", "lunch")):
            args = {"currency": currency, "sku": sku, "other_than_booking": "3", "limit": 200}
            try:
                expected = await reference_totals(store, **args)
            except (KeyError, ValueError) as exc:  # the last quote: no lines to read
                expected = exc
            try:
                found: Any = await cases.recent_order_totals(store, **args)
            except (KeyError, ValueError) as exc:
                found = exc
            assert type(found) is type(expected) and (
                found == expected or isinstance(found, Exception)), (currency, found)
    finally:
        await store.close()


def reference_report(rows: list[sqlite3.Row]) -> tuple[list[dict[str, str]], dict[str, Any],
                                                       dict[str, int]]:
    """`range_report` before: each row's quote decoded, its decision by two subqueries."""
    out, totals, decisions = [], {}, {}
    for r in rows:
        found = json.loads(r["quote"]) if r["quote"] else {}
        out.append({
            "refunded_at": r["created_at"][:19] + "Z", "booking": r["booking_code"],
            "case": str(r["case_id"]), "currency": r["currency"],
            "quoted": format_minor(r["refund_amount"], r["currency"]),
            "refunded": format_minor(r["amount"], r["currency"]),
            "policies": " ".join(found.get("policy_ids", [])),
            "decision": r["decision"] or "", "decided_by": r["decided_by"] or "",
            "stripe_refund_id": r["stripe_refund_id"], "payment": r["payment_ref"],
            "status": r["status"], "waiver": r["waiver"] or "",
            "involuntary": "yes" if r["involuntary"] else "no"})
        if r["status"] in SETTLED:
            count, total = totals.get(r["currency"], (0, 0))
            totals[r["currency"]] = (count + 1, total + r["amount"])
        if r["decision"]:
            decisions[r["decision"]] = decisions.get(r["decision"], 0) + 1
    return out, totals, decisions


REFERENCE_REPORT_SQL = (
    "SELECT e.created_at, e.amount, e.currency, e.status, e.stripe_refund_id, "
    "e.payment_ref, c.id AS case_id, c.booking_code, c.refund_amount, c.waiver, "
    "c.involuntary, q.quote, "
    "(SELECT decision FROM decisions d WHERE d.case_id = c.id ORDER BY d.id DESC LIMIT 1) "
    "AS decision, (SELECT decided_by FROM decisions d WHERE d.case_id = c.id "
    "ORDER BY d.id DESC LIMIT 1) AS decided_by "
    "FROM executions e JOIN cases c ON c.id = e.case_id "
    "LEFT JOIN quotes q ON q.case_id = c.id AND q.version = c.quote_version "
    "WHERE e.stripe_refund_id IS NOT NULL AND e.created_at >= ? AND e.created_at < ? "
    "ORDER BY e.created_at")


async def test_the_range_report_lists_what_the_correlated_query_listed(tmp_path: Path) -> None:
    store = await Store(tmp_path / "rep.db").open()
    try:
        for n in range(12):
            case = await open_case(store, n, "USD" if n % 4 else "KWD",
                                   ["kayak", "lunch"][: 1 + n % 2], 8_000 + n)
            async with store.transaction() as tx:
                for k in range(n % 3):   # none, one or two decisions
                    await cases.record_decision(tx, case, ("approve", "deny")[k],
                                                by=f"person-{n}-{k}", amount=100)
                for attempt in range(1 + n % 2):
                    key = f"k-{n}-{attempt}"
                    await ledger.add_planned(tx, case_id=case.id, payment_ref=f"pi_{n}",
                                             amount=500 + n, currency=case.currency,
                                             attempt=attempt + 1, key=key)
                    row = await (await tx.execute(
                        "SELECT id FROM executions WHERE idempotency_key = ?", (key,))).fetchone()
                    status = (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED,
                              ExecutionStatus.PENDING)[(n + attempt) % 3]
                    await ledger.record_outcome(tx, row[0], status, None,
                                                refund_id=None if n == 5 else f"re_{n}_{attempt}")
                    await tx.execute("UPDATE executions SET created_at = ? WHERE id = ?",
                                     (f"2026-03-{10 + n:02d}T12:00:00.000000+00:00", row[0]))
                if n == 7:   # the case points at a quote that is not there
                    await tx.execute("UPDATE cases SET quote_version = 'gone' WHERE id = ?",
                                     (case.id,))

        for first, last in ((date(2026, 3, 1), date(2026, 3, 31)),
                            (date(2026, 3, 12), date(2026, 3, 15)), (date(2026, 4, 1),
                                                                    date(2026, 4, 2))):
            found = await range_report(store, first, last, UTC)
            start = f"{first.isoformat()}T00:00:00+00:00"
            end = f"{date.fromordinal(last.toordinal() + 1).isoformat()}T00:00:00+00:00"
            rows, totals, decisions = reference_report(
                await store.fetch_all(REFERENCE_REPORT_SQL, (start, end)))
            assert (found.rows, found.totals, found.decisions) == (rows, totals, decisions)
        march = await range_report(store, date(2026, 3, 1), date(2026, 3, 31), UTC)
        assert len(march.rows) > 12 and march.decisions and march.totals
        assert any(r["policies"] == "" for r in march.rows)   # the case without its quote
    finally:
        await store.close()
