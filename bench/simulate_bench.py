"""Policy simulator benchmark: 10,000 stored cases replayed under a proposed policy file.

    python bench/simulate_bench.py [--cases N] [--rounds R]

Setup (not timed): a real SQLite store holding N cases, each with its quote and the booking
snapshot it was quoted from, as `cases.insert` writes them (one to three lines, kayak and bike
tours, charters, default-policy products, notice from 2 to 200 hours, a tenth in EUR while the
policy file is in USD, some refunded by hand-made execution rows). The proposed file is the
example one with the 24-48h tier at 75% and a lower auto-approve limit, so many refunds and
decisions change.

The bot: `services.finance.simulate.simulate` over every case: pages read from the store's
read-only connection, each stored quote and snapshot parsed, re-quoted by `build_quote`,
decided by the opening rules, tallied per product and policy, a CSV row per change.

The floor, measured in the same run: the same snapshots, already in memory as the JSON text
the store holds, re-quoted with the live policy file in a plain loop (`json.loads`,
`parse_snapshot`, `build_quote`) and nothing else. Floor and bot take turns, `--rounds` times
each; the best time of each is kept (the machine is shared and noisy).

The last lines: the bot beside the floor, their ratio, and the issue's target (the bot under
5 s for 10,000 cases).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.deps import Deps  # noqa: E402
from services.finance.simulate import read_policies, simulate  # noqa: E402
from services.quoting.booking_read import parse_snapshot  # noqa: E402
from services.quoting.engine import build_quote  # noqa: E402
from services.quoting.policy import load_policies  # noqa: E402
from services.refunds import cases  # noqa: E402
from services.store.db import Store, now_iso  # noqa: E402

LIVE = REPO / "examples" / "policies.yml"
CASES = 10_000
TARGET_SECONDS = 5.0
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
PRODUCTS = [("kayak-tour", "105.00", "5.00"), ("bike-tour", "60.00", "0"),
            ("private-charter", "900.00", "0"), ("sunset-cruise", "80.00", "0"),
            ("kayak-tour", "420.00", "20.00"), ("photo-package", "25.00", "0"),
            ("booking-fee", "5.00", "0")]


def unix(moment: datetime) -> str:
    return str(int(moment.timestamp()))


def snapshot_of(n: int) -> tuple[dict[str, Any], datetime, str]:
    """Case n's booking, its cancellation time and currency: a pure function of n."""
    cancelled = START + timedelta(minutes=7 * n)
    currency = "EUR" if n % 10 == 3 else "USD"
    lines = []
    for k in range(1 + n % 3):
        sku, total, tax = PRODUCTS[(n + 3 * k) % len(PRODUCTS)]
        start = cancelled + timedelta(hours=2 + (n * 13 + k * 29) % 199)
        lines.append({"@attributes": {"item_id": str(1 + k), "line_id": str(k + 1)},
                      "start_date": unix(start), "end_date": unix(start + timedelta(hours=3)),
                      "sku": sku, "name": sku, "status": "STOP", "total": total,
                      "tax_total": tax, "qty": "1"})
    order_total = sum(int(line["total"].replace(".", "")) for line in lines)
    total_text = f"{order_total // 100}.{order_total % 100:02d}"
    raw = {"booking": {
        "@attributes": {"booking_id": str(10_000 + n)}, "status": "STOP",
        "code": f"BENCH-{n:06d}", "created_date": unix(cancelled - timedelta(days=20)),
        "customer": {"name": "Guest"},
        "order": {"@attributes": {"currency_id": currency}, "total": total_text,
                  "paid_total": total_text, "items": {"item": lines}}},
        "transactions": [{"transaction_id": f"pi_bench_{n}", "status": "PAID",
                          "amount": total_text, "gateway_id": "Stripe",
                          "date": unix(cancelled - timedelta(days=20))}]}
    return raw, cancelled, currency


