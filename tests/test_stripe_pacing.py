"""Client-side pacing of Stripe calls: one schedule for all callers, a shared back-off on 429."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from sandbox.http import serving
from sandbox.rate_limit import Limit
from sandbox.stripe_server import StripeSandbox
from services.clients.pacing import DECREASE, PROBE, UNDER, Pacer
from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_gateway import StripeGateway, documented_limit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---- the schedule --------------------------------------------------------------------------


def test_slots_come_at_the_rate_after_the_burst() -> None:
    clock = Clock()
    pacer = Pacer(10, burst=3, clock=clock)
    starts = [pacer._reserve() - 100.0 for _ in range(6)]
    assert starts == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])
    clock.now += 10.0                       # a quiet spell gives back the burst, no more
    starts = [pacer._reserve() - 110.0 for _ in range(4)]
    assert starts == pytest.approx([0.0, 0.0, 0.0, 0.1])


def test_a_refusal_pauses_every_caller_and_slows_the_rate() -> None:
    clock = Clock()
    pacer = Pacer(10, burst=3, clock=clock)
    pacer._reserve()
    pacer.back_off(0.5)
    pacer.back_off(0.2)                     # several refusals: the latest end, not the sum,
    assert pacer.rate == pytest.approx(10 * DECREASE)   # and one slow-down per pause
    first, second = pacer._reserve(), pacer._reserve()
    assert first == pytest.approx(100.5)    # and no burst right after the pause
    assert second - first == pytest.approx(1 / pacer.rate)
    clock.now = 101.0
    pacer.succeeded()
    assert pacer.rate == pytest.approx(5 * (1 + PROBE * 0.5))   # probing up slowly
    clock.now += 100.0
    pacer.succeeded()
    assert pacer.rate == 10                 # never above the configured rate
    assert pacer.back_offs == 2


def test_after_a_refusal_the_rate_is_what_the_server_took() -> None:
    clock = Clock()
    pacer = Pacer(100, burst=1, clock=clock)
    for _ in range(80):                     # 80 calls went through in the last second
        clock.now += 1 / 80
        pacer.succeeded()
    pacer.back_off(0.1)
    assert pacer.rate == pytest.approx(80 * UNDER, rel=0.02)


async def test_callers_waiting_when_a_pause_begins_go_behind_it() -> None:
    pacer = Pacer(20, burst=1)
    began = time.monotonic()
    done: list[float] = []

    async def call() -> None:
        await pacer.acquire()
        done.append(time.monotonic() - began)

    tasks = [asyncio.create_task(call()) for _ in range(4)]
    await asyncio.sleep(0.01)               # the first went at once, three are waiting
    pacer.back_off(0.3)
    await asyncio.gather(*tasks)
    assert done[0] < 0.05
    assert all(t >= 0.3 for t in done[1:])  # none went during the pause
    assert done[3] - done[1] >= 2 / 20 * 0.9  # and after it they still take turns


def test_rates_are_checked_and_the_default_follows_the_key() -> None:
    with pytest.raises(ValueError):
        Pacer(0)
    with pytest.raises(ValueError):
        Pacer(1, burst=0)
    assert documented_limit("sk_test_abc") == 25 and documented_limit("rk_test_x") == 25
    assert documented_limit("sk_live_abc") == 100
    assert StripeGateway("sk_test_abc").pacer.max_rate == 25         # type: ignore[union-attr]
    assert StripeGateway("sk_test_abc", max_requests_per_second=0).pacer is None


# ---- against a rate-limited stand-in -------------------------------------------------------


@pytest.fixture
async def limited() -> AsyncIterator[tuple[StripeSandbox, str]]:
    sandbox = StripeSandbox(rate_limit=Limit(rate=40, burst=10))
    async with serving(sandbox.app()) as server:
        yield sandbox, server.url


async def storm(sandbox: StripeSandbox, gateway: StripeGateway, calls: int,
                callers: int = 8) -> tuple[float, int, int]:
    """`callers` tasks making `calls` look-ups in all; (seconds, failures, 429s)."""
    pis = [sandbox.add_payment(1000 + n, "usd").id for n in range(calls)]
    failures = 0
    queue = list(pis)

    async def caller() -> None:
        nonlocal failures
        while queue:
            pi = queue.pop()
            try:
                await gateway.get_payment(pi)
            except StripeGatewayError as exc:
                assert exc.kind == "rate_limited"
                failures += 1

    began = time.monotonic()
    try:
        await asyncio.gather(*(caller() for _ in range(callers)))
    finally:
        await gateway.close()
    return time.monotonic() - began, failures, sandbox.rate_limited


async def test_paced_at_the_limit_there_is_no_429(limited: tuple[StripeSandbox, str]) -> None:
    sandbox, url = limited
    gateway = StripeGateway("sk_test_x", api_base=url, max_requests_per_second=40,
                            request_burst=2, backoff_base=0.05)
    elapsed, failures, refused = await storm(sandbox, gateway, 100)
    assert (failures, refused) == (0, 0)
    floor = (100 - 10) / 40                 # the stand-in's own best: its burst, then its rate
    assert elapsed <= floor / 0.9           # at least 90 % of the limit on a noisy machine


async def test_paced_above_the_limit_backs_off_together_not_in_a_storm(
    limited: tuple[StripeSandbox, str],
) -> None:
    """The client set 5x too high: the shared back-off and the slowed rate keep the 429s few
    and every call succeeds; without pacing, the same load meets many more 429s."""
    sandbox, url = limited
    paced = StripeGateway("sk_test_x", api_base=url, max_requests_per_second=200,
                          backoff_base=0.05)
    elapsed, failures, refused = await storm(sandbox, paced, 160)
    assert failures == 0
    assert refused <= 160 * 0.2
    assert elapsed <= (160 - 10) / 40 / 0.85

    sandbox.rate_limit = Limit(rate=40, burst=10)      # a full bucket, the count kept
    unpaced = StripeGateway("sk_test_x", api_base=url, max_requests_per_second=0,
                            backoff_base=0.05)
    _, _, refused_total = await storm(sandbox, unpaced, 160)
    assert refused_total - refused > 3 * refused
