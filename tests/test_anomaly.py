"""Anomaly rules on synthetic histories in a real store, and the circuit breaker they trip."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.cli.world import EXAMPLE_POLICIES
from services.deps import Deps
from services.finance.anomaly import (
    DETECTOR,
    REFUND_AMOUNT,
    REFUND_COUNT,
    REPEAT_REFUNDER,
    SKU_SPIKE,
    SOURCE_SPIKE,
    STRIPE_FAILURES,
    Anomaly,
    check,
    poisson_tail,
)
from services.finance.anomaly_log import record, seen_between
from services.finance.breaker import Breaker
from services.quoting.policy import load_policies
from services.refunds.automation import automation_state, set_automation
from services.store.db import Store

TZ = ZoneInfo("Europe/Lisbon")
NOW = datetime.now(TZ).replace(second=0, microsecond=0)  # a resume is stamped with real time
_seq = itertools.count(1)


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Deps]:
    store = await Store(tmp_path / "anomaly.db").open()
    try:
        yield Deps(store=store, book=load_policies(EXAMPLE_POLICIES))
    finally:
        await store.close()


@pytest.fixture
def breaker(svc: Deps) -> Breaker:
    return Breaker(svc)   # one per store, as the app builds it


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


async def add_case(svc: Deps, when: datetime, *, status: str = "refunded",
                   source: str = "checkfront_webhook", customer: str | None = None,
                   skus: tuple[str, ...] = ()) -> int:
    n = next(_seq)
    version = f"v{n}"
    async with svc.store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT INTO cases (booking_id, booking_code, status, currency, cancelled_at, "
            "source, quote_version, customer_hash, created_at, updated_at) "
            "VALUES (?, ?, ?, 'USD', ?, ?, ?, ?, ?, ?)",
            (f"B{n}", f"BK-{n}", status, iso(when), source, version, customer, iso(when),
             iso(when)))
        case_id = int(cursor.lastrowid or 0)
        snapshot = {"booking": {"code": f"BK-{n}", "order": {"items": {"item": [
            {"sku": sku, "total": "10.00"} for sku in skus]}}}}
        await tx.execute(
            "INSERT INTO quotes (case_id, version, created_at, snapshot, quote) "
            "VALUES (?, ?, ?, ?, '{}')", (case_id, version, iso(when), json.dumps(snapshot)))
    return case_id


async def add_refunds(svc: Deps, when: datetime, count: int, amount: int = 8_000,
                      status: str = "succeeded", failure: str | None = None) -> None:
    """`count` refunds spread over the hour before `when`."""
    for i in range(count):
        at = when - timedelta(minutes=55) + timedelta(seconds=i * 3300 // max(count, 1))
        case_id = await add_case(svc, at)
        async with svc.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO executions (case_id, payment_ref, amount, currency, attempt, "
                "idempotency_key, status, stripe_refund_id, failure_reason, called_at, "
                "created_at, updated_at) VALUES (?, ?, ?, 'USD', 1, ?, ?, ?, ?, ?, ?, ?)",
                (case_id, f"pi_{next(_seq)}", amount, f"k-{next(_seq)}", status,
                 f"re_{next(_seq)}", failure, iso(at), iso(at), iso(at)))


async def normal_fortnight(svc: Deps) -> None:
    """14 ordinary days: 1 to 4 refunds of 60 to 110 USD at this hour of each day."""
    for day in range(1, 15):
        await add_refunds(svc, NOW - timedelta(days=day), 1 + day % 4,
                          amount=6_000 + 1_000 * (day % 6))


def kinds(found: list) -> set[str]:
    return {a.kind for a in found}


async def test_a_normal_week_does_not_trip(svc: Deps, breaker: Breaker) -> None:
    await normal_fortnight(svc)
    await add_refunds(svc, NOW, 4, amount=9_000)   # a busy but ordinary hour

    found = await check(svc, NOW, tz=TZ)

    assert [a for a in found if a.blocking] == []
    assert await breaker.trip_if_needed(found) is False
    assert (await automation_state(svc.store)).paused is False


async def test_a_spike_trips_the_breaker_once_with_the_numbers(
    svc: Deps, breaker: Breaker,
) -> None:
    await normal_fortnight(svc)
    await add_refunds(svc, NOW, 30, amount=9_000)

    found = await check(svc, NOW, tz=TZ)

    assert {REFUND_COUNT, REFUND_AMOUNT, SOURCE_SPIKE} <= kinds(found)
    count = next(a for a in found if a.kind == REFUND_COUNT)
    assert count.blocking and count.numbers["observed"] == 30
    assert "30 refunds in the last hour" in count.reason and "averaged 2.5" in count.reason
    amount = next(a for a in found if a.kind == REFUND_AMOUNT)
    assert "2,700.00 USD refunded in the last hour" in amount.reason

    assert await breaker.trip_if_needed(found) is True
    state = await automation_state(svc.store)
    assert state.paused and state.by == DETECTOR and "30 refunds" in state.reason
    assert await breaker.trip_if_needed(found) is False   # already paused: not again
    rows = await svc.store.fetch_all(
        "SELECT actor FROM audit_log WHERE action = 'automation.paused'")
    assert [r["actor"] for r in rows] == [DETECTOR]


async def test_two_checks_at_once_trip_the_breaker_once(svc: Deps, breaker: Breaker) -> None:
    await normal_fortnight(svc)
    await add_refunds(svc, NOW, 30)
    found = await check(svc, NOW, tz=TZ)

    results = await asyncio.gather(breaker.trip_if_needed(found),
                                   breaker.trip_if_needed(found))

    assert sorted(results) == [False, True]
    rows = await svc.store.fetch_all(
        "SELECT actor FROM audit_log WHERE action = 'automation.paused'")
    assert [r["actor"] for r in rows] == [DETECTOR]


async def test_resuming_is_not_undone_by_the_same_spike(svc: Deps, breaker: Breaker) -> None:
    await normal_fortnight(svc)
    await add_refunds(svc, NOW, 30)
    assert await breaker.trip_if_needed(await check(svc, NOW, tz=TZ))

    await set_automation(svc, paused=False, reason="checked: school group", by="maria")
    later = await check(svc, NOW + timedelta(minutes=15), tz=TZ)

    assert [a for a in later if a.blocking] == []
    assert await breaker.trip_if_needed(later) is False
    assert (await automation_state(svc.store)).paused is False


async def test_stripe_failures_in_a_row_block(svc: Deps, breaker: Breaker) -> None:
    await add_refunds(svc, NOW - timedelta(hours=3), 2)
    await add_refunds(svc, NOW, 3, status="failed", failure="expired_or_canceled_card")

    found = await check(svc, NOW, tz=TZ)

    [failures] = [a for a in found if a.kind == STRIPE_FAILURES]
    assert failures.blocking
    assert failures.reason == ("the last 3 refunds sent to Stripe all failed "
                               "(expired_or_canceled_card)")
    assert await breaker.trip_if_needed(found)


async def test_one_success_between_failures_is_not_a_run(svc: Deps) -> None:
    await add_refunds(svc, NOW - timedelta(minutes=30), 2, status="failed", failure="declined")
    await add_refunds(svc, NOW, 1)
    assert STRIPE_FAILURES not in kinds(await check(svc, NOW, tz=TZ))


async def test_repeat_refunder_and_product_spike_are_reported_not_blocking(
    svc: Deps, breaker: Breaker,
) -> None:
    for days_ago in (2, 9, 20):
        await add_case(svc, NOW - timedelta(days=days_ago), customer="c0ffee" * 4)
    await add_case(svc, NOW - timedelta(days=5), customer="beef" * 6)
    await add_case(svc, NOW - timedelta(days=8), skus=("kayak-tour",))
    for hours_ago in range(1, 7):
        await add_case(svc, NOW - timedelta(hours=hours_ago * 3), status="auto_approved",
                       skus=("kayak-tour", "booking-fee"))

    found = await check(svc, NOW, tz=TZ)

    [repeat] = [a for a in found if a.kind == REPEAT_REFUNDER]
    assert not repeat.blocking and repeat.numbers["refunds"] == 3
    assert "c0ffeec0" in repeat.reason and "@" not in repeat.reason
    skus = {a.numbers["sku"]: a for a in found if a.kind == SKU_SPIKE}
    assert set(skus) == {"kayak-tour", "booking-fee"}
    assert not skus["kayak-tour"].blocking
    assert "6 cancellations of kayak-tour in the last 24 hours" in skus["kayak-tour"].reason
    assert await breaker.trip_if_needed(found) is False
    assert (await automation_state(svc.store)).paused is False


async def test_recorded_anomalies_are_listed_for_the_day(svc: Deps) -> None:
    await normal_fortnight(svc)
    await add_refunds(svc, NOW, 30)
    found = await check(svc, NOW, tz=TZ)
    await record(svc.store, found, NOW)
    await record(svc.store, await check(svc, NOW + timedelta(minutes=15), tz=TZ),
                 NOW + timedelta(minutes=15))

    day_start = NOW.replace(hour=0, minute=0)
    listed = await seen_between(svc.store, day_start, day_start + timedelta(days=1))

    assert sorted(a.key for a in listed) == sorted(a.key for a in found)  # same episode
    assert await seen_between(svc.store, day_start - timedelta(days=1), day_start) == []


async def test_an_episode_continues_across_the_hour_and_ends_after_a_gap(svc: Deps) -> None:
    def spike(at: datetime, observed: int) -> Anomaly:
        return Anomaly(REFUND_COUNT, f"{REFUND_COUNT}:{at.strftime('%Y-%m-%dT%H')}", True,
                       f"{observed} refunds in the last hour", {"observed": observed})

    first = datetime(2026, 3, 10, 14, 50, tzinfo=TZ)
    then = first + timedelta(minutes=15)              # 15:05, another hour label
    much_later = then + timedelta(hours=2)

    assert [a.key for a in await record(svc.store, [spike(first, 30)], first)] == [
        "refund_count:2026-03-10T14"]
    assert [a.key for a in await record(svc.store, [spike(then, 34)], then)] == [
        "refund_count:2026-03-10T14"]
    assert [a.key for a in await record(svc.store, [spike(much_later, 9)], much_later)] == [
        "refund_count:2026-03-10T17"]

    day = await seen_between(svc.store, first.replace(hour=0, minute=0),
                             first.replace(hour=23, minute=59))
    assert [(a.key, a.numbers["observed"]) for a in day] == [
        ("refund_count:2026-03-10T14", 34), ("refund_count:2026-03-10T17", 9)]


def test_poisson_tail_matches_the_closed_form() -> None:
    for observed, rate in ((0, 3.0), (1, 0.5), (5, 2.4), (12, 1.0), (30, 2.4)):
        exact = 1 - sum(math.exp(-rate) * rate**k / math.factorial(k) for k in range(observed))
        assert math.isclose(poisson_tail(observed, rate), exact, rel_tol=1e-6, abs_tol=1e-15)
    assert poisson_tail(60, 2.0) < 1e-40
