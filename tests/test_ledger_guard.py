"""The ledger-first over-refund guard: under one exclusive section per booking, what a case plans
plus what the ledger holds for the booking across all its cases must fit what was paid and
what Stripe shows unrefunded. Two cases, two processes, two clicks: one refund."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.app import Bot
from bot.cli.world import REPO, World
from sandbox.stripe_faults import Fault
from services.quoting.booking import BookingSnapshot
from services.quoting.booking_read import parse_snapshot
from services.refunds import cases, guard, ledger
from services.refunds.execution import execute
from services.refunds.ledger import Execution, ExecutionStatus
from services.refunds.models import Case, Status
from tests.money_helpers import HALF, all_cases, legacy_duplicate, refund_posts

pytestmark = pytest.mark.both_backends


async def test_two_cases_two_processes_two_clicks_make_one_refund(world: World) -> None:
    world.paid_booking("TWICE-1", HALF)
    await world.cancel("TWICE-1")
    await world.settle()
    [first] = await all_cases(world)
    assert first.status == Status.PENDING_APPROVAL and first.refund_amount == 41000
    second = await legacy_duplicate(world, first)
    await cases.approve(world.bot.svc.store, first.id, by="maria")
    await cases.approve(world.bot.svc.store, second.id, by="joe")
    # two more processes on the same database, patient enough to wait for a slow Stripe
    patient = world.bot.settings.model_copy(update={"stripe_timeout_seconds": 10.0})
    this, other = await Bot.create(patient), await Bot.create(patient)
    # the first refund call is held at Stripe before it executes, so the second execution
    # sees Stripe's full amount: only our own ledger knows the first is under way
    world.stripe.inject(Fault("timeout", after_processing=False, delay=2.0))
    try:
        one = asyncio.create_task(execute(this.svc, first.id, actor="maria"))
        for _ in range(500):
            if refund_posts(world) or any(r.called_at for r in await ledger.executed(
                    world.bot.svc.store, first.id)):
                break
            await asyncio.sleep(0.01)
        two = await execute(other.svc, second.id, actor="joe")
        one_done = await one
    finally:
        await this.close()
        await other.close()
    await world.settle()

    assert [r.amount for r in world.stripe.refunds] == [41000]
    assert one_done.status == Status.REFUNDED
    assert two.status == Status.PENDING_APPROVAL
    assert f"case {first.id}" in (two.status_reason or "")
    rows = await world.bot.svc.store.fetch_all(
        "SELECT status FROM executions WHERE case_id = ?", (second.id,))
    assert [r["status"] for r in rows] in ([], ["rejected"])


async def test_the_guard_counts_every_case_of_the_booking_against_what_was_paid(
    world: World,
) -> None:
    world.paid_booking("TWICE-2", HALF)
    await world.cancel("TWICE-2")
    await world.settle()
    [first] = await all_cases(world)
    second = await legacy_duplicate(world, first)
    await cases.approve(world.bot.svc.store, first.id, by="maria", amount=60000,
                        reason="goodwill")
    done = await execute(world.bot.svc, first.id, actor="maria")
    assert done.status == Status.REFUNDED
    await cases.approve(world.bot.svc.store, second.id, by="joe", amount=60000,
                        reason="goodwill")

    held = await execute(world.bot.svc, second.id, actor="joe")

    assert held.status == Status.PENDING_APPROVAL
    assert [r.amount for r in world.stripe.refunds] == [60000]


# --- the rule itself, on rows as the ledger holds them ---------------------------------------

def snapshot_and_case() -> tuple[BookingSnapshot, Case]:
    """The example booking: pi_3QxKayak0001 paid 100.00, pi_3QxKayak0002 paid 152.00."""
    raw = json.loads((REPO / "examples" / "booking.json").read_text())
    snapshot = parse_snapshot(raw)
    case = Case(id=7, booking_id="157", booking_code="KMVQ-261124", status=Status.EXECUTING,
                currency="USD", cancelled_at="then", waiver=None, source="cli",
                requested_by=None, quote_version="v", refund_amount=15200,
                approved_amount=15200, status_reason=None, customer_hash=None,
                created_at="then", updated_at="then", revision=1, booking_key="KMVQ-261124")
    return snapshot, case


def row(row_id: int, case_id: int, amount: int, status: str, *, ref: str = "pi_3QxKayak0002",
        refund_id: str | None = None) -> Execution:
    return Execution(row_id, case_id, ref, amount, "USD", 1, f"key-{row_id}",
                     ExecutionStatus(status), refund_id, None, None, "then", "then")


def test_what_was_paid_bounds_every_row_on_the_payment() -> None:
    snapshot, case = snapshot_and_case()
    sending = [row(3, 7, 5200, "planned")]
    earlier = [row(1, 7, 10000, "succeeded", refund_id="re_1"), *sending]
    left = {"pi_3QxKayak0002": 15200}

    assert guard.check(case, snapshot, earlier, sending, left) is None
    refused = guard.check(case, snapshot, [row(2, 7, 10001, "pending", refund_id="re_2"),
                                           *earlier], sending, left)
    assert refused is not None and "over the 152.00 USD paid" in refused.reason


def test_another_case_under_way_or_not_counted_by_the_snapshot_stops_the_refund() -> None:
    snapshot, case = snapshot_and_case()
    sending = [row(3, 7, 5000, "planned")]
    left = {"pi_3QxKayak0002": 15200}

    under_way = guard.check(case, snapshot, [row(1, 8, 5000, "planned"), *sending], sending,
                            left)
    assert under_way is not None and "case 8 is refunding 50.00 USD" in under_way.reason
    given_up = [row(1, 8, 5000, "rejected"), row(2, 8, 5000, "failed", refund_id="re_f")]
    assert guard.check(case, snapshot, [*given_up, *sending], sending, left) is None


def test_stripe_must_show_what_is_sent_as_unrefunded() -> None:
    snapshot, case = snapshot_and_case()
    sending = [row(3, 7, 5000, "planned")]

    refused = guard.check(case, snapshot, sending, sending, {"pi_3QxKayak0002": 4999})

    assert refused is not None
    assert refused.reason == ("Stripe shows only 49.99 USD unrefunded on pi_3QxKayak0002, "
                              "but 50.00 USD was planned")
