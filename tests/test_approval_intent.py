"""An approval is an intent that survives: an approved or auto-approved case left by a crash is
run at start-up, by the periodic sweep and when its webhook is delivered again, and /healthz
counts it meanwhile."""

from __future__ import annotations

import httpx

from bot.app import Bot
from bot.cli.world import World
from bot.scheduler import ScheduledJobs
from sandbox.http import start
from services.refunds import cases
from services.refunds.models import Status
from services.store import audit
from tests.money_helpers import BIG, all_cases, auto_approved_not_run, backdate, deliver


async def test_an_approved_case_left_by_a_crash_is_refunded_at_start_up(world: World) -> None:
    world.paid_booking("KILL-1", BIG)
    await world.cancel("KILL-1")
    await world.settle()
    [case] = await all_cases(world)
    await cases.approve(world.bot.svc.store, case.id, by="maria")   # then kill -9
    await world.bot.close()

    restarted = await Bot.create(world.bot.settings)
    server = await start(restarted.web)
    try:
        await restarted.worker.drain()
        case = await cases.get(restarted.svc.store, case.id)
        actions = [e.action for e in await audit.history(restarted.svc.store, case.id)]
    finally:
        await server.stop()

    assert case.status == Status.REFUNDED
    assert [r.amount for r in world.stripe.refunds] == [83000]
    assert "execution.resumed" in actions



async def test_a_redelivered_webhook_nudges_an_auto_approved_case(world: World) -> None:
    case = await auto_approved_not_run(world, "KILL-2")
    await backdate(world, case.id, minutes=10)

    answer = await deliver(world, world.checkfront.webhook_body("KILL-2"))
    await world.settle()

    assert answer.status_code == 200
    assert (await cases.get(world.bot.svc.store, case.id)).status == Status.REFUNDED
    assert [r.amount for r in world.stripe.refunds] == [4250]


async def test_the_sweep_runs_approved_cases_but_leaves_a_fresh_click_alone(
    world: World,
) -> None:
    stuck = await auto_approved_not_run(world, "KILL-3")
    await backdate(world, stuck.id, minutes=10)
    fresh = await auto_approved_not_run(world, "KILL-4")   # its own executor is about to run
    jobs = ScheduledJobs(world.bot.svc, world.bot.settings.zone)

    swept = await jobs.approved_sweep()

    assert swept == [stuck.id]
    assert (await cases.get(world.bot.svc.store, stuck.id)).status == Status.REFUNDED
    assert (await cases.get(world.bot.svc.store, fresh.id)).status == Status.AUTO_APPROVED
    assert len(world.stripe.refunds) == 1


async def test_healthz_counts_approved_cases_not_yet_executing(world: World) -> None:
    await auto_approved_not_run(world, "KILL-5")
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{world.bot_url}/healthz")
    assert answer.json()["backlog"]["cases_approved"] == 1
