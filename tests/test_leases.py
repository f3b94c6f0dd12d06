"""Leases for several instances on one store (services/store/leases.py): two claimers never
hold one row, a lease that passed is reclaimed, a holder of this host whose process is gone
loses its leases at once; named leases (a job's slot, a Slack channel) likewise; a scheduled
job runs once per slot across instances; each queue picks with them."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.scheduler import ANOMALY_JOB, ScheduledJobs
from services.customers import outbox as customer_outbox
from services.intake.events import claim_queued, release_queued, renew_queued
from services.refunds import cases, decisions, ledger
from services.refunds.execution import renew_executing
from services.refunds.models import Case, Status
from services.store import audit, leases
from services.store.db import Store, iso_utc, open_store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
A = leases.Instance("host-a", timedelta(seconds=30))
B = leases.Instance("host-b", timedelta(seconds=30))


pytestmark = pytest.mark.both_backends


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url).open()
    try:
        yield opened
    finally:
        await opened.close()


async def queue_events(store: Store, n: int, *, claimed_by: str | None = None,
                       lease_until: str | None = None) -> None:
    async with store.transaction() as tx:
        for i in range(n):
            await tx.execute(
                "INSERT INTO webhook_events (source, event_id, kind, received_at, payload, "
                "claimed_by, lease_until) VALUES ('stripe', ?, 'x', ?, '{}', ?, ?)",
                (f"ev-{claimed_by}-{i}", iso_utc(T0), claimed_by, lease_until))


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


async def test_two_claimers_split_the_queue_and_never_share_a_row(store: Store) -> None:
    await queue_events(store, 40)

    first, second = await asyncio.gather(
        claim_queued(store, T0, me=A, limit=25), claim_queued(store, T0, me=B, limit=25))

    ids_a, ids_b = {e.row_id for e in first}, {e.row_id for e in second}
    assert not ids_a & ids_b
    assert len(ids_a | ids_b) == 40 and {len(first), len(second)} == {25, 15}
    assert await claim_queued(store, T0 + timedelta(seconds=29), me=A) == []


async def test_a_lease_that_passed_is_reclaimed_and_a_renewed_one_is_not(store: Store) -> None:
    await queue_events(store, 4)
    held = await claim_queued(store, T0, me=A)
    assert len(held) == 4

    assert await renew_queued(store, T0 + timedelta(seconds=20), me=A) == 4
    assert await claim_queued(store, T0 + timedelta(seconds=40), me=B) == []   # renewed to 50
    taken = await claim_queued(store, T0 + timedelta(seconds=50), me=B)   # A stopped renewing
    assert sorted(e.row_id for e in taken) == sorted(e.row_id for e in held)
    assert await renew_queued(store, T0 + timedelta(seconds=55), me=A) == 0   # no longer A's
    holders = await store.fetch_all("SELECT DISTINCT claimed_by FROM webhook_events")
    assert [r[0] for r in holders] == ["host-b"]


async def test_released_events_are_free_at_once_and_mine_too_takes_back_own(
        store: Store) -> None:
    await queue_events(store, 3)
    await claim_queued(store, T0, me=A)
    assert await claim_queued(store, T0, me=B) == []
    assert len(await claim_queued(store, T0, me=A, mine_too=True)) == 3   # a restart as A
    assert await release_queued(store, me=A) == 3
    assert len(await claim_queued(store, T0, me=B)) == 3


async def test_a_holder_of_this_host_whose_process_is_gone_loses_its_rows_at_once(
        store: Store) -> None:
    gone = f"{socket.gethostname()}-{dead_pid()}"
    alive = f"{socket.gethostname()}-{os.getppid()}"
    far = iso_utc(T0 + timedelta(hours=1))
    await queue_events(store, 2, claimed_by=gone, lease_until=far)
    await queue_events(store, 2, claimed_by=alive, lease_until=far)
    await queue_events(store, 2, claimed_by="elsewhere-1", lease_until=far)

    assert leases.gone(gone) and not leases.gone(alive) and not leases.gone("elsewhere-1")
    assert not leases.gone(leases.default_id())   # this process
    taken = await claim_queued(store, T0, me=B)
    assert len(taken) == 2
    rows = await store.fetch_all("SELECT claimed_by, COUNT(*) FROM webhook_events "
                                 "GROUP BY claimed_by ORDER BY claimed_by")
    assert {r[0]: r[1] for r in rows} == {alive: 2, "elsewhere-1": 2, "host-b": 2}


async def test_a_named_lease_has_one_holder_until_it_passes_or_is_done(store: Store) -> None:
    name = "job:test:slot-1"
    first, second = await asyncio.gather(leases.take(store, name, T0, A),
                                         leases.take(store, name, T0, B))
    assert sorted([first.held, second.held]) == [False, True]
    winner, loser = (A, B) if first.held else (B, A)
    assert (await leases.take(store, name, T0 + timedelta(seconds=10), winner)).held  # renews
    assert not (await leases.take(store, name, T0 + timedelta(seconds=39), loser)).held
    again = await leases.take(store, name, T0 + timedelta(seconds=41), loser)   # passed
    assert again.held and again.fresh
    assert not (await leases.take(store, name, T0 + timedelta(seconds=42), winner)).held
    assert await leases.finish(store, name, T0 + timedelta(seconds=50), loser)
    done = await leases.take(store, name, T0 + timedelta(hours=2), winner)
    assert not done.held and done.done   # a slot that ran is never taken again


async def test_a_released_channel_is_free_from_the_time_given(store: Store) -> None:
    name = leases.CHANNEL + "C1"
    assert (await leases.take(store, name, T0, A)).held
    assert await leases.release(store, name, A, free_at=T0 + timedelta(seconds=1))
    assert not (await leases.take(store, name, T0 + timedelta(seconds=0.5), B)).held
    assert (await leases.take(store, name, T0 + timedelta(seconds=0.5), A)).held   # its own
    assert await leases.release(store, name, A, free_at=T0 + timedelta(seconds=1))
    assert (await leases.take(store, name, T0 + timedelta(seconds=1), B)).held


async def test_a_scheduled_job_runs_once_per_slot_across_instances(
        world: object, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = world.bot.svc   # type: ignore[attr-defined]
    tz = ZoneInfo("UTC")
    runs: list[str] = []
    release = asyncio.Event()

    async def body() -> str:
        runs.append("ran")
        await release.wait()
        return "done"

    jobs_a, jobs_b = ScheduledJobs(svc, tz), ScheduledJobs(svc, tz)
    monkeypatch.setattr(leases, "_this", A)
    first = asyncio.create_task(jobs_a.once(ANOMALY_JOB, "2026-03-01T12:00+00:00", body))
    await asyncio.sleep(0.05)
    monkeypatch.setattr(leases, "_this", B)
    second = await jobs_b.once(ANOMALY_JOB, "2026-03-01T12:00+00:00", body)   # A holds it
    release.set()
    assert await first == "done" and second is None
    assert await jobs_b.once(ANOMALY_JOB, "2026-03-01T12:00+00:00", body) is None   # done
    assert await jobs_b.once(ANOMALY_JOB, "2026-03-01T12:05+00:00", body) == "done"
    assert runs == ["ran", "ran"]


async def test_a_slot_whose_leader_died_is_run_by_another(
        world: object, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = world.bot.svc   # type: ignore[attr-defined]
    slot, name = "2026-03-01T12:00+00:00", f"job:{ANOMALY_JOB}:2026-03-01T12:00+00:00"
    killed = f"{socket.gethostname()}-{dead_pid()}"   # took the slot, then was killed -9
    async with svc.store.transaction() as tx:
        await tx.execute("INSERT INTO leases (name, claimed_by, lease_until, taken_at) "
                         "VALUES (?, ?, ?, ?)", (name, killed, iso_utc(
                             datetime.now(UTC) + timedelta(hours=1)), iso_utc(T0)))
    monkeypatch.setattr(leases, "_this", B)

    async def body() -> str:
        return "ran"

    assert await ScheduledJobs(svc, ZoneInfo("UTC")).once(ANOMALY_JOB, slot, body) == "ran"
    row = await leases.holder(svc.store, name)
    assert row is not None and row["claimed_by"] == "host-b" and row["done_at"] is not None


async def test_a_customer_message_being_sent_is_requeued_only_when_stale(store: Store) -> None:
    async with store.transaction() as tx:
        for n, (holder, until) in enumerate([
                ("host-a", iso_utc(T0 + timedelta(seconds=10))),    # sending now
                ("host-a", iso_utc(T0 - timedelta(seconds=1))),     # its lease passed
                (None, None)]):                                      # sent before leases
            await tx.execute(
                "INSERT INTO cases (id, booking_id, booking_code, status, currency, "
                "cancelled_at, source, created_at, updated_at) VALUES (?, ?, ?, 'refunded', "
                "'USD', ?, 'cli', ?, ?)",
                (n + 1, f"b{n}", f"B{n}", iso_utc(T0), iso_utc(T0), iso_utc(T0)))
            await tx.execute(
                "INSERT INTO customer_messages (case_id, outcome, state, created_at, next_at, "
                "claimed_by, lease_until) VALUES (?, 'refunded', 'sending', ?, ?, ?, ?)",
                (n + 1, iso_utc(T0), iso_utc(T0), holder, until))
    assert await customer_outbox.requeue_stale(store, T0, me=B) == 2
    left = await store.fetch_all("SELECT case_id FROM customer_messages WHERE state = 'sending'")
    assert [r[0] for r in left] == [1]
    assert await customer_outbox.requeue_stale(store, T0, me=A, mine_too=True) == 1


class FakeSlack:
    """chat.postMessage only: what an `alert` row needs."""

    def __init__(self) -> None:
        self.posted: list[str] = []

    async def chat_postMessage(self, **kwargs: object) -> dict[str, str]:
        self.posted.append(str(kwargs["text"]))
        return {"channel": str(kwargs["channel"]), "ts": f"{len(self.posted)}.0"}


async def test_one_outbox_sends_to_a_channel_another_instance_holds_none(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.slack.outbox import Outbox
    from services import outbox as posts

    slack = FakeSlack()
    sender = Outbox(store, slack, per_channel_interval=0.0)   # type: ignore[arg-type]
    await posts.add(store, "C1", "alert", None, {"text": "one"})
    await posts.add(store, "C2", "alert", None, {"text": "two"})
    now = datetime.now(UTC)
    assert (await leases.take(store, leases.CHANNEL + "C1", now, B)).held   # B sends to C1
    monkeypatch.setattr(leases, "_this", A)

    assert await sender.flush()
    assert slack.posted == ["two"]   # C1 is B's: its row is left to B
    assert [p.channel for p in await posts.unsent(store)] == ["C1"]
    held = await leases.holder(store, leases.CHANNEL + "C2")
    assert held is not None and held["claimed_by"] == "host-a"
    assert held["lease_until"] <= iso_utc(datetime.now(UTC))   # handed back after the pass

    assert await leases.release(store, leases.CHANNEL + "C1", B)
    assert await sender.flush()
    assert slack.posted == ["two", "one"] and await posts.unsent(store) == []


async def approved_on(world: object, me: leases.Instance, code: str,
                      monkeypatch: pytest.MonkeyPatch) -> Case:
    """A case a person approved through instance `me`, which then died before executing it."""
    from tests.money_helpers import BIG, all_cases

    world.paid_booking(code, BIG)   # type: ignore[attr-defined]
    await world.cancel(code)   # type: ignore[attr-defined]
    await world.settle()   # type: ignore[attr-defined]
    [case] = [c for c in await all_cases(world) if c.booking_code == code]   # type: ignore[arg-type]
    monkeypatch.setattr(leases, "_this", me)
    return await cases.approve(world.bot.svc.store, case.id, by="maria")   # type: ignore[attr-defined]


async def test_an_approved_case_whose_instance_died_is_executed_by_another_after_a_lease(
        world: object, monkeypatch: pytest.MonkeyPatch) -> None:
    svc, worker = world.bot.svc, world.bot.worker   # type: ignore[attr-defined]
    before = datetime.now(UTC)
    case = await approved_on(world, A, "LEASE-1", monkeypatch)   # then A is killed -9
    held = await svc.store.fetch_one("SELECT claimed_by, lease_until FROM cases WHERE id = ?",
                                     (case.id,))
    assert held["claimed_by"] == "host-a" and held["lease_until"] >= iso_utc(before + A.lease)
    at = datetime.fromisoformat(held["lease_until"]) - A.lease   # when A approved it

    monkeypatch.setattr(leases, "_this", B)
    await worker.renew_and_claim(at + timedelta(seconds=29))   # A's lease holds
    await worker.drain()
    assert (await cases.get(svc.store, case.id)).status == Status.APPROVED
    assert world.stripe.refunds == []   # type: ignore[attr-defined]

    await worker.renew_and_claim(at + timedelta(seconds=31))   # passed: B takes and runs it
    await world.settle()   # type: ignore[attr-defined]
    assert (await cases.get(svc.store, case.id)).status == Status.REFUNDED
    assert [r.amount for r in world.stripe.refunds] == [83000]   # type: ignore[attr-defined]
    [row] = await ledger.executed(svc.store, case.id)
    keys = [e.idempotency_key for e in world.stripe.events   # type: ignore[attr-defined]
            if e.type == "charge.refunded"]
    assert keys == [row.idempotency_key]
    actions = [e.action for e in await audit.history(svc.store, case.id)]
    assert "execution.resumed" in actions


async def test_a_live_instance_keeps_its_approved_case_while_it_renews(
        world: object, monkeypatch: pytest.MonkeyPatch) -> None:
    svc, worker = world.bot.svc, world.bot.worker   # type: ignore[attr-defined]
    case = await approved_on(world, A, "LEASE-2", monkeypatch)
    at = datetime.now(UTC)
    assert await renew_executing(svc.store, at + timedelta(seconds=20)) == 1   # A lives: to +50

    monkeypatch.setattr(leases, "_this", B)
    await worker.renew_and_claim(at + timedelta(seconds=40))
    await worker.drain()
    assert (await cases.get(svc.store, case.id)).status == Status.APPROVED
    assert world.stripe.refunds == []   # type: ignore[attr-defined]
    held = await svc.store.fetch_one("SELECT claimed_by FROM cases WHERE id = ?", (case.id,))
    assert held["claimed_by"] == "host-a"

    monkeypatch.setattr(leases, "_this", A)   # A executes it itself
    case = await decisions.retry(svc, case.id, by="maria")
    assert case.status == Status.REFUNDED
    assert [r.amount for r in world.stripe.refunds] == [83000]   # type: ignore[attr-defined]
