"""Reading a bot's store from a test, from outside the bot, on either engine: plain blocking
calls (`rows`, `count`) that a test may make in a polling condition while its event loop runs
bot processes and stand-ins.

`StoreReader(url)` takes what `open_store` takes: `sqlite:///path` (or a path) opens the file
read-only with `sqlite3` for each call, as the bot's own readers would see it; `postgresql://`
keeps one asyncpg connection on a thread and loop of its own, and runs the same SQL (`?`
placeholders translated as the PostgreSQL store translates them). Rows are indexable by name
and by position on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class StoreReader:
    def __init__(self, url: str | Path) -> None:
        text = str(url)
        self.postgresql = text.startswith(("postgresql://", "postgres://"))
        self.url = text
        self.path = None if self.postgresql else Path(text.removeprefix("sqlite:///"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: Any = None

    def exists(self) -> bool:
        """Whether there is a store to read yet (a SQLite file appears with the first bot)."""
        return self.postgresql or (self.path is not None and self.path.exists())

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if not self.postgresql:
            assert self.path is not None
            with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as db:
                db.row_factory = sqlite3.Row
                return list(db.execute(sql, tuple(params)).fetchall())
        return self._on_loop(self._fetch(sql, tuple(params)))

    def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self.rows(sql, params)[0][0])

    def close(self) -> None:
        if self._loop is None:
            return
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._on_loop(self._conn.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = self._conn = None

    # --- PostgreSQL -----------------------------------------------------------------------

    def _on_loop(self, work: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                            name="store-reader")
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(30)

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        import asyncpg

        from services.store.postgres import translate
        if self._conn is None:
            self._conn = await asyncpg.connect(self.url)
        return list(await self._conn.fetch(translate(sql), *params))
