"""Copying a whole store to an empty one on either engine (`python -m bot store copy --to URL`):
how an existing SQLite store moves to PostgreSQL, and back.

The target is opened (so its migrations run: the same schema as the source's, which must be at
the same version), must hold no rows, and receives every table's rows in id order (the audit
chain byte for byte: its hashes cover the text, so any change would show), in one transaction
of the target. Then each identity sequence on PostgreSQL is moved past the highest id copied,
so the next row gets the next id, and the target's audit chain is verified from its first row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.store import audit

SKIP = frozenset({"schema_migrations"})   # the target's own, written by its migrations


class CopyError(Exception):
    """The copy was refused or failed; the message says why (never a secret)."""


@dataclass(frozen=True)
class CopyResult:
    tables: dict[str, int]
    audit_rows: int


async def tables(store: Any) -> list[str]:
    if store.dialect == "postgresql":
        found = await store.read_all(
            "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() "
            "ORDER BY tablename")
    else:
        found = await store.read_all(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name")
    return [r["name"] for r in found if r["name"] not in SKIP]


async def columns(store: Any, table: str) -> list[str]:
    if store.dialect == "postgresql":
        found = await store.read_all(
            "SELECT column_name AS name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,))
        return [r["name"] for r in found]
    return [r["name"] for r in await store.read_all(f'PRAGMA table_info("{table}")')]


def _order(table: str, names: list[str]) -> str:
    return "id" if "id" in names else ", ".join(f'"{n}"' for n in names)


async def copy_store(source: Any, target: Any, *, batch: int = 1000) -> CopyResult:
    """Copy every row of `source` into the empty `target` (both open)."""
    if await source.schema_version() != await target.schema_version():
        raise CopyError(f"the source is at schema {await source.schema_version()}, the target "
                        f"at {await target.schema_version()}: run the same bot version on both")
    names = await tables(source)
    if sorted(names) != sorted(await tables(target)):
        raise CopyError("the source and the target have different tables")
    for table in names:
        if await target.read_one(f'SELECT 1 FROM "{table}" LIMIT 1') is not None:
            raise CopyError(f"the target is not empty (table {table} has rows): refused")
    copied: dict[str, int] = {}
    order = _dependency_order(names)
    async with target.transaction() as tx:
        if target.dialect == "sqlite":
            await tx.execute("PRAGMA defer_foreign_keys = ON")
        for table in order:
            cols = await columns(source, table)
            wanted = [c for c in cols if c in set(await columns(target, table))]
            listed = ", ".join(f'"{c}"' for c in wanted)
            marks = ", ".join("?" for _ in wanted)
            insert = f'INSERT INTO "{table}" ({listed}) VALUES ({marks})'
            rows = await source.read_all(
                f'SELECT {listed} FROM "{table}" ORDER BY {_order(table, wanted)}')
            for start in range(0, len(rows), batch):
                await tx.executemany(insert, [tuple(r) for r in rows[start:start + batch]])
            copied[table] = len(rows)
        if target.dialect == "postgresql":
            for table in order:
                if "id" not in await columns(target, table):
                    continue
                found = await tx.execute_fetchall(
                    f"SELECT pg_get_serial_sequence('\"{table}\"', 'id')")
                if found and found[0][0] is not None:   # an identity id (not a text id)
                    await tx.execute(
                        f"SELECT setval(?, COALESCE((SELECT MAX(id) FROM \"{table}\"), 0) + 1, "
                        f"false)", (found[0][0],))
    chain = await audit.verify(target)
    if not chain.ok:
        raise CopyError(f"the copy's audit chain does not verify at row {chain.bad_row}: "
                        f"{chain.problem}")
    return CopyResult(copied, chain.rows)


_FIRST = ("cases", "departure_runs")   # referenced by others: written first


def _dependency_order(names: list[str]) -> list[str]:
    first = [n for n in _FIRST if n in names]
    return first + [n for n in names if n not in first]
