"""One booking, one identity: the open-case rule keys on the booking as Checkfront's API returns
it, and the database says so; existing cases get their key when the store migrates."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from bot.cli.world import World
from services.refunds import cases
from services.refunds.models import Status
from services.store import db as store_db
from services.store.db import Store
from tests.money_helpers import BIG, all_cases, cancelled, deliver


async def test_the_same_booking_with_and_without_its_id_opens_one_case(world: World) -> None:
    world.paid_booking("ID-1", BIG)
    cancelled(world, "ID-1")
    without_id = world.checkfront.webhook_body("ID-1")
    del without_id["booking"]["@attributes"]       # the id falls back to the code
    with_id = world.checkfront.webhook_body("ID-1")

    first = await deliver(world, without_id)
    await world.settle()
    second = await deliver(world, with_id)
    await world.settle()

    assert first.status_code == second.status_code == 200
    [case] = await all_cases(world)
    assert case.status == Status.PENDING_APPROVAL
    # the case carries the booking as Checkfront's API returns it, whatever the body said
    assert case.booking_id == str(world.checkfront.booking("ID-1").booking_id)
    assert case.booking_code == "ID-1"
    outcomes = [r["outcome"] for r in await world.bot.svc.store.fetch_all(
        "SELECT outcome FROM webhook_events WHERE source = 'checkfront' ORDER BY id")]
    assert outcomes[-1] == f"case {case.id} already open"


async def test_the_database_refuses_a_second_open_case_for_one_booking(world: World) -> None:
    world.paid_booking("ID-2", BIG)
    await world.cancel("ID-2")
    await world.settle()
    [case] = await all_cases(world)
    quote = (await cases.current_quote(world.bot.svc.store, case)).quote

    with pytest.raises(aiosqlite.IntegrityError):
        async with world.bot.svc.store.transaction() as tx:
            # the same booking under the other spelling the webhook body can give
            await cases.insert(tx, booking_id="id-2", booking_code="id-2", currency="USD",
                               quote=quote, source="cli", requested_by=None,
                               customer_hash=None, snapshot={})
    assert len(await all_cases(world)) == 1



async def test_the_migration_keys_existing_cases_and_leaves_a_duplicate_unkeyed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT "
                "NULL, applied_at TEXT NOT NULL)")
    for version, name, sql in store_db._migrations():
        if version > 5:
            continue
        for statement in store_db._statements(sql):
            con.execute(statement)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, 'then')", (version, name))
    for booking_id, status in (("OLD-1", "pending_approval"), ("17", "pending_approval"),
                               ("18", "refunded"), ("18", "pending_approval")):
        code = "OLD-1" if booking_id in ("OLD-1", "17") else "old-2"
        con.execute("INSERT INTO cases (booking_id, booking_code, status, currency, "
                    "cancelled_at, source, created_at, updated_at) VALUES (?, ?, ?, 'USD', "
                    "'then', 'checkfront_webhook', 'then', 'then')", (booking_id, code, status))
    con.commit()
    con.close()

    store = await Store(path).open()
    try:
        rows = await store.fetch_all("SELECT id, booking_key FROM cases ORDER BY id")
        assert [(r["id"], r["booking_key"]) for r in rows] == [
            (1, "OLD-1"), (2, None), (3, "OLD-2"), (4, "OLD-2")]
        assert await store.schema_version() >= 6
        with pytest.raises(aiosqlite.IntegrityError):
            async with store.transaction() as tx:
                await tx.execute("UPDATE cases SET booking_key = 'OLD-1' WHERE id = 2")
    finally:
        await store.close()


async def test_a_case_opened_under_the_code_before_is_found_by_the_next_delivery(
    world: World,
) -> None:
    world.paid_booking("ID-3", BIG)
    cancelled(world, "ID-3")
    without_id = world.checkfront.webhook_body("ID-3")
    del without_id["booking"]["@attributes"]
    await deliver(world, without_id)
    await world.settle()
    [case] = await all_cases(world)
    # as the old rule stored it: the id fell back to the code
    async with world.bot.svc.store.transaction() as tx:
        await tx.execute("UPDATE cases SET booking_id = booking_code WHERE id = ?", (case.id,))

    answer = await deliver(world, world.checkfront.webhook_body("ID-3"))
    await world.settle()

    assert answer.status_code == 200
    assert [c.id for c in await all_cases(world)] == [case.id]
    outcome = await world.bot.svc.store.fetch_one(
        "SELECT outcome FROM webhook_events WHERE source = 'checkfront' ORDER BY id DESC")
    assert outcome is not None and outcome["outcome"] == f"case {case.id} already open"
