"""Scale benchmark: the queries of the report, /healthz and every webhook on a store holding
100,000 refund cases, beside the same figures on a store of 1,000.

    python bench/scale_bench.py [--cases N] [--small N] [--days D] [--calls N]

Each store is seeded as a production store would hold it before migration 009 (schema
version 8): every case with its quote(s), decision(s), execution(s), the audit rows of its
life on a valid SHA-256 chain, the webhook events that brought it (a few still queued,
retrying or failed), its Checkfront payment, its Slack posts and message; a few disputes and
pending Checkfront write-backs. Rows are written by direct SQL in one transaction, spread over
`--days` days. Then the bot's `Store` opens it (migration 009 runs: its time is printed) and
the real code is timed:

- the 30-day range report (`services.finance.report.range_report`, what `/refund report` runs);
- the health check's backlog (`services.health.backlog`), median and p99 over `--calls` calls;
- each read a webhook, a click or a case's execution makes, per call in microseconds, beside
  a floor measured on the same store in the same run: a bare `SELECT` by primary key through
  the same connection (so the ratio is what the query costs over the cheapest round trip);
- the risk assessment of a new case (the value-outlier flag reads 200 recent quotes);
- writes (an audit row in its own transaction) while the report runs, p99, beside the same
  writes alone: the report reads on its own connection and holds nothing up;
- `audit.verify` over every seeded audit row, beside a floor of the same hashing over the
  same rows read by plain sqlite3.

The last lines compare the two stores: a per-request read is "unaffected by store size" when
its cost in primary-key look-ups (its time over the floor's, on the same store) at N cases is
within 2x that at the small store (both are timed alternately, the best of three rounds kept).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services import outbox  # noqa: E402
from services.disputes.holds import holds_on  # noqa: E402
from services.finance.report import range_report  # noqa: E402
from services.health import backlog  # noqa: E402
from services.intake import events  # noqa: E402
from services.money import format_minor  # noqa: E402
from services.quoting import risk  # noqa: E402
from services.quoting.booking_read import parse_snapshot  # noqa: E402
from services.refunds import cases, ledger, snapshots  # noqa: E402
from services.store import audit  # noqa: E402
from services.store import db as store_db  # noqa: E402
from services.store.audit import GENESIS, row_hash  # noqa: E402
from services.store.db import Store, dumps, iso_utc  # noqa: E402

TZ = ZoneInfo("UTC")
SKUS = [f"tour-{n}" for n in range(40)]
REPORT_TARGET_S = 1.0
HEALTHZ_TARGET_MS = 10.0
GROWTH_TARGET = 2.0


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def hexid(rng: random.Random, n: int = 24) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


class Chain:
    """Audit rows on a valid hash chain, as `audit.append` writes them."""

    def __init__(self) -> None:
        self.prev = GENESIS
        self.rows: list[tuple[Any, ...]] = []

    def add(self, at: str, actor: str, action: str, case_id: int | None,
            detail: dict[str, Any] | str) -> None:
        text = detail if isinstance(detail, str) else dumps(detail)
        digest = row_hash(self.prev, at, actor, action, case_id, text)
        self.rows.append((at, actor, action, case_id, text, self.prev, digest))
        self.prev = digest


def booking_dict(code: str, booking_id: str, lines: list[tuple[str, int]], paid: int,
                 pi: str, created: int, start: int) -> dict[str, Any]:
    items = [{"@attributes": {"item_id": str(k + 1), "line_id": str(k + 1)},
              "end_date": str(start + 7200), "name": sku, "qty": "1", "sku": sku, "slip": {},
              "start_date": str(start), "status": "STOP", "tax_total": "0.00",
              "total": format_minor(total, "USD")} for k, (sku, total) in enumerate(lines)]
    return {"booking": {
        "@attributes": {"booking_id": booking_id}, "code": code, "created_date": str(created),
        "customer": {"email_hash": hexid(random.Random(code)), "name": "Ana"},
        "end_date": str(start + 7200), "meta": {},
        "order": {"@attributes": {"currency_id": "USD"}, "discount": "0.00",
                  "items": {"item": items if len(items) > 1 else items[0]},
                  "paid_total": format_minor(paid, "USD"), "sub_total": format_minor(paid, "USD"),
                  "tax_total": "0.00", "total": format_minor(paid, "USD")},
        "staff_id": "1", "start_date": str(start), "status": "STOP", "tid": {}},
        "transactions": [{"amount": format_minor(paid, "USD"), "booking_id": code,
                          "date": created, "gateway_id": "Stripe", "status": "PAID",
                          "transaction_id": pi}]}


def quote_dict(code: str, booking_id: str, lines: list[tuple[str, int]], refund: int,
               pi: str, cancelled: str, version: str, decision: str) -> dict[str, Any]:
    total = sum(t for _, t in lines)
    return {
        "allocations": [{"amount": format_minor(refund, "USD"), "method": "stripe",
                         "payment": pi}],
        "already_refunded": "0.00", "booking_code": code, "booking_fingerprint": version * 2,
        "booking_id": booking_id, "cancelled_at": cancelled,
        "clauses": {"standard-48h": "Full refund 48+ hours before the start; 50% within 48 "
                    "hours; no refund within 24 hours.",
                    "default": "Everything else: full refund 24+ hours before the start."},
        "currency": "USD", "decision": decision, "entitlement": format_minor(refund, "USD"),
        "fee": "10.00",
        "lines": [{"amount": format_minor(t, "USD"), "line_id": str(k + 1), "name": sku,
                   "notice_hours": "71.99", "percent": "100",
                   "policy_id": "standard-48h" if k == 0 else "default",
                   "reason": "48h+ notice tier", "refund": format_minor(t, "USD"), "sku": sku,
                   "start": cancelled, "tax": "0.00", "tax_refund": "0.00"}
                  for k, (sku, t) in enumerate(lines)],
        "net_paid": format_minor(total, "USD"), "order_total": format_minor(total, "USD"),
        "paid": format_minor(total, "USD"), "policy_digest": "71361d6ee6ab",
        "policy_ids": ["standard-48h", "default"][: len(lines)],
        "reasons": ["within the auto-approve limit 200.00"], "retained": "10.00",
        "risk_flags": [], "total_refund": format_minor(refund, "USD"), "version": version,
        "waiver": None}


def seed(path: Path, n_cases: int, days: int, seed_value: int = 7) -> dict[str, Any]:
    """A store at schema version 8 holding `n_cases` cases and everything around them."""
    rng = random.Random(seed_value)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT "
                "NULL, applied_at TEXT NOT NULL)")
    for version, name, sql in store_db._migrations():
        if version > 8:
            continue
        for statement in store_db._statements(sql):
            con.execute(statement)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (version, name, iso(datetime.now(UTC))))
    now = datetime.now(UTC)
    begin = now - timedelta(days=days)
    step = (now - begin) / max(n_cases, 1)
    chain = Chain()
    case_rows, quote_rows, decision_rows, execution_rows = [], [], [], []
    event_rows, payment_rows, outbox_rows, message_rows = [], [], [], []
    writeback_rows, issue_rows = [], []
    sample: dict[str, Any] = {}
    event_id = 0
    for i in range(1, n_cases + 1):
        at = begin + step * i
        t0, t1, t2, t3 = (iso(at + timedelta(milliseconds=ms)) for ms in (0, 40, 120, 400))
        code, booking_id = f"BK{i:07d}", str(100_000 + i)
        pi = f"pi_{hexid(rng)}"
        main_sku = SKUS[i % len(SKUS)]
        lines = [(main_sku, 5_000 + rng.randrange(0, 20_000))]
        if i % 3 == 0:
            lines.append(("lunch", 2_000))
        paid = sum(t for _, t in lines)
        refund = paid - 1_000
        roll = rng.random()
        status, decision = (("pending_approval", None) if roll < 0.02 else
                            ("denied", "deny") if roll < 0.05 else
                            ("skipped", "skip") if roll < 0.06 else
                            ("failed", "auto_approve") if roll < 0.065 else
                            ("refunded", "approve") if roll < 0.25 else
                            ("refunded", "auto_approve"))
        version = hexid(rng, 12)
        customer = hexid(rng) if i % 1000 else "repeat-customer-hash-01"
        created = int(at.timestamp()) - 86_400 * 10
        snap = booking_dict(code, booking_id, lines, paid, pi, created, created + 86_400 * 13)
        q = quote_dict(code, booking_id, lines, refund, pi, t0, version, decision or "escalate")
        snap_text, q_text = dumps(snap), dumps(q)   # each written once, then embedded as text
        case_rows.append((i, booking_id, code, code, status, "USD", t0, "checkfront_webhook",
                          version, refund, refund if decision in ("approve", "auto_approve")
                          else None, "seeded", customer, t0, t3, 3))
        event_id += 1
        event_rows.append((event_id, "checkfront", f"sha256:{hexid(rng, 64)}", "booking", t0,
                           '{"@attributes":{"host":"x.checkfront.test"},' + snap_text[1:], t3,
                           f"case {i} {status}"))
        chain.add(t0, "checkfront", "webhook.received", None,
                  {"event_id": event_rows[-1][2], "kind": "booking", "row": event_id})
        payment_rows.append((code, pi, "PAID", dumps(snap["transactions"][0]), t0))
        if i % 10 == 0:   # re-quoted: an earlier quote kept beside the current one
            quote_rows.append((i, hexid(rng, 12), t0, snap_text,
                               dumps({**q, "version": "old", "order_total": "1.00"})))
        quote_rows.append((i, version, t0, snap_text, q_text))
        chain.add(t0, "checkfront_webhook", "case.opened", i,
                  f'{{"booking":"{code}","cancelled_at":"{t0}","snapshot":{snap_text}}}')
        chain.add(t0, "policy", "quote.made", i,
                  f'{{"policy_digest":"71361d6ee6ab","quote":{q_text}}}')
        if decision is not None:
            if i % 9 == 0:   # an earlier decision on the case
                decision_rows.append((i, "deny", None, "first look", "joe", version, t0))
            decision_rows.append((i, decision, refund if decision != "deny" else None,
                                  "seeded", "policy" if decision == "auto_approve" else "maria",
                                  version, t1))
            chain.add(t1, "policy", f"case.{status}", i, {"from": "quoted", "to": status})
        if status in ("refunded", "failed"):
            attempts = 2 if i % 20 == 0 else 1
            for attempt in range(1, attempts + 1):
                ok = attempt == attempts and status == "refunded"
                refund_id = f"re_{hexid(rng)}"
                key = f"refund-bot:case-{i}:{pi}:plan-{attempt}"
                execution_rows.append((i, pi, refund, "USD", attempt, key,
                                       "succeeded" if ok else "failed", refund_id,
                                       None if ok else "expired_or_canceled_card", t1, t1, t2))
                chain.add(t1, "worker", "execution.planned", i, {"idempotency_key": key})
                chain.add(t2, "stripe", "stripe.refund", i, {"refund_id": refund_id})
                event_id += 1
                event_rows.append((event_id, "stripe", f"evt_{hexid(rng)}", "refund.created", t2,
                                   dumps({"data": {"object": {"id": refund_id, "amount": refund,
                                                              "payment_intent": pi}}}), t3,
                                   f"case {i} {status}"))
                chain.add(t2, "stripe", "webhook.received", None,
                          {"event_id": event_rows[-1][2], "kind": "refund.created",
                           "row": event_id})
            chain.add(t3, "checkfront", "checkfront.written", i, {"note": f"Case {i}."})
        kind = "card" if status == "pending_approval" or decision == "approve" else "compact"
        outbox_rows.append(("C0APPROVE", kind, i, "{}", t1, t1, t3))
        if status == "refunded" and kind == "card":
            outbox_rows.append(("C0APPROVE", "thread", i, dumps({"status": "refunded"}), t3, t3,
                                t3))
        message_rows.append((i, "C0APPROVE", f"{1_700_000_000 + i}.000100", kind, t3))
        if i % 200 == 0:
            writeback_rows.append((i, "policy", 0, 3, "Checkfront unavailable", t3,
                                   None if i % 400 == 0 else t3, t3, t3))
        if i % 250 == 0:
            issue_rows.append(("dispute", f"dp_{hexid(rng)}", f"evt_{hexid(rng)}", pi,
                               f"ch_{hexid(rng)}", code, booking_id, i, paid, "USD", "fraudulent",
                               dumps({"charge_refundable": False}), "open", "needs_response",
                               t3, t3))
        if i == n_cases // 2:
            sample = {"code": code, "booking_id": booking_id, "case_id": i, "pi": pi,
                      "customer": customer, "refund_id": None, "snapshot": snap,
                      "event": event_id}
    sample["refund_id"] = next((r[7] for r in execution_rows if r[0] >= n_cases // 2), None)
    # a backlog: events queued, waiting for a retry and failed; posts not sent
    for k in range(60):
        event_id += 1
        row = [event_id, "checkfront", f"sha256:backlog-{k}", "booking", iso(now), "{}", None,
               None]
        event_rows.append(tuple(row))
    for k in range(30):
        outbox_rows.append(("C0APPROVE", "alert", None, dumps({"text": f"alert {k}"}), iso(now),
                            iso(now), None))

    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO cases (id, booking_id, booking_code, booking_key, status, currency, "
        "cancelled_at, source, quote_version, refund_amount, approved_amount, status_reason, "
        "customer_hash, created_at, updated_at, revision) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", case_rows)
    con.executemany("INSERT INTO quotes (case_id, version, created_at, snapshot, quote) "
                    "VALUES (?, ?, ?, ?, ?)", quote_rows)
    con.executemany("INSERT INTO decisions (case_id, decision, amount, reason, decided_by, "
                    "quote_version, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?)", decision_rows)
    con.executemany(
        "INSERT INTO executions (case_id, payment_ref, amount, currency, attempt, "
        "idempotency_key, status, stripe_refund_id, failure_reason, called_at, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", execution_rows)
    con.executemany("INSERT INTO webhook_events (id, source, event_id, kind, received_at, "
                    "payload, processed_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    event_rows)
    con.execute("UPDATE webhook_events SET next_at = ?, attempts = 1, retrying_since = ? "
                "WHERE event_id GLOB 'sha256:backlog-[0-1]*'", (iso(now), iso(now)))
    con.execute("UPDATE webhook_events SET failed_at = ?, attempts = 1 "
                "WHERE event_id GLOB 'sha256:backlog-2*'", (iso(now),))
    con.executemany("INSERT OR IGNORE INTO booking_payments (booking_code, transaction_id, "
                    "status, payload, received_at) VALUES (?, ?, ?, ?, ?)", payment_rows)
    con.executemany("INSERT INTO slack_outbox (channel, kind, case_id, payload, created_at, "
                    "next_at, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?)", outbox_rows)
    con.executemany("INSERT INTO slack_messages (case_id, channel, ts, kind, posted_at) "
                    "VALUES (?, ?, ?, ?, ?)", message_rows)
    con.executemany("INSERT INTO checkfront_writebacks (case_id, actor, manual, attempts, "
                    "last_error, next_at, done_at, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", writeback_rows)
    con.executemany(
        "INSERT INTO payment_issues (kind, stripe_id, event_id, payment_intent, charge, "
        "booking_code, booking_id, case_id, amount, currency, reason, detail, state, "
        "stripe_status, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", issue_rows)
    con.executemany("INSERT INTO audit_log (at, actor, action, case_id, detail, prev_hash, "
                    "hash) VALUES (?, ?, ?, ?, ?, ?, ?)", chain.rows)
    con.execute("COMMIT")
    con.close()
    sample["audit_rows"] = len(chain.rows)
    sample["executions"] = len(execution_rows)
    return sample


async def per_call_us(fn: Callable[[], Awaitable[Any]], calls: int) -> float:
    """Microseconds per call: the 25th percentile of `calls` sequential calls, each timed on
    its own (the work is the same each time; what lies above it is the machine's noise)."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.quantiles(times, n=4)[0]


def verify_floor(path: Path) -> float:
    """The audit chain's hashing over the same rows with plain sqlite3: seconds."""
    started = time.perf_counter()
    con = sqlite3.connect(path)
    prev = GENESIS
    for at, actor, action, case_id, detail, prev_hash, digest in con.execute(
            "SELECT at, actor, action, case_id, detail, prev_hash, hash FROM audit_log "
            "ORDER BY id"):
        material = json.dumps([prev, at, actor, action, case_id, detail], sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False)
        if prev_hash != prev or hashlib.sha256(material.encode()).hexdigest() != digest:
            raise SystemExit("the seeded chain is broken")
        prev = digest
    con.close()
    return time.perf_counter() - started


async def writes_p99(store: Store, count: int, during: Awaitable[Any] | None) -> float:
    """p99 milliseconds of `count` audit rows, each in its own transaction, while `during`
    runs (a report on the read-only connection)."""
    task = asyncio.ensure_future(during) if during is not None else None
    await asyncio.sleep(0)
    times = []
    for k in range(count):
        started = time.perf_counter()
        await audit.record(store, actor="bench", action="bench.write", detail={"n": k})
        times.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0)
    if task is not None:
        await task
    return statistics.quantiles(times, n=100)[98]


