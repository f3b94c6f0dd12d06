"""The tests' PostgreSQL: a throwaway cluster (`sandbox.postgres`, shared with the benchmarks)
with a migrated template database, for the tests that run on both store engines.

`TEST_DATABASE_URL` (a server the tests may create and drop databases on) is used as given;
otherwise a local cluster when PostgreSQL's server programs are installed, at `fsync=off` and
`synchronous_commit=off` (the tests kill bot processes, never this server). Each test gets a
database of its own made from the migrated template, never one another test used.

Making a database from the template takes the server a third of a second or so; `Ahead`
makes the next ones while the tests run (in a thread of its own, on one connection) and
drops the used ones behind them, so a test's setup only takes a database already made.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import threading
from collections import deque
from typing import Any

from sandbox.postgres import Cluster, Unavailable

TEMPLATE = "refund_bot_template"
AHEAD = 2   # databases made before a test asks for one

__all__ = ["AHEAD", "TEMPLATE", "Ahead", "Cluster", "Unavailable", "migrate", "start"]


async def migrate(url: str) -> None:
    """The store's migrations, run on the database at `url`."""
    from services.store.postgres import PgStore
    async with PgStore(url):
        pass


def start() -> Cluster:
    """The tests' PostgreSQL, with its migrated template database; Unavailable if none."""
    from sandbox import postgres
    cluster = postgres.start(os.environ.get("TEST_DATABASE_URL"))
    try:
        cluster.template(TEMPLATE, migrate)
    except BaseException:
        cluster.stop()
        raise
    return cluster


class Ahead:
    """Fresh databases from the cluster's template, made ahead of the tests that take them.

    `take()` gives the URL of a database made from the template that no test has used (it
    waits for it when the tests take them faster than the server makes them); `give_back()`
    drops it later. The statements run in order on one connection, in a thread of its own
    with its own event loop, so a test's loop never waits on them.
    """

    def __init__(self, cluster: Cluster, depth: int = AHEAD) -> None:
        assert cluster.template_name is not None
        self.cluster, self.depth = cluster, depth
        self._names = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-ahead",
                                        daemon=True)
        self._thread.start()
        self._conn: Any = None
        self._lock: asyncio.Lock | None = None
        self._made: deque[concurrent.futures.Future[str]] = deque()
        self._drops: list[concurrent.futures.Future[None]] = []
        for _ in range(depth):
            self._made.append(self._submit(self._create()))

    def take(self) -> str:
        if not self._made:
            self._made.append(self._submit(self._create()))
        made = self._made.popleft()
        self._made.append(self._submit(self._create()))   # the next test's
        return self.cluster.url_of(made.result(timeout=120))

    def give_back(self, url: str) -> None:
        self._drops = [d for d in self._drops if not d.done() or d.exception() is not None]
        self._drops.append(self._submit(self._execute(
            f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[-1]}" WITH (FORCE)')))

    def close(self) -> None:
        """Drop what was made and not taken (a server given by URL keeps nothing of ours),
        wait for the drops, and stop the thread. A drop that failed is raised here."""
        try:
            for made in self._made:
                self._submit(self._execute(f'DROP DATABASE IF EXISTS "{made.result()}"'))
            self._submit(self._execute("SELECT 1")).result(timeout=120)
            for drop in self._drops:
                drop.result(timeout=120)
        finally:
            if self._conn is not None:
                self._submit(self._conn.close()).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()

    def _submit(self, work: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(work, self._loop)

    async def _create(self) -> str:
        name = f"a{os.getpid()}_{next(self._names)}"
        await self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.cluster.template_name}"')
        return name

    async def _execute(self, statement: str) -> None:
        import asyncpg
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:   # one connection: one statement at a time, in order
            if self._conn is None:
                self._conn = await asyncpg.connect(self.cluster.url)
            await self._conn.execute(statement)
