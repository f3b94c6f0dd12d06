"""An online copy of the store's SQLite file, taken while the bot runs.

SQLite's backup API (`sqlite3.Connection.backup`) copies the database page by page from a
read transaction, so the copy is one committed state even while webhooks and cases keep
writing: in WAL mode the writers do not wait for it and it does not wait for them. Copying a
WAL database's files with `cp` can give a torn copy (the main file and its `-wal` from different
moments); this is the way to back it up.

The copy is written beside its destination and renamed into place only once SQLite's own
`integrity_check` passes on it, so a crash or a full disk never leaves a half copy under the
name. The caller then checks the copy's audit chain (`services.store.audit.verify`).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BackupError", "Copied", "copy_database"]

PAGES_PER_STEP = 1024   # a step holds the source's read lock this long; writers go on in WAL


class BackupError(Exception):
    """The copy could not be made; the message says why (never a secret)."""


@dataclass(frozen=True)
class Copied:
    path: Path
    bytes: int
    schema_version: int


def copy_database(source: Path, destination: Path, *, replace: bool = False) -> Copied:
    """Copy the database at `source` to `destination` (a new file unless `replace`)."""
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    if destination.exists() and not replace:
        raise BackupError(f"{destination} exists (pass --force to replace it)")
    if destination.resolve() == source.resolve():
        raise BackupError("the copy cannot replace the database itself")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst, pages=PAGES_PER_STEP)
                problem = dst.execute("PRAGMA integrity_check").fetchone()[0]
                if problem != "ok":
                    raise BackupError(f"the copy failed SQLite's integrity check: {problem}")
                version = _schema_version(dst)
            finally:
                dst.close()
        finally:
            src.close()
        os.replace(partial, destination)
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite refused the copy: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return Copied(destination, destination.stat().st_size, version)


def _schema_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    except sqlite3.OperationalError as exc:   # not this bot's database
        raise BackupError(f"not a refund-bot store (no schema_migrations): {exc}") from exc
    return int(row[0] or 0)