class Seeded:
    """One seeded store, opened by the bot's `Store` (migration 009 runs then), and what it
    measured."""

    def __init__(self, n_cases: int, days: int, folder: Path) -> None:
        self.n_cases, self.days = n_cases, days
        self.path = folder / f"scale-{n_cases}.db"
        self.out: dict[str, Any] = {"cases": n_cases}
        self.store: Store | None = None
        self.sample: dict[str, Any] = {}

    async def open(self) -> Store:
        started = time.perf_counter()
        self.sample = seed(self.path, self.n_cases, self.days)
        self.out["seed_s"] = time.perf_counter() - started
        self.out["audit_rows"] = self.sample["audit_rows"]
        started = time.perf_counter()
        self.store = await Store(self.path).open()
        self.out["migrate_s"] = time.perf_counter() - started
        return self.store

    def reads(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        store, sample = self.store, self.sample
        assert store is not None
        code, bid, case_id, pi = sample["code"], sample["booking_id"], sample["case_id"], \
            sample["pi"]
        snapshot = parse_snapshot(sample["snapshot"])
        main_sku = max(snapshot.lines, key=lambda line: line.total).sku
        cancelled_at = datetime.now(UTC)
        since = iso_utc(cancelled_at - timedelta(days=30))
        return {
            "case by id (floor)": lambda: store.fetch_one(
                "SELECT * FROM cases WHERE id = ?", (case_id,)),
            "open case of booking": lambda: cases.find_open(store, code),
            "latest case of booking": lambda: cases.latest_for_booking(store, code),
            "latest decision": lambda: cases.last_decision(store, case_id),
            "current quote": lambda: store.fetch_one(
                "SELECT quote FROM quotes q JOIN cases c ON c.id = q.case_id "
                "AND q.version = c.quote_version WHERE c.id = ?", (case_id,)),
            "event state": lambda: events.state_of(store, sample["event"]),
            "payments of booking": lambda: snapshots.stored_payments(store, code),
            "refunds of booking": lambda: ledger.settled_for_booking(store, code),
            "executions of booking": lambda: ledger.for_booking(store.db, [code, bid], [pi]),
            "execution by refund id": lambda: ledger.by_refund_id(store, sample["refund_id"]),
            "post queued before": lambda: outbox.seen(store, "thread", case_id,
                                                      {"status": "refunded"}),
            "unsent posts of case": lambda: outbox.unsent_for_case(store, "card", case_id),
            "disputes on payment": lambda: holds_on(store, [pi]),
            "risk: repeat refunder": lambda: cases.refunded_for_customer(
                store, sample["customer"], other_than_booking=bid, since=since),
            "risk: recent order totals": lambda: cases.recent_order_totals(
                store, currency="USD", other_than_booking=bid, sku=main_sku,
                limit=risk.VALUE_LOOKBACK),
            "risk: assess a new case": lambda: risk.assess(store, snapshot, cancelled_at,
                                                           sample["customer"]),
        }

    async def report(self) -> None:
        assert self.store is not None
        today = datetime.now(UTC).date()
        times, rows = [], 0
        for _ in range(3):
            t = time.perf_counter()
            found = await range_report(self.store, today - timedelta(days=29), today, TZ)
            times.append(time.perf_counter() - t)
            rows = len(found.rows)
        self.out["report_s"], self.out["report_rows"] = statistics.median(times), rows

    async def healthz(self, calls: int) -> None:
        assert self.store is not None
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            counts = await backlog(self.store)
            times.append((time.perf_counter() - t) * 1000)
        self.out["healthz_median_ms"] = statistics.median(times)
        self.out["healthz_p99_ms"] = statistics.quantiles(times, n=100)[98]
        self.out["healthz_counts"] = counts

    async def writes(self) -> None:
        assert self.store is not None
        today = datetime.now(UTC).date()
        self.out["write_p99_alone_ms"] = await writes_p99(self.store, 300, None)
        self.out["write_p99_report_ms"] = await writes_p99(
            self.store, 300, range_report(self.store, today - timedelta(days=29), today, TZ))

    async def verify(self) -> None:
        assert self.store is not None
        t = time.perf_counter()
        verified = await audit.verify(self.store)
        self.out["verify_s"] = time.perf_counter() - t
        assert verified.ok, verified
        self.out["verify_rows"] = verified.rows
        self.out["verify_floor_s"] = verify_floor(self.path)


async def measure(sizes: list[int], days: int, calls: int,
                  folder: Path) -> list[dict[str, Any]]:
    stores = [Seeded(n, days, folder) for n in sizes]
    for seeded in stores:
        await seeded.open()
    try:
        for seeded in stores:   # warm both connections up before anything is timed
            for fn in seeded.reads().values():
                await fn()
        for seeded in stores:
            await seeded.report()
            await seeded.healthz(calls)
        # per-request reads alternate between the stores, three rounds, the best kept
        found: list[dict[str, list[float]]] = [{} for _ in stores]
        for _ in range(3):
            for k, seeded in enumerate(stores):
                for name, fn in seeded.reads().items():
                    found[k].setdefault(name, []).append(await per_call_us(fn, 200))
        for k, seeded in enumerate(stores):
            seeded.out["reads_us"] = {name: min(v) for name, v in found[k].items()}
        for seeded in stores:
            await seeded.writes()
            await seeded.verify()
    finally:
        for seeded in stores:
            if seeded.store is not None:
                await seeded.store.close()
    return [seeded.out for seeded in stores]


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def show(small: dict[str, Any], big: dict[str, Any]) -> None:
    print(f"\nseeded {small['cases']:,} cases in {small['seed_s']:.1f} s (migration 009 "
          f"{small['migrate_s']:.2f} s); {big['cases']:,} in {big['seed_s']:.1f} s "
          f"(migration 009 {big['migrate_s']:.1f} s); {big['audit_rows']:,} audit rows")
    print(f"healthz backlog at {big['cases']:,}: {big['healthz_counts']}")
    print(f"\n{'per-request read (us/call)':32} {small['cases']:>10,} {big['cases']:>10,}"
          f" {'growth':>7} {'x floor':>8}")  # growth: x floor at N / x floor at small
    floor_small = small["reads_us"]["case by id (floor)"]
    floor_big = big["reads_us"]["case by id (floor)"]
    worst = 0.0
    for name, us_big in big["reads_us"].items():
        us_small = small["reads_us"][name]
        # measured against the floor of its own store in the same run: the machine's noise
        # moves both alike, what is left is what the store's size adds
        growth = (us_big / floor_big) / (us_small / floor_small)
        worst = max(worst, growth)
        print(f"{name:32} {us_small:>10.0f} {us_big:>10.0f} {growth:>7.2f} "
              f"{us_big / floor_big:>8.1f}")
    print(f"\n{'':44} {small['cases']:>10,} {big['cases']:>10,}")
    print(f"{'report 30 days, rows':44} {small['report_rows']:>10,} {big['report_rows']:>10,}")
    print(f"{'audit.verify rows/s':44} {small['verify_rows'] / small['verify_s']:>10,.0f} "
          f"{big['verify_rows'] / big['verify_s']:>10,.0f}")
    print(f"{'write p99 alone / during a report (ms)':44} "
          f"{small['write_p99_alone_ms']:>4.1f}/{small['write_p99_report_ms']:<5.1f} "
          f"{big['write_p99_alone_ms']:>4.1f}/{big['write_p99_report_ms']:<5.1f}")
    n = f"{big['cases'] // 1000}k" if big["cases"] >= 1000 else str(big["cases"])
    print()
    for size, got in ((f"{small['cases'] // 1000}k", small), (n, big)):
        print(f"report 30 days at {size}: bot {got['report_s'] * 1000:,.0f} ms "
              f"({got['report_rows']:,} rows)  target < {REPORT_TARGET_S * 1000:,.0f} ms  "
              f"{verdict(got['report_s'] < REPORT_TARGET_S)}")
        print(f"healthz backlog at {size}: bot median {got['healthz_median_ms']:.2f} ms  "
              f"p99 {got['healthz_p99_ms']:.2f} ms  target < {HEALTHZ_TARGET_MS:.0f} ms  "
              f"{verdict(got['healthz_p99_ms'] < HEALTHZ_TARGET_MS)}")
        print(f"audit.verify at {size}: bot {got['verify_s']:.2f} s  floor "
              f"{got['verify_floor_s']:.2f} s  ratio {got['verify_s'] / got['verify_floor_s']:.2f}"
              f"  ({got['verify_rows']:,} rows)")
    slowest = max(v for k, v in big["reads_us"].items() if "risk" not in k)
    print(f"per-request reads at {n}: slowest look-up {slowest:.0f} us  "
          f"floor {floor_big:.0f} us  ratio {slowest / floor_big:.1f} "
          f"(at {small['cases']:,}: floor {floor_small:.0f} us)")
    print(f"per-request reads, growth {small['cases']:,} -> {big['cases']:,}: worst "
          f"{worst:.2f}x  target <= {GROWTH_TARGET:.1f}x  {verdict(worst <= GROWTH_TARGET)}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        small, big = await measure([args.small, args.cases], args.days, args.calls,
                                   Path(folder))
    show(small, big)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
