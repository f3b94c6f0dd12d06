"""Several instances on one store: who works what, and until when.

Every bot process is an instance with an id (`INSTANCE_ID`, by default `<hostname>-<pid>`) and
a lease timeout (`LEASE_SECONDS`). Two kinds of lease, both taken by compare-and-set inside a
store transaction (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's write lock), so two instances
never both hold one:

- a work-queue row (`claim`): the row's `claimed_by` and `lease_until` are set only where the
  row is free (no lease, or a lease that has passed, or one held by a holder known dead), so
  two instances never work the same row; the holder renews its leases while it works
  (`renew_rows`) and gives back what it did not do when it stops (`release_rows`); an
  instance killed -9 renews nothing, and its rows are free once their lease has passed;
- a named lease (`take`, table `leases`): a scheduled job's run for one slot
  (`job:<job>:<slot>`, `finish`ed once it ran, so it runs once per slot across all
  instances) and a Slack channel's sender (`channel:<id>`, one sender a channel at a time).

A holder known dead: an id of the default form on this host whose process no longer exists
(`gone`). Its leases are free at once rather than when they pass, so a bot restarted on the
same host after a kill -9 takes its predecessor's work without waiting out the lease. Only
the default form is judged (a chosen `INSTANCE_ID` says nothing about a process); a pid that
was reused keeps the lease until it passes, the safe side.

Every statement is portable SQL (`?` placeholders, `ON CONFLICT ... DO UPDATE ... WHERE`,
`RETURNING`; times compared as stored ISO-8601 UTC text). On PostgreSQL a claim's select of
candidate rows adds `FOR UPDATE SKIP LOCKED` (`skip_locked`, the one place that knows), so
concurrent claimers pass over each other's rows instead of queueing behind them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.store.db import Row, Store, iso_utc, one, rows

DEFAULT_LEASE = timedelta(seconds=30)
CHANNEL = "channel:"
JOB = "job:"


@dataclass(frozen=True)
class Instance:
    """This process as a holder of leases: its id and how long a lease it takes lasts."""

    id: str
    lease: timedelta = DEFAULT_LEASE

    def until(self, now: datetime) -> str:
        """The stored end of a lease taken or renewed at `now`."""
        return iso_utc(now + self.lease)


def default_id() -> str:
    """`<hostname>-<pid>`: unique among the processes that share a store."""
    return f"{socket.gethostname()}-{os.getpid()}"


_this = Instance(default_id())


def this() -> Instance:
    """This process's instance (`configure` sets it from the settings at start-up)."""
    return _this


def configure(instance_id: str | None = None, lease_seconds: float | None = None) -> Instance:
    """Set this process's instance id (empty or None: `default_id()`) and lease timeout."""
    global _this
    lease = timedelta(seconds=lease_seconds) if lease_seconds else DEFAULT_LEASE
    if lease <= timedelta(0):
        raise ValueError("a lease must last more than no time")
    _this = Instance((instance_id or "").strip() or default_id(), lease)
    return _this


def gone(holder: str | None) -> bool:
    """Whether `holder` is an instance of the default form on this host whose process is gone
    (not this process; a process that exists, even another user's, is alive)."""
    if not holder:
        return False
    host, _, pid_text = holder.rpartition("-")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:   # exists, not ours to signal
        return False
    return False


def skip_locked(store: Any) -> str:
    """What a claim's select of candidate rows ends with: `FOR UPDATE SKIP LOCKED` on
    PostgreSQL (claimers pass over rows another is claiming), nothing on SQLite (its write
    transactions are serialised whole)."""
    return " FOR UPDATE SKIP LOCKED" if getattr(store, "dialect", "sqlite") == "postgresql" else ""


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def _free(dead: Sequence[str]) -> tuple[str, list[Any]]:
    """The SQL of "free to claim at `now`" and its parameters after `now`."""
    if dead:
        return f"(lease_until IS NULL OR lease_until <= ? OR claimed_by IN ({_marks(dead)}))", \
            list(dead)
    return "(lease_until IS NULL OR lease_until <= ?)", []


async def dead_holders(store: Store, table: str, where: str, params: Iterable[Any],
                       now: datetime, me: Instance) -> list[str]:
    """The holders of unexpired leases on rows of `table` matching `where` that are known
    dead (`gone`); this instance's own id with them when it is asked to take its own back."""
    found = await store.fetch_all(
        f"SELECT DISTINCT claimed_by FROM {table} WHERE {where} AND claimed_by IS NOT NULL "
        "AND claimed_by <> ? AND lease_until > ?", (*params, me.id, iso_utc(now)))
    return [r[0] for r in found if gone(r[0])]


