"""`/readyz`: whether the bot can do its work now, apart from `/healthz` (alive, what waits).

Ready when every check passes: the store is reachable (its file is there and answers) and
migrated (its schema is the newest this code knows), the worker takes events, the scheduler
runs (when it is on), the Slack outbox is not stalled (when Slack is on), and the bot is not
stopping. 200 with each check's answer, or 503 with the same body naming what is not ready.

The outbox is stalled when its sending loop has ended, or when a post has been due for longer
than `OUTBOX_STALL_SECONDS` while no call to Slack was made for that long: a backlog that is
being worked through (one post a second per channel), or Slack refusing posts that are tried
again later, is not a stall; a sender that stopped trying is. Each check is bounded in time
(`CHECK_SECONDS`): a store that hangs answers "not ready", it does not hang the probe.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Any

from aiohttp import web
from apscheduler.schedulers.base import BaseScheduler

from bot.slack.outbox import Outbox
from bot.worker import Worker
from services.store.db import Store, iso_utc, utcnow

CHECK_SECONDS = 2.0
OK = "ok"


def newest_schema() -> int:
    """The newest migration this code carries (what a migrated store is at)."""
    folder = resources.files("services.store") / "migrations"
    return max(int(entry.name.split("_", 1)[0]) for entry in folder.iterdir()
               if entry.name.endswith(".sql"))


@dataclass
class Readiness:
    store: Store
    worker: Worker
    scheduler: BaseScheduler | None = None
    outbox: Outbox | None = None
    stall_seconds: float = 600.0
    stopping: Callable[[], bool] = lambda: False

    async def checks(self) -> dict[str, str]:
        """Each check's answer: "ok", "off" (not configured), or what is wrong."""
        return {
            "store": await self._bounded(self._store()),
            "worker": OK if self.worker.running else "not running",
            "scheduler": "off" if self.scheduler is None
            else OK if self.scheduler.running else "not running",
            "outbox": "off" if self.outbox is None else await self._bounded(self._outbox()),
            "stopping": "stopping" if self.stopping() else OK,
        }

    async def _bounded(self, check: Coroutine[Any, Any, str]) -> str:
        try:
            return await asyncio.wait_for(check, CHECK_SECONDS)
        except TimeoutError:
            return f"no answer within {CHECK_SECONDS:g} s"
        except Exception as exc:
            return f"unreachable: {exc.__class__.__name__}"

    async def _store(self) -> str:
        if self.store.path != ":memory:" and not await asyncio.to_thread(
                os.path.exists, self.store.path):
            return "database file missing"
        row = await self.store.read_one("SELECT MAX(version) FROM schema_migrations")
        version = int(row[0] or 0) if row else 0
        newest = newest_schema()
        return OK if version >= newest else f"schema {version}, migrations up to {newest}"

    async def _outbox(self) -> str:
        assert self.outbox is not None
        if not self.outbox.running:
            return "sender not running"
        cutoff = iso_utc(utcnow() - timedelta(seconds=self.stall_seconds))
        row = await self.store.read_one(
            "SELECT MIN(next_at) FROM slack_outbox WHERE sent_at IS NULL")
        overdue = row is not None and row[0] is not None and row[0] < cutoff
        last = self.outbox.last_attempt
        idle = last is None or time.monotonic() - last > self.stall_seconds
        return f"stalled: a post due for over {self.stall_seconds:g} s, no call to Slack" \
            if overdue and idle else OK

    def handler(self) -> Callable[[web.Request], object]:
        async def readyz(_request: web.Request) -> web.Response:
            found = await self.checks()
            ready = all(answer in (OK, "off") for answer in found.values())
            return web.json_response({"ready": ready, "checks": found},
                                     status=200 if ready else 503)

        return readyz
