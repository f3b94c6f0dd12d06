"""The reconciliation's look-ups of ledger rows Stripe's listing did not return: several in
flight at once (bounded), settled in the ledger's order whatever order the answers come in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_gateway import StripeGateway
from services.clients.stripe_records import StripeRefund
from services.deps import Deps
from services.finance import reconcile
from services.finance.days import day_window
from services.finance.reconcile import reconcile_day
from services.finance.runs import MISSING_IN_STRIPE
from services.quoting.policy import load_policies
from services.store.db import open_store

pytestmark = pytest.mark.both_backends

REPO = Path(__file__).resolve().parent.parent
DAY = date(2026, 1, 15)
TZ = ZoneInfo("Europe/Lisbon")
ROWS = 20


class SlowStripe:
    """Lists nothing; each look-up takes a while, later ids answer sooner; one is unreadable."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.asked: list[str] = []

    async def iter_refunds(self, *, created_gte: int, created_lt: int,
                           page_size: int = 100) -> AsyncIterator[StripeRefund]:
        for refund in ():
            yield refund

    async def get_refund(self, refund_id: str) -> StripeRefund:
        self.asked.append(refund_id)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            n = int(refund_id.removeprefix("re_gone"))
            await asyncio.sleep(0.002 * (ROWS - n))
            if n == 7:
                raise StripeGatewayError("unavailable", "Stripe is down")
            raise StripeGatewayError("not_found", f"No such refund: '{refund_id}'")
        finally:
            self.in_flight -= 1

    async def refunds_for(self, payment_ref: str) -> list[StripeRefund]:
        return []


async def test_lookups_run_a_few_at_a_time_and_settle_in_ledger_order(store_url: str) -> None:
    store = await open_store(store_url).open()
    start, _ = day_window(DAY, TZ)
    at = (start + timedelta(hours=10)).astimezone(UTC).isoformat(timespec="microseconds")
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO cases (id, booking_id, booking_code, status, currency, cancelled_at, "
            "source, created_at, updated_at) VALUES (1, 'B1', 'BK-1', 'refunded', 'USD', ?, "
            "'cli', ?, ?)", (at, at, at))
        rows: list[Any] = [(1, f"pi_{n}", 1000 + n, n, f"key-{n}", f"re_gone{n:02d}", at, at, at)
                           for n in range(ROWS)]
        await tx.executemany(
            "INSERT INTO executions (case_id, payment_ref, amount, currency, attempt, "
            "idempotency_key, status, stripe_refund_id, called_at, created_at, updated_at) "
            "VALUES (?, ?, ?, 'USD', ?, ?, 'succeeded', ?, ?, ?, ?)", rows)
    stripe = SlowStripe()
    svc = Deps(store=store, book=load_policies(REPO / "examples" / "policies.yml"),
               stripe=cast(StripeGateway, stripe))
    try:
        run = await reconcile_day(svc, DAY, TZ, now=datetime.now(UTC), check_checkfront=False)
    finally:
        await store.close()

    assert 1 < stripe.most <= reconcile.LOOKUPS_AT_ONCE
    assert sorted(stripe.asked) == [f"re_gone{n:02d}" for n in range(ROWS)]
    missing = [d.refund_id for d in run.discrepancies if d.kind == MISSING_IN_STRIPE]
    assert missing == [f"re_gone{n:02d}" for n in range(ROWS) if n != 7]  # ledger order
    assert run.counts[MISSING_IN_STRIPE] == ROWS - 1
    assert run.totals["USD"]["ledger"] == sum(1000 + n for n in range(ROWS) if n != 7)
    assert "could not look up re_gone07 at Stripe (unavailable)" in run.notes