async def claim(store: Store, table: str, *, where: str, params: Iterable[Any] = (),
                now: datetime, me: Instance | None = None, limit: int = 1000,
                order: str = "id", mine_too: bool = False) -> list[Row]:
    """Claim up to `limit` rows of `table` matching `where` that are free at `now` (no lease,
    a lease passed, a holder known dead; with `mine_too`, also rows this instance's id holds,
    as after a restart under a fixed `INSTANCE_ID`): each is leased to `me` until
    `now + me.lease`. The rows claimed, in `order`, as they stand after the claim.

    One statement in one transaction: the candidates' select and the update's own re-check
    of the lease are one compare-and-set, so a row claimed by another meanwhile is not
    taken."""
    me = me or this()
    where_params = list(params)
    dead = await dead_holders(store, table, where, where_params, now, me)
    if mine_too:
        dead.append(me.id)
    free, free_params = _free(dead)
    at = iso_utc(now)
    async with store.transaction() as tx:
        found = await rows(
            tx,
            f"UPDATE {table} SET claimed_by = ?, lease_until = ? WHERE id IN ("
            f"SELECT id FROM {table} WHERE {where} AND {free} ORDER BY {order} LIMIT ?"
            f"{skip_locked(store)}) AND {free} RETURNING *",
            (me.id, me.until(now), *where_params, at, *free_params, limit, at, *free_params))
    order_keys = [part.strip() for part in order.split(",")]
    return sorted(found, key=lambda r: tuple(r[k] for k in order_keys))


async def renew_rows(store: Store, table: str, *, where: str, params: Iterable[Any] = (),
                     now: datetime, me: Instance | None = None) -> int:
    """Extend every lease `me` holds on rows of `table` matching `where`; how many."""
    me = me or this()
    async with store.transaction() as tx:
        cursor = await tx.execute(
            f"UPDATE {table} SET lease_until = ? WHERE claimed_by = ? AND {where}",
            (me.until(now), me.id, *params))
        return int(cursor.rowcount or 0)


async def release_rows(store: Store, table: str, *, where: str, params: Iterable[Any] = (),
                       me: Instance | None = None) -> int:
    """Give back every lease `me` holds on rows of `table` matching `where` (free at once for
    another instance); how many."""
    me = me or this()
    async with store.transaction() as tx:
        cursor = await tx.execute(
            f"UPDATE {table} SET claimed_by = NULL, lease_until = NULL "
            f"WHERE claimed_by = ? AND {where}", (me.id, *params))
        return int(cursor.rowcount or 0)


# --- named leases: a job's slot, a channel's sender ----------------------------------------------

@dataclass(frozen=True)
class Held:
    """A named lease as `take` left it: whether this instance holds it, and whether it was
    just taken (not renewed: another held it, or nobody did)."""

    held: bool
    fresh: bool = False
    done: bool = False


_TAKE = (
    "INSERT INTO leases (name, claimed_by, lease_until, taken_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET claimed_by = excluded.claimed_by, "
    "lease_until = excluded.lease_until, taken_at = CASE WHEN leases.claimed_by = "
    "excluded.claimed_by AND leases.lease_until > ? THEN leases.taken_at "
    "ELSE excluded.taken_at END "
    "WHERE leases.done_at IS NULL AND (leases.lease_until <= ? OR leases.claimed_by = "
    "excluded.claimed_by{dead}) RETURNING taken_at")


async def take(store: Store, name: str, now: datetime, me: Instance | None = None) -> Held:
    """Take (or renew) the lease `name` for `me`, when nobody else holds it: free, passed,
    held by a holder known dead, or already `me`'s; never once it is `finish`ed."""
    me = me or this()
    at = iso_utc(now)
    current = await store.fetch_one(
        "SELECT claimed_by, lease_until, done_at FROM leases WHERE name = ?", (name,))
    if current is not None and current["done_at"] is not None:
        return Held(False, done=True)
    dead = [current["claimed_by"]] if current is not None and current["claimed_by"] != me.id \
        and current["lease_until"] > at and gone(current["claimed_by"]) else []
    sql = _TAKE.format(dead=f" OR leases.claimed_by IN ({_marks(dead)})" if dead else "")
    async with store.transaction() as tx:
        found = await one(tx, sql, (name, me.id, me.until(now), at, at, at, *dead))
    if found is None:
        return Held(False)
    return Held(True, fresh=found["taken_at"] == at)


async def finish(store: Store, name: str, now: datetime, me: Instance | None = None) -> bool:
    """The work under `name` is done: nobody takes it again (a job's slot ran)."""
    me = me or this()
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "UPDATE leases SET done_at = ?, lease_until = ? WHERE name = ? AND claimed_by = ? "
            "AND done_at IS NULL", (iso_utc(now), iso_utc(now), name, me.id))
        return cursor.rowcount == 1


async def release(store: Store, name: str, me: Instance | None = None, *,
                  free_at: datetime | None = None) -> bool:
    """Give the lease `name` up: another instance may take it from `free_at` (now when None;
    a Slack channel's sender hands it over no sooner than its next post may go)."""
    me = me or this()
    at = iso_utc(free_at) if free_at is not None else iso_utc(datetime.now(UTC))
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "UPDATE leases SET lease_until = ? WHERE name = ? AND claimed_by = ? "
            "AND done_at IS NULL", (at, name, me.id))
        return cursor.rowcount == 1


async def holder(store: Store, name: str) -> Row | None:
    """The lease row `name` (holder, end, when taken, done), None when never taken."""
    return await store.fetch_one("SELECT * FROM leases WHERE name = ?", (name,))


async def purge_done(store: Store, before: datetime) -> int:
    """Forget the finished leases taken before `before` (old job slots); how many."""
    async with store.transaction() as tx:
        cursor = await tx.execute(
            "DELETE FROM leases WHERE done_at IS NOT NULL AND taken_at < ?", (iso_utc(before),))
        return int(cursor.rowcount or 0)
