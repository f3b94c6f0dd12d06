"""`python -m bot backup`: an online copy of the store, taken while a writer holds it, checked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.cli.world import Item, World
from services.store.backup import BackupError, copy_database
from tests.test_cli_ops import run


def _cases(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT booking_code, status FROM cases ORDER BY id").fetchall()


async def test_backup_copies_committed_state_while_a_writer_holds_the_store(
        world: World, tmp_path: Path) -> None:
    world.paid_booking("BAK-1", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await world.cancel("BAK-1")
    await world.settle()
    source = Path(world.bot.settings.database_path)
    before = _cases(source)
    assert [code for code, _ in before] == ["BAK-1"]

    writer = sqlite3.connect(source, isolation_level=None, timeout=5)
    writer.execute("BEGIN IMMEDIATE")   # a transaction in flight: the copy must not wait for it
    writer.execute("UPDATE cases SET status = 'uncommitted'")
    try:
        code, out, err = await run(world, "backup", str(tmp_path / "copies" / "one.db"))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert code == 0, err
    assert "audit chain intact" in out and "schema " in out
    assert _cases(tmp_path / "copies" / "one.db") == before   # committed state only
    assert not list((tmp_path / "copies").glob(".*partial"))


async def test_backup_refuses_an_existing_file_and_reports_a_broken_chain(
        world: World, tmp_path: Path) -> None:
    world.paid_booking("BAK-2", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await world.cancel("BAK-2")
    await world.settle()
    existing = tmp_path / "kept.db"
    existing.write_bytes(b"an older backup")
    code, _, err = await run(world, "backup", str(existing))
    assert code == 2 and "exists" in err and "--force" in err
    assert existing.read_bytes() == b"an older backup"

    with sqlite3.connect(world.bot.settings.database_path) as conn:   # around the triggers
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("UPDATE audit_log SET actor = 'someone else' WHERE id = 2")
    code, out, _ = await run(world, "backup", "--force", str(existing))
    assert code == 1 and "BROKEN at row 2" in out
    assert _cases(existing)[0][0] == "BAK-2"   # the copy is still made: it is evidence


def test_copy_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no database"):
        copy_database(tmp_path / "missing.db", tmp_path / "copy.db")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(BackupError, match="not a refund-bot store"):
        copy_database(other, tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()
    with pytest.raises(BackupError, match="cannot replace the database itself"):
        copy_database(other, other, replace=True)
