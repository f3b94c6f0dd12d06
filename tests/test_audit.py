"""The audit chain: append-only in SQLite, tamper-evident when the file is edited anyway."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli.world import Item, World
from services.store import audit
from services.store.db import Store

REPO = Path(__file__).resolve().parent.parent


async def make_chain(path: Path, rows: int = 5) -> None:
    async with Store(path) as store:
        for n in range(rows):
            await audit.record(store, actor="tester", action=f"step.{n}", case_id=None,
                               detail={"n": n, "amount": f"{n}.00"})


def cli(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_PATH": str(db)}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


async def test_an_intact_chain_verifies(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    await make_chain(db)
    async with Store(db) as store:
        result = await audit.verify(store)
    assert (result.ok, result.rows) == (True, 5)
    done = cli("audit", "verify", db=db)
    assert done.returncode == 0 and "intact: 5 rows" in done.stdout


async def test_updates_and_deletes_are_refused_by_the_database(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    await make_chain(db)
    with sqlite3.connect(db) as raw:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM audit_log WHERE id = 2")


async def test_an_edited_row_breaks_the_chain_and_is_named(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    await make_chain(db)
    with sqlite3.connect(db) as raw:  # someone with the file goes around the triggers
        raw.execute("DROP TRIGGER audit_no_update")
        raw.execute("UPDATE audit_log SET detail = '{\"amount\":\"300.00\",\"n\":3}' "
                    "WHERE id = 4")

    async with Store(db) as store:
        result = await audit.verify(store)
    assert (result.ok, result.bad_row) == (False, 4)
    done = cli("audit", "verify", db=db)
    assert done.returncode == 1 and "BROKEN at row 4" in done.stdout


async def test_a_removed_row_breaks_the_link_of_the_next(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    await make_chain(db)
    with sqlite3.connect(db) as raw:
        raw.execute("DROP TRIGGER audit_no_delete")
        raw.execute("DELETE FROM audit_log WHERE id = 2")

    async with Store(db) as store:
        result = await audit.verify(store)
    assert (result.ok, result.bad_row) == (False, 3)
    assert "link" in result.problem


async def test_audit_show_prints_the_dispute_ready_history(world: World) -> None:
    world.paid_booking("SHOW-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await world.cancel("SHOW-1")
    await world.settle()
    db = Path(world.bot.settings.database_path)

    done = cli("audit", "show", "1", db=db)

    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in ("Refund case #1", "quote.made", "standard-48h",
                     "Full refund 48+ hours before the start", "case.auto_approved",
                     "stripe.refund", world.stripe.refunds[0].id, "checkfront.written",
                     "case.refunded"):
        assert expected in out, expected
    assert "@example.test" not in out  # the customer's email is not in the audit trail
    unknown = cli("audit", "show", "99", db=db)
    assert unknown.returncode == 2 and "no refund case 99" in unknown.stderr