async def seed(store: Store, book: Any, count: int) -> None:
    for first in range(0, count, 1000):
        async with store.transaction() as tx:
            for n in range(first, min(first + 1000, count)):
                raw, cancelled, currency = snapshot_of(n)
                quote = build_quote(parse_snapshot(raw, default_currency=currency), book,
                                    cancelled)
                case = await cases.insert(
                    tx, booking_id=str(10_000 + n), booking_code=f"BENCH-{n:06d}",
                    currency=currency, quote=quote, source="cli", requested_by=None,
                    customer_hash=None, snapshot=raw)
                if n % 4 == 0 and quote.total_refund > 0:   # refunded: an execution row
                    now = now_iso()
                    await tx.execute(
                        "INSERT INTO executions (case_id, payment_ref, amount, currency, "
                        "attempt, idempotency_key, status, stripe_refund_id, created_at, "
                        "updated_at) VALUES (?, ?, ?, ?, 1, ?, 'succeeded', ?, ?, ?)",
                        (case.id, f"pi_bench_{n}", quote.total_refund, currency,
                         f"bench-{n}", f"re_bench_{n}", now, now))


def proposed_text() -> str:
    data = yaml.safe_load(LIVE.read_text(encoding="utf-8"))
    data["auto_approve_max"] = "150.00"
    data["policies"][0]["tiers"] = [{"min_notice_hours": 48, "refund_percent": 100},
                                    {"min_notice_hours": 24, "refund_percent": 75},
                                    {"min_notice_hours": 0, "refund_percent": 0}]
    return yaml.safe_dump(data, sort_keys=False)


def floor(stored: list[tuple[str, str, str]], book: Any) -> tuple[float, int]:
    """The same snapshots re-quoted with the live file in a plain loop; (seconds, total)."""
    began = time.perf_counter()
    total = 0
    for text, at, currency in stored:
        snapshot = parse_snapshot(json.loads(text), default_currency=currency)
        total += build_quote(snapshot, book, datetime.fromisoformat(at)).total_refund
    return time.perf_counter() - began, total


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=CASES)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    live = load_policies(LIVE)
    proposed = read_policies(proposed_text(), "proposed.yml")
    with tempfile.TemporaryDirectory() as folder:
        store = await Store(Path(folder) / "bench.db").open()
        try:
            began = time.perf_counter()
            await seed(store, live, args.cases)
            print(f"setup: {args.cases:,} cases stored in {time.perf_counter() - began:.1f} s")
            svc = Deps(store=store, book=live)
            stored = [(r["snapshot"], r["cancelled_at"], r["currency"])
                      for r in await store.read_all(
                          "SELECT q.snapshot, c.cancelled_at, c.currency FROM cases c JOIN "
                          "quotes q ON q.case_id = c.id AND q.version = c.quote_version")]
            bot_best = floor_best = float("inf")
            result = None
            for _ in range(args.rounds):
                seconds, _ = floor(stored, live)
                floor_best = min(floor_best, seconds)
                began = time.perf_counter()
                result = await simulate(svc, proposed)
                bot_best = min(bot_best, time.perf_counter() - began)
        finally:
            await store.close()
    assert result is not None and result.cases == args.cases, "every case simulated"
    for currency, tally in sorted(result.totals.items()):
        print(f"{currency}: {tally.cases:,} cases, {tally.changed:,} refunds change, "
              f"auto-approve {tally.rate(tally.auto_before, tally.cases)} -> "
              f"{tally.rate(tally.auto_after, tally.cases)}")
    per_second = args.cases / bot_best
    ratio = bot_best / floor_best
    ok = "OK" if bot_best < TARGET_SECONDS * args.cases / CASES else "MISSED"
    print(f"floor (plain re-quote loop, live file): {floor_best:.2f} s "
          f"({args.cases / floor_best:,.0f} cases/s)")
    print(f"simulate {args.cases:,} stored cases: bot {bot_best:.2f} s ({per_second:,.0f}/s)  "
          f"floor {floor_best:.2f} s  ratio {ratio:.2f}  target bot < "
          f"{TARGET_SECONDS * args.cases / CASES:.1f} s  {ok}")


if __name__ == "__main__":
    asyncio.run(main())
