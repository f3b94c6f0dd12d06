"""The loop guard (`bot.loop_guard`): while webhooks arrive the worker's next case waits for
the loop to be free and few cases run; with intake quiet nothing is held; the HTTP layer
tells the guard about every webhook."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.cli.world import Item, World
from bot.loop_guard import LoopGuard


def hog(seconds: float) -> None:
    """A synchronous stretch: the loop runs nothing else meanwhile."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def enter(guard: LoopGuard, log: list[str], name: str, release: asyncio.Event) -> None:
    async with guard.turn():
        log.append(name)
        await release.wait()


async def test_with_intake_quiet_every_case_enters_at_once() -> None:
    guard = LoopGuard()
    log: list[str] = []
    release = asyncio.Event()
    tasks = [asyncio.create_task(enter(guard, log, f"c{n}", release)) for n in range(8)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sorted(log) == [f"c{n}" for n in range(8)] and guard.held == 0
    assert guard.running == 8
    release.set()
    await asyncio.gather(*tasks)
    assert guard.running == 0


async def test_while_intake_is_busy_few_cases_run_and_the_rest_follow_when_it_quiets() -> None:
    guard = LoopGuard(busy_cases=2, quiet_after=0.05, interval=0.001, max_lag=0.05)
    guard.intake_began()
    log: list[str] = []
    release = asyncio.Event()
    tasks = [asyncio.create_task(enter(guard, log, f"c{n}", release)) for n in range(5)]
    await asyncio.sleep(0.05)
    assert log == ["c0", "c1"]             # in order, no more than the cap, loop idle
    assert guard.held == 5 and guard.running == 2
    guard.intake_ended()                    # quiet once `quiet_after` has passed
    assert guard.intake_busy()
    await asyncio.sleep(0.1)
    assert log == ["c0", "c1", "c2", "c3", "c4"] and guard.running == 5
    release.set()
    await asyncio.gather(*tasks)


async def test_a_lagging_loop_holds_the_next_case_while_intake_is_busy() -> None:
    guard = LoopGuard(busy_cases=4, interval=0.001, max_lag=0.002)
    guard.intake_began()
    log: list[str] = []
    release = asyncio.Event()
    task = asyncio.create_task(enter(guard, log, "c0", release))
    for _ in range(20):                     # the loop kept busy 5 ms at a time
        await asyncio.sleep(0)
        hog(0.005)
    assert log == []
    await asyncio.sleep(0.02)               # the loop free again: it goes in
    assert log == ["c0"]
    guard.intake_ended()
    release.set()
    await task


async def test_a_case_cancelled_while_held_gives_up_its_place() -> None:
    guard = LoopGuard(busy_cases=1, interval=0.001, max_lag=0.05)
    guard.intake_began()
    log: list[str] = []
    release = asyncio.Event()
    first = asyncio.create_task(enter(guard, log, "c0", release))
    second = asyncio.create_task(enter(guard, log, "c1", release))
    await asyncio.sleep(0.02)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    release.set()
    await first
    assert log == ["c0"] and guard.running == 0
    guard.intake_ended()


def test_while_intake_is_busy_at_least_one_case_must_run() -> None:
    with pytest.raises(ValueError):
        LoopGuard(busy_cases=0)


async def test_the_webhooks_tell_the_worker_s_guard_and_the_worker_still_finishes(
        world: World) -> None:
    guard = world.bot.worker.guard
    assert guard.last_intake == float("-inf")
    world.paid_booking("GUARD-1", [Item("kayak-tour", "105.00", hours_ahead=72)])
    answer = await world.cancel("GUARD-1")
    assert answer.status_code == 200
    assert guard.last_intake > float("-inf") and not guard._in_flight
    await world.settle()
    assert [r.amount for r in world.stripe.refunds] == [9500]   # the policy keeps its fee
