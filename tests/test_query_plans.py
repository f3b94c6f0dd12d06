"""Every query a request runs is an index look-up: the statements the bot really runs for
webhooks (Checkfront's and Stripe's, a redelivery among them), a Slack approval click, a case's
execution and the health check are recorded as they run, then each one's `EXPLAIN QUERY PLAN`
is read on the migrated store. A full pass over a table (`SCAN t`, with or without an index
to walk it in order) fails the test, unless the statement can read only a bounded number of
rows (no WHERE, a LIMIT, no sort: the last audit row, say).

SQLite plans without statistics (no ANALYZE is run) the same way on a small store as on a big
one, so a plan read here is the plan at 100k cases.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from zoneinfo import ZoneInfo

import httpx

from bot.cli.world import APPROVALS, MARIA, Item, World
from bot.slack.ui import ids
from services.finance.report import range_report
from services.health import backlog
from services.intake import events
from services.refunds import cases
from services.refunds.models import Status
from services.store.db import Store, utcnow
from tests.slack_helpers import buttons

_INDEX = re.compile(r" USING (?:COVERING )?INDEX (\w+)$")
WRITES_OR_READS = re.compile(r"^\s*(SELECT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)


def full_scans(plan: list[str], sql: str, partial: frozenset[str] = frozenset()) -> list[str]:
    """The plan's steps that read a whole table (or a whole index of it). A walk of a partial
    index (one of `partial`) reads only the rows its WHERE admits (the failed events, say),
    not the table: it passes."""
    found = []
    subqueries = {step.split()[1] for step in plan if step.startswith(("CO-ROUTINE ",
                                                                       "MATERIALIZE "))}
    for step in plan:
        if not step.startswith("SCAN ") or " VIRTUAL TABLE " in step:
            continue  # SEARCH is a look-up; a virtual table is json_each over one value
        if step == "SCAN CONSTANT ROW" or step.split()[1] in subqueries:
            continue  # the rows of a subquery, whose own steps are read like any others
        if _bounded(plan, sql):
            continue
        if (walked := _INDEX.search(step)) and walked.group(1) in partial:
            continue
        found.append(step)
    return found


def _bounded(plan: list[str], sql: str) -> bool:
    """One table, no WHERE, no sort, a LIMIT: the scan stops after LIMIT rows."""
    text = sql.upper()
    return (len([s for s in plan if s.startswith(("SCAN", "SEARCH"))]) == 1
            and " WHERE " not in text and " JOIN " not in text and " LIMIT " in text
            and not any("TEMP B-TREE" in s for s in plan))


async def plans_of(store: Store, statements: list[str]) -> dict[str, list[str]]:
    plans = {}
    for sql in dict.fromkeys(statements):
        if not WRITES_OR_READS.match(sql) or sql.lstrip().upper().startswith("EXPLAIN"):
            continue
        rows = await store.fetch_all("EXPLAIN QUERY PLAN " + sql)
        plans[sql] = [str(r["detail"]) for r in rows]
    return plans


async def partial_indexes(store: Store) -> frozenset[str]:
    """The indexes with a WHERE clause (a partial index holds only the rows it names)."""
    rows = await store.fetch_all(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'")
    return frozenset(str(r["name"]) for r in rows)


def recorder(statements: list[str]) -> Callable[[str], None]:
    return statements.append


async def recording(store: Store, statements: list[str] | None) -> None:
    """Record every statement the store's connections run into `statements` (None: stop)."""
    trace = None if statements is None else recorder(statements)
    await store.db.set_trace_callback(trace)
    reader = getattr(store, "_reader", None)
    if reader is not None:
        await reader.set_trace_callback(trace)


async def test_the_checker_sees_a_full_scan_and_passes_a_look_up(world: World) -> None:
    store = world.bot.svc.store
    plans = await plans_of(store, [
        "SELECT * FROM cases WHERE status_reason = 'x'",           # no index: a full scan
        "SELECT * FROM cases ORDER BY id DESC",                     # every row, in order
        "SELECT * FROM cases WHERE id = 1",                         # primary key
        "SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1",      # the last row only
        "SELECT COUNT(*) FROM audit_log WHERE case_id = 1",         # index
        "SELECT * FROM (SELECT id FROM cases WHERE id > 5 LIMIT 3) AS r ORDER BY r.id",
        "SELECT * FROM (SELECT id FROM cases WHERE status_reason = 'x' LIMIT 3) AS r",
    ])
    verdicts = {sql: bool(full_scans(plan, sql)) for sql, plan in plans.items()}
    assert list(verdicts.values()) == [True, True, False, False, False, False, True], plans


