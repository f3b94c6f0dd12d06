"""Modes: shadow records only, assisted auto-approves within auto_approve_max, autonomous up
to escalate_over when the refund is policy-clear."""

from __future__ import annotations

from pathlib import Path

from bot.cli.world import Item, World
from services.refunds import cases
from services.refunds.models import Case, Status


async def cancel_one(tmp_path: Path, mode: str, total: str, tax: str) -> tuple[World, Case]:
    world = await World.start(tmp_path, mode=mode)
    world.paid_booking("MODE-1", [Item("kayak-tour", total, tax, hours_ahead=72)])
    await world.cancel("MODE-1")
    await world.settle()
    return world, (await cases.list_cases(world.bot.svc.store))[0]


async def test_shadow_mode_quotes_and_waits_without_refunding(tmp_path: Path) -> None:
    world, case = await cancel_one(tmp_path, "shadow", "105.00", "5.00")  # 95.00: auto-size
    try:
        assert case.status == Status.PENDING_APPROVAL
        assert (case.status_reason or "").startswith("shadow mode: would auto-approve")
        assert world.stripe.refunds == []
    finally:
        await world.stop()


async def test_autonomous_mode_refunds_policy_clear_cases_up_to_escalate_over(
    tmp_path: Path,
) -> None:
    world, case = await cancel_one(tmp_path, "autonomous", "315.00", "15.00")  # 305.00
    try:
        assert case.status == Status.REFUNDED
        assert [r.amount for r in world.stripe.refunds] == [30500]
    finally:
        await world.stop()


async def test_assisted_mode_asks_a_person_above_auto_approve_max(tmp_path: Path) -> None:
    world, case = await cancel_one(tmp_path, "assisted", "315.00", "15.00")
    try:
        assert case.status == Status.PENDING_APPROVAL
        assert "over the auto-approve limit 200.00" in (case.status_reason or "")
        assert world.stripe.refunds == []
    finally:
        await world.stop()
