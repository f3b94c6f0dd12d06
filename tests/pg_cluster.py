"""The tests' PostgreSQL: a throwaway cluster (`sandbox.postgres`, shared with the benchmarks)
with a migrated template database, for the tests that run on both store engines.

`TEST_DATABASE_URL` (a server the tests may create and drop databases on) is used as given;
otherwise a local cluster when PostgreSQL's server programs are installed, at `fsync=off` and
`synchronous_commit=off` (the tests kill bot processes, never this server). Each test gets a
database of its own made from the migrated template (`Cluster.fresh()`, a file copy).
"""

from __future__ import annotations

import os

from sandbox.postgres import Cluster, Unavailable

TEMPLATE = "refund_bot_template"

__all__ = ["TEMPLATE", "Cluster", "Unavailable", "migrate", "start"]


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