async def test_every_query_of_a_webhook_a_click_an_execution_and_healthz_is_a_look_up(
        sworld: World) -> None:
    store = sworld.bot.svc.store
    statements: list[str] = []
    await recording(store, statements)

    sworld.paid_booking("PLAN-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72),
                                   Item("lunch", "20.00", "1.00", hours_ahead=72)])
    sworld.paid_booking("PLAN-2", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    assert (await sworld.cancel("PLAN-1")).status_code == 200
    assert (await sworld.cancel("PLAN-1")).status_code == 200   # the same notice again
    assert (await sworld.cancel("PLAN-2")).status_code == 200
    await sworld.settle()
    pending = await cases.list_cases(store, Status.PENDING_APPROVAL)
    assert [c.booking_code for c in pending] == ["PLAN-2"]
    assert sworld.slack is not None and sworld.sender is not None
    # PLAN-2's card (the two cancellations are applied at once: PLAN-1's line may come after)
    card = next(m for m in sworld.slack.messages_in(APPROVALS)
                if "PLAN-2" in str(m) and ids.APPROVE in buttons(m))
    click = await sworld.sender.click(ids.APPROVE, buttons(card)[ids.APPROVE]["value"], MARIA,
                                      message_ts=card["ts"])
    assert click.status_code == 200
    await sworld.settle()
    assert len(sworld.stripe.refunds) == 2
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{sworld.bot_url}/healthz")).status_code == 200
    await backlog(store)
    today = utcnow().date()
    assert len((await range_report(store, today, today, ZoneInfo("UTC"))).rows) == 2

    await recording(store, None)
    plans = await plans_of(store, statements)
    assert len(plans) > 40, "the flow ran fewer queries than it should"
    # a SEARCH may still read a whole kind of rows: the disputes on a payment are found by the
    # payment's ids, not among every dispute
    disputes = [plan for sql, plan in plans.items() if "FROM payment_issues" in sql]
    assert disputes and all("MULTI-INDEX OR" in plan for plan in disputes), disputes
    scans = {sql: found for sql, plan in plans.items() if (found := full_scans(plan, sql))}
    assert not scans, "\n\n".join(f"{sql}\n  -> {found}" for sql, found in scans.items())


async def test_the_event_queue_s_lists_and_leases_are_look_ups(sworld: World) -> None:
    """What the worker, its lease loop and the stuck-events view ask of the events table: each
    a look-up of the events not processed yet (or of the failed ones), never a walk of every
    event ever received."""
    store = sworld.bot.svc.store
    statements: list[str] = []
    await recording(store, statements)
    now = utcnow()
    await events.claim_queued(store, now, mine_too=True)
    await events.renew_queued(store, now)
    await events.release_queued(store)
    await events.claim_due(store, now)
    await events.failed(store)
    await events.retrying(store)
    await events.unprocessed(store)
    for count in (events.count_unprocessed, events.count_retrying, events.count_failed):
        await count(store)
    await recording(store, None)
    plans = {sql: plan for sql, plan in (await plans_of(store, statements)).items()
             if "webhook_events" in sql}
    assert len(plans) >= 9, plans
    partial = await partial_indexes(store)
    assert {"webhook_events_open", "webhook_events_failed"} <= partial
    scans = {sql: found for sql, plan in plans.items()
             if (found := full_scans(plan, sql, partial))}
    assert not scans, "\n\n".join(f"{sql}\n  -> {found}" for sql, found in scans.items())


async def test_the_checker_passes_a_walk_of_a_partial_index_only(world: World) -> None:
    store = world.bot.svc.store
    partial = await partial_indexes(store)
    plans = await plans_of(store, [
        # the failed events, oldest first: only the failed ones are in the index walked
        "SELECT * FROM webhook_events WHERE processed_at IS NULL AND failed_at IS NOT NULL "
        "ORDER BY id LIMIT 5",
        # every case, walked in booking-code order: a full index is the whole table
        "SELECT booking_code FROM cases WHERE status_reason IS NULL ORDER BY booking_code",
    ])
    assert [bool(full_scans(plan, sql, partial)) for sql, plan in plans.items()] == [
        False, True], plans
