"""SQLite's write lock and log, as both of the store's SQLite connections use them (the store's
own, `services.store.db`, and the intake writer's, `services.store.writer`).

`begin_immediate` takes the write lock (`BEGIN IMMEDIATE`), trying again in short steps
(0.1 ms doubling to 1 ms) while another connection writes, rather than SQLite's default busy
handler (1, 2, 5, 10, 15, 20, 25 … ms), so a commit another connection finishes is followed
within a millisecond. `is_busy` tells "database is locked" in any of its extended codes.
`sync_log` syncs the write-ahead log to disk: every commit made before is then durable, what
`synchronous` FULL does at each commit.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable

FIRST_PAUSE = 0.0001         # seconds between tries for the write lock, doubling ...
LONGEST_PAUSE = 0.001        # ... up to this


def is_busy(exc: sqlite3.Error) -> bool:
    """"Database is locked" in any of its extended codes (SQLITE_BUSY, _RECOVERY while another
    connection recovers the log, _SNAPSHOT...): the primary code is the low byte."""
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_BUSY


def begin_immediate(conn: sqlite3.Connection, *, timeout: float,
                    waited: Callable[[float], None] | None = None) -> None:
    """`BEGIN IMMEDIATE` on `conn` (whose own busy timeout is 0), trying again in short steps
    for up to `timeout` seconds while another connection holds the lock; then the last error.
    `waited(seconds)` is told how long it waited, whenever the first try found the lock held."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        return
    except sqlite3.OperationalError as exc:
        if not is_busy(exc):
            raise
    began = time.monotonic()
    deadline = began + timeout
    pause = FIRST_PAUSE
    try:
        while True:
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise
    finally:
        if waited is not None:
            waited(time.monotonic() - began)


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the transaction `conn` has open, if any."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def sync_log(path: str) -> None:
    """Sync the store's write-ahead log to disk: every commit made before is then durable
    (what `synchronous` FULL does at each commit)."""
    fd = os.open(f"{path}-wal", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
