"""The store's one interface on both engines (SQLite, and PostgreSQL when the tests have one):
transactions, the store's IntegrityError, the audit chain and its append-only trigger, the
intake writer, the migration files of each dialect, and `store copy` both ways."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from services.intake import events
from services.store import audit
from services.store.copy import CopyError, copy_store, tables
from services.store.db import migrations, open_store, set_state
from services.store.errors import IntegrityError
from services.store.postgres import translate

pytestmark = pytest.mark.both_backends


def test_placeholders_are_numbered_outside_quoted_text() -> None:
    assert translate("SELECT ? , '?' , \"a?\" FROM t WHERE x = ? -- ?\n") == \
        "SELECT $1 , '?' , \"a?\" FROM t WHERE x = $2 -- ?\n"
    assert translate("WHERE substr(k, 1, length(?1)) = ?1 AND y >= ?2") == \
        "WHERE substr(k, 1, length($1)) = $1 AND y >= $2"


def test_each_dialect_reads_its_own_file_else_the_shared_one() -> None:
    for dialect in ("sqlite", "postgresql"):
        found = migrations(dialect)
        versions = [v for v, _, _ in found]
        assert versions == sorted(set(versions)) and versions[0] == 1
        first = found[0][2]
        assert ("plpgsql" in first) == (dialect == "postgresql")
        assert all(not name.endswith((".sqlite.sql", ".postgresql.sql")) for _, name, _ in found)


async def test_a_transaction_commits_or_rolls_back_whole(store_url: str) -> None:
    async with open_store(store_url) as store:
        async with store.transaction() as tx:
            await set_state(tx, "a", 1)
            await audit.append(tx, actor="test", action="first")
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await set_state(tx, "a", 2)
                await audit.append(tx, actor="test", action="second")
                raise RuntimeError("no")
        assert await store.get_state("a") == 1
        chain = await audit.verify(store)
        assert chain.ok and chain.rows == 1


async def test_a_unique_key_refused_raises_the_stores_integrity_error(store_url: str) -> None:
    async with open_store(store_url) as store:
        row = ("stripe", "evt_1", "refund", "2026-01-01T00:00:00.000000+00:00", "{}")
        sql = ("INSERT INTO webhook_events (source, event_id, kind, received_at, payload) "
               "VALUES (?, ?, ?, ?, ?)")
        async with store.transaction() as tx:
            await tx.execute(sql, row)
        with pytest.raises(IntegrityError):
            async with store.transaction() as tx:
                await tx.execute(sql, row)
        assert len(await store.read_all("SELECT id FROM webhook_events")) == 1


async def test_audit_rows_refuse_update_and_delete(store_url: str) -> None:
    async with open_store(store_url) as store:
        await audit.record(store, actor="test", action="kept")
        for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(Exception, match="append-only"):
                async with store.transaction() as tx:
                    await tx.execute(statement)
        assert (await audit.verify(store)).rows == 1


async def test_the_intake_writer_stores_each_event_once_with_its_audit_row(
        store_url: str) -> None:
    async with open_store(store_url) as store:
        stored = [await events.store_event(store, source="stripe", event_id=f"evt_{n % 3}",
                                           kind="refund", payload={"n": n}) for n in range(6)]
        assert [s is not None for s in stored] == [True] * 3 + [False] * 3
        async with store.transaction() as tx:   # a store transaction extends the same chain
            await audit.append(tx, actor="test", action="after")
        chain = await audit.verify(store)
        assert chain.ok and chain.rows == 4
        assert len(await store.read_all("SELECT id FROM webhook_events")) == 3


async def test_webhooks_arriving_together_are_stored_once_each_on_one_linear_chain(
        store_url: str) -> None:
    """Eighty webhooks in one turn (forty ids, each twice: duplicates inside one batch), a
    store transaction appending to the chain among them: each id stored once with its audit
    row, the chain linear."""
    async with open_store(store_url) as store:
        async def between() -> None:
            async with store.transaction() as tx:
                await audit.append(tx, actor="test", action="between")

        def webhook(n: int) -> Any:
            return events.store_event(store, source="checkfront", event_id=f"c{n % 40}",
                                      kind="booking", payload={"n": n})

        answers = await asyncio.gather(*(webhook(n) for n in range(50)), between(),
                                       *(webhook(n) for n in range(50, 80)))
        stored = [a for a in answers if a is not None]
        assert sorted(s.event_id for s in stored) == sorted(f"c{n}" for n in range(40))
        chain = await audit.verify(store)
        assert chain.ok and chain.rows == 41, chain
        assert len(await store.read_all("SELECT id FROM webhook_events")) == 40


async def test_native_and_threaded_units_in_one_turn_keep_the_chain_linear(
        store_url: str, store_backend: str) -> None:
    """The PostgreSQL intake writer takes native units (awaited on the loop) and the SQLite
    writer's threaded ones; each kind keeps the chain's end for its transaction, so units of
    both queued in one turn are written in batches of one kind, in order, and the chain
    stays linear."""
    if store_backend != "postgresql":
        pytest.skip("the PostgreSQL intake writer's own")
    async with open_store(store_url) as store:
        writer = store.writer
        assert writer is not None and writer.native

        def params(n: int) -> tuple[Any, ...]:
            return ("stripe", f"evt_{n}", "refund", "2026-01-01T00:00:00.000000+00:00",
                    "{}", "test", None)

        ids = await asyncio.gather(
            writer.run(partial(events._insert_event, params(1))),
            writer.run_native(partial(events._insert_event_native, params(2))),
            writer.run(partial(events._insert_event, params(3))),
            writer.run_native(partial(events._insert_event_native, params(4))),
            writer.run(partial(events._insert_event, params(1))))   # a duplicate: None
        assert [i is not None for i in ids] == [True, True, True, True, False]
        assert writer.batches == 5   # one a run of one kind
        chain = await audit.verify(store)
        assert chain.ok and chain.rows == 4, chain


async def test_a_lock_on_a_name_is_taken_inside_a_transaction(store_url: str) -> None:
    async with open_store(store_url) as store:
        async with store.transaction() as tx:
            await tx.lock("booking:ABC")
            await set_state(tx, "locked", True)
        assert await store.get_state("locked") is True
        assert store.dialect in ("sqlite", "postgresql")


async def _filled(url: str) -> None:
    async with open_store(url) as store:
        for n in range(5):
            await events.store_event(store, source="checkfront", event_id=f"e{n}",
                                     kind="booking", payload={"booking": {"code": f"B{n}"}})
        async with store.transaction() as tx:
            await set_state(tx, "digest", {"day": "2026-01-02"})
            await audit.append(tx, actor="test", action="filled", detail={"note": "é ✓"})


async def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    async with open_store(url) as store:
        found = {}
        for table in await tables(store):
            rows = await store.read_all(f'SELECT * FROM "{table}"')
            found[table] = sorted(tuple(r) for r in rows)
        return found


async def test_store_copy_round_trips_sqlite_to_postgresql_and_back(
        tmp_path: Path, pg: Any) -> None:
    first = f"sqlite:///{tmp_path / 'first.db'}"
    back = f"sqlite:///{tmp_path / 'back.db'}"
    middle = pg.empty()
    try:
        await _filled(first)
        for source_url, target_url in ((first, middle), (middle, back)):
            async with open_store(source_url) as source, open_store(target_url) as target:
                result = await copy_store(source, target)
                assert result.audit_rows == 6 and result.tables["webhook_events"] == 5
        assert await _dump(first) == await _dump(back) == await _dump(middle)
        async with open_store(middle) as store:   # the ids go on after the copied ones
            stored = await events.store_event(store, source="stripe", event_id="new",
                                              kind="refund", payload={})
            assert stored is not None and stored.row_id == 6
            assert (await audit.verify(store)).rows == 7
    finally:
        pg.drop(middle)


async def test_store_copy_refuses_a_target_with_rows(tmp_path: Path, store_url: str) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    await _filled(source_url)
    async with open_store(store_url) as target:
        await audit.record(target, actor="test", action="already here")
    async with open_store(source_url) as source, open_store(store_url) as target:
        with pytest.raises(CopyError, match="not empty"):
            await copy_store(source, target)


def test_the_sqlite_store_refuses_a_postgresql_url_it_would_take_for_a_file_name() -> None:
    """`Store` is SQLite's; handed a PostgreSQL URL it once made a folder named
    "postgresql:" and an empty SQLite file in it, and read that. `open_store` picks the
    engine."""
    from services.store.db import Store
    for url in ("postgresql://u@127.0.0.1:5432/refunds", "postgres://u@h/db"):
        with pytest.raises(ValueError, match="open_store"):
            Store(url)


async def test_postgresql_waits_for_the_flush_only_where_sqlite_syncs(
        store_url: str, store_backend: str) -> None:
    """As on SQLite (a commit synced only for `durable=True`: a webhook, a person's decision,
    the mark before a Stripe call), a PostgreSQL transaction waits for its WAL flush only when
    durable; the others commit at `synchronous_commit=off` (a server crash may lose the last
    fraction of a second of them, never tear one; a bot killed loses none). The intake writer
    always waits."""
    if store_backend != "postgresql":
        pytest.skip("PostgreSQL's setting")
    import asyncpg
    admin = await asyncpg.connect(store_url)   # the server's default, as in production (the
    try:                                       # tests' cluster runs with it off)
        await admin.execute(f'ALTER DATABASE "{store_url.rsplit("/", 1)[-1]}" '
                            "SET synchronous_commit = on")
    finally:
        await admin.close()
    async with open_store(store_url) as store:
        async with store.transaction() as tx:
            assert (await tx.execute_fetchall("SHOW synchronous_commit", ()))[0][0] == "off"
        async with store.transaction(durable=True) as tx:
            assert (await tx.execute_fetchall("SHOW synchronous_commit", ()))[0][0] == "on"
        async with store.transaction() as tx:   # SET LOCAL: one transaction's only
            await tx.execute("SELECT 1")
        assert (await store.read_one("SHOW synchronous_commit"))[0] == "on"
