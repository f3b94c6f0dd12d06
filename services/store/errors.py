"""The store's errors, the same on both engines.

`IntegrityError`: a constraint refused a write (a second open case for a booking, a duplicate
key). It is `sqlite3.IntegrityError` itself, which the SQLite store raises as it is (nothing
wrapped on its hot path); the PostgreSQL store (`services.store.postgres`) raises it for
asyncpg's integrity violations. `StoreUnavailable`: the store could not take a write (closed,
disk or connection error, locked too long), defined with the intake writer.
"""

from __future__ import annotations

import sqlite3

from services.store.writer import StoreUnavailable

IntegrityError = sqlite3.IntegrityError

__all__ = ["IntegrityError", "StoreUnavailable"]
