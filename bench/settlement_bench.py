"""Settlement benchmark: the settlement pass of one business day with 10,000 refunds.

    python bench/settlement_bench.py [--refunds N] [--rounds R]

The pass (`services.finance.settlement.settle_day`, as `reconcile_day(settle=True)` runs it)
reads the Stripe stand-in over HTTP on 127.0.0.1 (a child process) through the real
`StripeGateway` and the official client: the day's refund balance transactions expanded to
their charges' fees, the day's refund failures, the payouts since the oldest unpaid refund and
each payout's refund transactions, every list in pages of 100. The stand-in holds one payment
per refund (its charge transaction with its fee), the refunds spread over the day, 0.5 % of
them held out of every payout (flagged as missing from their payout), and the automatic payouts
made ten days after.

The floor, measured in the same run against the same stand-in: the same requests (same
parameters, pages of 100, `starting_after`) with plain httpx and `json.loads`, nothing else done
with them. Floor and pass take turns, `--rounds` times each; the best of each is kept. It also
prints the Stripe calls the pass made against the refunds it settled (one call per refund is
what a look-up per refund would cost). The last line: the pass beside the floor, their ratio and
the target (pass <= 1.5 x floor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.clients.stripe_balance import REFUND_EXPANSION  # noqa: E402
from services.clients.stripe_gateway import StripeGateway  # noqa: E402
from services.finance.days import day_window  # noqa: E402
from services.finance.settlement import settle_day  # noqa: E402
from services.store.db import Store  # noqa: E402

DAY = date(2026, 1, 15)
TZ = ZoneInfo("Europe/Lisbon")
PAGE = 100
KEY = "sk_test_bench"
TARGET = 1.5
HELD_EVERY = 200   # one refund in this many is held out of every payout


def serve_stand_in(refunds: int, lo: int, hi: int, now: int, conn: Any) -> None:
    """Child process: the stand-in with one paid charge and one refund per index."""
    from sandbox.http import start
    from sandbox.stripe_objects import Refund
    from sandbox.stripe_server import StripeSandbox

    async def main() -> None:
        sandbox = StripeSandbox(clock=lambda: now, automatic_payouts=False)
        for i in range(refunds):
            created = hi - 1 - (i * (hi - lo - 1)) // max(refunds, 1)
            amount = 1_000 + (i % 500) * 10
            pi = sandbox.add_payment(10_000, "usd", created=created - 3 * 86_400)
            charge = sandbox.charges[str(pi.latest_charge)]
            refund = Refund(id=f"re_bench{i:09d}", amount=amount, currency="usd",
                            charge=charge.id, payment_intent=pi.id, status="succeeded",
                            reason=None, metadata={}, created=created, seq=i)
            sandbox._refunds[refund.id] = refund   # bulk load, as reconcile_bench does
            charge.amount_refunded = amount
            refund.balance_transaction = sandbox.balance.refunded(refund).id
            if i % HELD_EVERY == 7:
                sandbox.hold_from_payouts(refund.id)
        sandbox.run_payouts(now)
        server = await start(sandbox.app())
        conn.send(server.url)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        await server.stop()

    asyncio.run(main())


async def raw_pages(url: str, lo: int, hi: int) -> int:
    """The floor: the pass's requests with plain httpx and `json.loads`; returns the pages."""
    pages = 0
    async with httpx.AsyncClient(base_url=url, timeout=120.0,
                                 headers={"Authorization": f"Bearer {KEY}"}) as client:

        async def walk(path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
            nonlocal pages
            items: list[dict[str, Any]] = []
            query = dict(params)
            while True:
                response = await client.get(path, params=query)
                response.raise_for_status()
                page = json.loads(response.content)
                pages += 1
                items += page["data"]
                if not page["has_more"] or not page["data"]:
                    return items
                query["starting_after"] = page["data"][-1]["id"]

        window = {"created[gte]": lo, "created[lt]": hi, "limit": PAGE}
        day = await walk("/v1/balance_transactions",
                         {**window, "type": "refund", "expand[0]": REFUND_EXPANSION[0]})
        await walk("/v1/balance_transactions", {**window, "type": "refund_failure"})
        oldest = min(item["created"] for item in day)
        payouts = await walk("/v1/payouts", {"created[gte]": oldest, "limit": PAGE})
        wanted = {item["source"]["id"] for item in day}
        for payout in sorted(payouts, key=lambda p: (p["created"], p["id"])):
            if not wanted:
                break
            for item in await walk("/v1/balance_transactions",
                                   {"payout": payout["id"], "type": "refund", "limit": PAGE}):
                wanted.discard(item["source"])
    return pages


async def run(refunds: int, rounds: int) -> tuple[float, float, int, int, int]:
    start, end = day_window(DAY, TZ)
    lo, hi = int(start.timestamp()), int(end.timestamp())
    now = end + timedelta(days=10)
    parent_end, child_end = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=serve_stand_in, args=(refunds, lo, hi, int(now.timestamp()), child_end),
        daemon=True)
    child.start()
    url = await asyncio.get_running_loop().run_in_executor(None, parent_end.recv)
    gateway = StripeGateway(KEY, api_base=url, timeout=120.0, max_requests_per_second=0)
    times: list[float] = []
    floors: list[float] = []
    pages = settled = missing = 0
    try:
        with tempfile.TemporaryDirectory() as folder:
            store = await Store(Path(folder) / "bench.db").open()
            try:
                for _ in range(rounds):
                    began = time.perf_counter()
                    pages = await raw_pages(url, lo, hi)
                    floors.append(time.perf_counter() - began)
                    began = time.perf_counter()
                    result = await settle_day(gateway, store, DAY, (start, end), now)
                    times.append(time.perf_counter() - began)
                    figures = result.figures["USD"]
                    settled, missing = figures.refunds, figures.missing_from_payout
                    assert settled == refunds and figures.in_payout == refunds - missing, figures
            finally:
                await store.close()
    finally:
        await gateway.close()
        parent_end.send("stop")
        child.join(10)
    return min(times), min(floors), pages, settled, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refunds", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of the floor and of the pass each (best kept)")
    args = parser.parse_args()
    best, floor, pages, settled, missing = asyncio.run(run(args.refunds, max(1, args.rounds)))
    print(f"{settled:,} refunds on {DAY} ({TZ.key}) settled, {missing:,} missing from their "
          f"payout; best of {args.rounds}")
    print(f"Stripe calls: {pages:,} list pages for {settled:,} refunds "
          f"({pages / max(settled, 1):.3f} a refund; a look-up per refund: 1.000)")
    ratio = best / floor
    verdict = "OK" if ratio <= TARGET else "MISSED"
    print(f"settle {settled:,} refunds: bot {best:.2f} s  floor {floor:.2f} s  "
          f"ratio {ratio:.2f}  target <= {TARGET}  {verdict}")


if __name__ == "__main__":
    main()
