"""Operator commands run as separate processes against the same store and stand-ins."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from pydantic import SecretStr

from bot.cli.world import Item, World
from services.refunds import cases
from services.refunds.models import Case, Status

REPO = Path(__file__).resolve().parent.parent


def env_of(world: World) -> dict[str, str]:
    env = {**os.environ}
    for name, value in world.bot.settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list):
            value = ",".join(value)
        env[name.upper()] = str(value)
    return env


async def run(world: World, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=REPO, env=env_of(world),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def pending(world: World, code: str) -> Case:
    world.paid_booking(code, [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await world.cancel(code)
    await world.settle()
    case = (await cases.list_cases(world.bot.svc.store))[0]
    assert case.status == Status.PENDING_APPROVAL
    return case


async def test_cases_lists_and_approve_with_an_adjusted_amount_refunds_it(world: World) -> None:
    case = await pending(world, "CLI-1")

    code, out, _ = await run(world, "cases", "--status", "pending_approval")
    assert code == 0 and "CLI-1" in out and "830.00 USD" in out

    code, out, err = await run(world, "approve", str(case.id), "--by", "maria",
                               "--amount", "700.00", "--reason", "partial credit")
    assert code == 0, err
    assert "refunded" in out
    assert [r.amount for r in world.stripe.refunds] == [70000]


async def test_deny_records_the_reason(world: World) -> None:
    case = await pending(world, "CLI-2")

    code, out, _ = await run(world, "deny", str(case.id), "--by", "maria", "--reason",
                             "outside policy")

    assert code == 0 and "denied" in out
    assert (await cases.get(world.bot.svc.store, case.id)).status_reason == "outside policy"


async def test_bad_operator_input_exits_2_and_changes_nothing(world: World) -> None:
    case = await pending(world, "CLI-3")

    over = await run(world, "approve", str(case.id), "--by", "maria", "--amount", "9999.00",
                     "--reason", "typo")
    decimals = await run(world, "approve", str(case.id), "--by", "maria", "--amount", "1.234",
                         "--reason", "typo")
    missing = await run(world, "deny", "4242", "--by", "maria", "--reason", "x")

    for code, _, err in (over, decimals, missing):
        assert code == 2 and err.startswith("error:") and "Traceback" not in err
    assert "more than" in over[2] and "no refund case 4242" in missing[2]
    assert (await cases.get(world.bot.svc.store, case.id)).status == Status.PENDING_APPROVAL
    assert world.stripe.refunds == []
