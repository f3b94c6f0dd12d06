"""Reconciliation benchmark: one business day with 100,000 refunds through `reconcile_day`.

    python bench/reconcile_bench.py [--refunds N] [--source fake|stand-in|both]

Both sources drive the real code path (`services.reconcile.reconcile_day`, the real SQLite
ledger with one `executions` row per bot refund):

- fake: an async iterator serving generated `StripeRefund` objects page by page (100 a page),
  none of them kept; it measures our side alone.
- stand-in: the Stripe stand-in over HTTP on 127.0.0.1 in a child process, read through the
  real `StripeGateway` and the official client (list API, pages of 100, `starting_after`).

The mix: ~97% matched, 1% external, 0.5% failed, 0.5% amount mismatch, 0.5% ledger rows Stripe
does not have. Checkfront is not consulted (one call per refunded booking is Checkfront's
limit, not ours). Prints elapsed seconds and the peak of Python allocations (tracemalloc)
during a re-run of the same day (tracemalloc slows Python down, so the time printed first is
from the first run, untraced), setup excluded.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.clients.stripe_errors import StripeGatewayError  # noqa: E402
from services.clients.stripe_gateway import StripeGateway  # noqa: E402
from services.clients.stripe_records import StripeRefund  # noqa: E402
from services.deps import Deps  # noqa: E402
from services.finance.days import day_window  # noqa: E402
from services.finance.reconcile import reconcile_day  # noqa: E402
from services.quoting.policy import load_policies  # noqa: E402
from services.store.db import Store  # noqa: E402

DAY = date(2026, 1, 15)
TZ = ZoneInfo("Europe/Lisbon")
CASES = 1_000
PAGE = 100


@dataclass(frozen=True)
class Plan:
    """Which synthetic refund is which: a pure function of its index."""

    refunds: int
    lo: int
    hi: int

    def created(self, i: int) -> int:
        return self.hi - 1 - (i * (self.hi - self.lo - 1)) // max(self.refunds, 1)  # newest first

    @staticmethod
    def status(i: int) -> str:
        return "failed" if i % 200 == 7 else "succeeded"

    @staticmethod
    def external(i: int) -> bool:
        return i % 100 == 3

    @staticmethod
    def amount(i: int) -> int:
        return 1_000 + (i % 500) * 10

    @staticmethod
    def ledger_amount(i: int) -> int:
        return Plan.amount(i) + (5 if i % 200 == 11 else 0)

    def refund(self, i: int) -> StripeRefund:
        return StripeRefund(
            id=f"re_bench{i:09d}", amount=self.amount(i), currency="USD",
            status=self.status(i), payment_intent=f"pi_bench{i:09d}", charge=f"ch_bench{i:09d}",
            failure_reason="declined" if self.status(i) == "failed" else None,
            metadata={} if self.external(i) else {"case_id": str(1 + i % CASES)},
            created=self.created(i))


class FakeStripe:
    """Serves the plan's refunds as the gateway's listing would, a page at a time."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    async def iter_refunds(self, *, created_gte: int, created_lt: int,
                           page_size: int = PAGE) -> AsyncIterator[StripeRefund]:
        for first in range(0, self.plan.refunds, page_size):
            await asyncio.sleep(0)  # a page boundary: let the loop breathe as HTTP would
            for i in range(first, min(first + page_size, self.plan.refunds)):
                refund = self.plan.refund(i)
                if created_gte <= refund.created < created_lt:
                    yield refund

    async def get_refund(self, refund_id: str) -> StripeRefund:
        index = int(refund_id.removeprefix("re_bench")) if refund_id.startswith("re_bench") \
            else -1
        if not 0 <= index < self.plan.refunds:
            raise StripeGatewayError("not_found", f"No such refund: '{refund_id}'")
        return self.plan.refund(index)

    async def refunds_for(self, payment_ref: str) -> list[StripeRefund]:
        return []


