"""Shared fixtures: a whole local world (Checkfront and Stripe stand-ins and the bot), and the
store's two engines."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli.world import World
from tests import pg_cluster


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.start(tmp_path)
    try:
        yield w
    finally:
        await w.stop()


@pytest.fixture
async def sworld(tmp_path: Path) -> AsyncIterator[World]:
    """The world with Slack: the bot's Bolt app and the Slack stand-in."""
    w = await World.start(tmp_path, slack=True)
    try:
        yield w
    finally:
        await w.stop()


# --- the store's two engines ---------------------------------------------------------------
# A module marked `both_backends` runs each of its tests on SQLite and on PostgreSQL (the
# PostgreSQL run marked `postgresql`: `pytest -m "not postgresql"` leaves it out, and so does
# STORE_BACKENDS=sqlite; a test in it marked `sqlite_only` runs on SQLite alone). On
# PostgreSQL the test's DATABASE_URL names a fresh database, so the bot it starts (World,
# `python -m bot serve` in the fault suite) opens that store (made ahead of the test from the
# migrated template, dropped after it: `pg_cluster.Ahead`). Without PostgreSQL
# (tests/pg_cluster.py says when) those runs are skipped with the reason.

_CLUSTER: dict[str, Any] = {}


def _cluster() -> pg_cluster.Cluster:
    if "cluster" not in _CLUSTER and "unavailable" not in _CLUSTER:
        try:
            _CLUSTER["cluster"] = pg_cluster.start()
            _CLUSTER["ahead"] = pg_cluster.Ahead(_CLUSTER["cluster"])
        except pg_cluster.Unavailable as exc:
            _CLUSTER["unavailable"] = str(exc)
    if "unavailable" in _CLUSTER:
        why = f"no PostgreSQL for the tests: {_CLUSTER['unavailable']}"
        if os.environ.get("REQUIRE_POSTGRESQL"):   # CI installed it: both engines must run
            pytest.fail(why)
        pytest.skip(why)
    return _CLUSTER["cluster"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: run on SQLite and on PostgreSQL")
    config.addinivalue_line("markers", "postgresql: the PostgreSQL run of a test")
    config.addinivalue_line("markers", "sqlite_only: a test of SQLite's own machinery (query "
                            "plans, the file) in a module marked both_backends")


def pytest_unconfigure(config: pytest.Config) -> None:
    ahead, cluster = _CLUSTER.pop("ahead", None), _CLUSTER.pop("cluster", None)
    try:
        if ahead is not None:
            ahead.close()
    finally:
        if cluster is not None:
            cluster.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_backend" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("both_backends") is None:
        return
    if metafunc.definition.get_closest_marker("sqlite_only") is not None:
        return
    engines: list[Any] = ["sqlite"]
    if os.environ.get("STORE_BACKENDS", "sqlite,postgresql") != "sqlite":
        engines.append(pytest.param("postgresql", marks=pytest.mark.postgresql))
    metafunc.parametrize("store_backend", engines, indirect=True)


@pytest.fixture(autouse=True)
def store_backend(request: pytest.FixtureRequest,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The store engine of this test: "sqlite" (the default), or "postgresql" with
    DATABASE_URL set to a fresh, migrated database for the test's length."""
    engine = getattr(request, "param", "sqlite")
    if engine != "postgresql":
        yield engine
        return
    _cluster()
    ahead: pg_cluster.Ahead = _CLUSTER["ahead"]
    url = ahead.take()
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        yield engine
    finally:
        ahead.give_back(url)


@pytest.fixture
def pg() -> pg_cluster.Cluster:
    """The tests' PostgreSQL server (skipped without one)."""
    if os.environ.get("STORE_BACKENDS") == "sqlite":
        pytest.skip("STORE_BACKENDS=sqlite")
    return _cluster()


@pytest.fixture
def store_url(store_backend: str, tmp_path: Path) -> str:
    """Where this test's store is, on its engine (`open_store` takes it)."""
    if store_backend == "postgresql":
        return os.environ["DATABASE_URL"]
    return f"sqlite:///{tmp_path / 'store.db'}"