async def build_ledger(store: Store, plan: Plan, missing: int) -> None:
    """One case per 100 refunds; one execution per bot refund; `missing` rows Stripe lacks."""
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    async with store.transaction() as tx:
        await tx.executemany(
            "INSERT INTO cases (id, booking_id, booking_code, status, currency, cancelled_at, "
            "source, created_at, updated_at) VALUES (?, ?, ?, 'refunded', 'USD', ?, "
            "'checkfront_webhook', ?, ?)",
            [(n, str(n), f"BK-{n:05d}", now, now, now) for n in range(1, CASES + 1)])

        def rows() -> Any:
            for i in range(plan.refunds):
                if plan.external(i):
                    continue
                at = datetime.fromtimestamp(plan.created(i), UTC).isoformat(
                    timespec="microseconds")
                yield (1 + i % CASES, f"pi_bench{i:09d}", plan.ledger_amount(i), i,
                       f"bench-{i}", "failed" if plan.status(i) == "failed" else "succeeded",
                       f"re_bench{i:09d}", at, at, at)
            for m in range(missing):
                at = datetime.fromtimestamp(plan.created(m * 97 % plan.refunds),
                                            UTC).isoformat(timespec="microseconds")
                yield (1 + m % CASES, f"pi_gone{m:07d}", 2_000, m, f"bench-gone-{m}",
                       "succeeded", f"re_gone{m:07d}", at, at, at)

        await tx.executemany(
            "INSERT INTO executions (case_id, payment_ref, amount, currency, attempt, "
            "idempotency_key, status, stripe_refund_id, called_at, created_at, updated_at) "
            "VALUES (?, ?, ?, 'USD', ?, ?, ?, ?, ?, ?, ?)", rows())


def serve_stand_in(plan: Plan, conn: Any) -> None:
    """Child process: the Stripe stand-in holding the plan's refunds, on 127.0.0.1."""
    from sandbox.http import start
    from sandbox.stripe_objects import Refund
    from sandbox.stripe_server import StripeSandbox

    async def main() -> None:
        sandbox = StripeSandbox()
        held = sandbox._refunds  # bulk load: 100,000 POSTs would measure setup, not listing
        for i in range(plan.refunds):
            r = plan.refund(i)
            held[r.id] = Refund(id=r.id, amount=r.amount, currency="usd", charge=str(r.charge),
                                payment_intent=r.payment_intent, status=r.status, reason=None,
                                metadata=dict(r.metadata), created=r.created,
                                seq=plan.refunds - i, failure_reason=r.failure_reason)
        server = await start(sandbox.app())
        conn.send(server.url)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        await server.stop()

    asyncio.run(main())


async def run_once(
    source: str, plan: Plan, missing: int
) -> tuple[float, float, int, dict[str, int]]:
    with tempfile.TemporaryDirectory() as folder:
        store = await Store(Path(folder) / "bench.db").open()
        await build_ledger(store, plan, missing)
        child = None
        gateway: Any
        if source == "fake":
            gateway = FakeStripe(plan)
        else:
            parent_end, child_end = multiprocessing.Pipe()
            child = multiprocessing.get_context("spawn").Process(
                target=serve_stand_in, args=(plan, child_end), daemon=True)
            child.start()
            url = await asyncio.get_running_loop().run_in_executor(None, parent_end.recv)
            gateway = StripeGateway("sk_test_bench", api_base=url, timeout=60.0)
        svc = Deps(store=store, book=load_policies(REPO / "examples" / "policies.yml"),
                       stripe=cast(StripeGateway, gateway))
        try:
            began = time.perf_counter()
            run = await reconcile_day(svc, DAY, TZ, now=datetime.now(UTC))
            elapsed = time.perf_counter() - began
            tracemalloc.start()  # a re-run of the day (same path) under tracemalloc
            began = time.perf_counter()
            rerun = await reconcile_day(svc, DAY, TZ, now=datetime.now(UTC))
            traced = time.perf_counter() - began
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert rerun.counts == run.counts
        finally:
            if child is not None:
                await gateway.close()
                parent_end.send("stop")
                child.join(10)
            await store.close()
        return elapsed, traced, peak, run.counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refunds", type=int, default=100_000)
    parser.add_argument("--source", choices=("fake", "stand-in", "both"), default="both")
    args = parser.parse_args()
    start, end = day_window(DAY, TZ)
    plan = Plan(args.refunds, int(start.timestamp()), int(end.timestamp()))
    missing = max(1, args.refunds // 200)
    sources = ("fake", "stand-in") if args.source == "both" else (args.source,)
    print(f"{args.refunds:,} refunds on {DAY} ({TZ.key}), {missing:,} ledger rows missing "
          "in Stripe")
    for source in sources:
        elapsed, traced, peak, counts = asyncio.run(run_once(source, plan, missing))
        shown = ", ".join(f"{k} {v:,}" for k, v in counts.items() if v)
        print(f"{source:9s} {elapsed:8.2f} s   re-run under tracemalloc {traced:7.2f} s, "
              f"peak {peak / 2**20:6.1f} MiB   {shown}")
        assert sum(counts.values()) - counts.get("checkfront_not_updated", 0) == \
            args.refunds + missing, counts


if __name__ == "__main__":
    main()
