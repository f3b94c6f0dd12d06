"""Quote engine benchmark: quotes per second on one core, against plain arithmetic.

    python bench/quote_bench.py [--seconds S] [--rounds N]

The engine: what the bot does per case minus the store, on `examples/booking.json` with
`examples/policies.yml` (the demo's files): `parse_snapshot(raw, default_currency=...)`,
`build_quote(snapshot, book, cancelled_at, waiver=..., risk_flags=())` and `quote.to_dict()`
(the dict written into the audit row). The cancellation time and waiver rotate through four
cases so every rule path the example can take is timed: a full-refund tier, the 50% tier,
the zero tier and a WEATHER waiver.

The floor: the same arithmetic in plain Python, written by hand on pre-parsed plain data (no
objects, no validation, no serialising): each line's policy lookup, its tier by notice, the
per-line percentages of amount and tax rounded half up in integers, the largest unwaived fee,
the refund capped by what was paid, newest-payment-first allocation and the decision. The
benchmark checks that the floor's refunds and decisions equal the engine's before timing.

Both run in this process, one after the other in alternating rounds, timed by the process's
CPU time (one core, and blind to the time other processes take on a shared machine); each
figure is the best round. The last lines print the engine's rate beside the floor's, the
ratio, and the issue's absolute target (>= 20,000 quotes/s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.quoting.booking_read import parse_snapshot  # noqa: E402
from services.quoting.engine import build_quote  # noqa: E402
from services.quoting.policy import PolicyBook, load_policies  # noqa: E402

TARGET = 20_000  # quotes/s, issue 10
START = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # the example's departure
CASES: tuple[tuple[datetime, str | None], ...] = (
    (START - timedelta(hours=53), None),  # 48h+ tier: 100%
    (START - timedelta(hours=30), None),  # 24h+ tier: 50%
    (START - timedelta(hours=10), None),  # 0h tier: nothing
    (START - timedelta(hours=10), "WEATHER"),  # waiver: 100%, fee waived
)


def engine_quote(raw: dict[str, Any], book: PolicyBook, cancelled_at: datetime,
                 waiver: str | None) -> dict[str, Any]:
    snapshot = parse_snapshot(raw, default_currency=book.currency)
    return build_quote(snapshot, book, cancelled_at, waiver=waiver, risk_flags=()).to_dict()


# The floor's plain data: what a hand-written quote would read once and keep.
PlainPolicy = tuple[frozenset[str], frozenset[str], tuple[tuple[int, int], ...],
                    frozenset[str], int, bool, dict[str, int]]


def plain_data(raw: dict[str, Any], book: PolicyBook) -> dict[str, Any]:
    """The example booking and policy book as ints, strings and tuples (setup, not timed).

    Percents are whole numbers in the example's policies; the floor relies on that."""
    def minor(text: Any) -> int:
        whole, _, frac = str(text).partition(".")
        return int(whole + frac.ljust(2, "0"))

    policies: list[PlainPolicy] = []
    for p in book.policies:
        tiers = tuple(sorted(((int(t.min_notice_hours) * 3600, int(t.refund_percent))
                              for t in p.tiers), reverse=True))
        policies.append((frozenset(p.match.skus), frozenset(p.match.item_ids), tiers,
                         frozenset(p.non_refundable_skus), minor(p.cancellation_fee),
                         p.refund_tax, {k: int(v) for k, v in p.waivers.items()}))
    default = next(i for i, p in enumerate(book.policies) if p.default)
    order = raw["booking"]["order"]
    lines = tuple((int(it["start_date"]), it["sku"], it["@attributes"]["item_id"],
                   minor(it["total"]) - minor(it["tax_total"]), minor(it["tax_total"]))
                  for it in order["items"]["item"])
    payments = sorted(((t["date"], t["transaction_id"], minor(t["amount"]))
                       for t in raw["transactions"] if t["status"] == "PAID"), reverse=True)
    return {"policies": tuple(policies), "default": default, "lines": lines,
            "order_total": minor(order["total"]), "payments": tuple(payments),
            "auto_max": minor(book.auto_approve_max), "escalate": minor(book.escalate_over)}


def floor_quote(data: dict[str, Any], cancelled: int, waiver: str | None) -> tuple[Any, ...]:
    """The quote's arithmetic by hand, in integers: refund, allocations, decision."""
    policies = data["policies"]
    applied: list[int] = []
    gross = 0
    for start, sku, item_id, amount, tax in data["lines"]:
        index = data["default"]
        for i, (skus, item_ids, _, _, _, _, _) in enumerate(policies):
            if (sku and sku in skus) or (item_id and item_id in item_ids):
                index = i
                break
        if index not in applied:
            applied.append(index)
        _, _, tiers, non_refundable, _, refund_tax, waivers = policies[index]
        notice = start - cancelled
        if waiver and waiver in waivers:
            percent = waivers[waiver]
        elif sku in non_refundable or notice <= 0:
            percent = 0
        else:
            percent = next(p for hours, p in tiers if hours <= notice)
        gross += (amount * percent * 2 + 100) // 200  # half up, non-negative amounts
        if refund_tax:
            gross += (tax * percent * 2 + 100) // 200
    fee = max((policies[i][4] for i in applied
               if not (waiver and waiver in policies[i][6])), default=0)
    entitlement = max(0, gross - fee)
    paid = sum(amount for _, _, amount in data["payments"])
    refund = min(max(paid - (data["order_total"] - entitlement), 0), paid)
    allocations = []
    left = refund
    for _, payment, amount in data["payments"]:
        if left == 0:
            break
        take = min(left, amount)
        allocations.append((payment, take))
        left -= take
    if refund == 0:
        decision = "deny"
    elif refund > data["escalate"] or refund > data["auto_max"]:
        decision = "needs_approval"
    else:
        decision = "auto_approve"
    return refund, tuple(allocations), decision


def best_rate(run: Callable[[int], None], batch: int, seconds: float) -> float:
    """Quotes per CPU second of the fastest batch within `seconds` of CPU time."""
    best = 0.0
    spent = 0.0
    while spent < seconds:
        began = time.process_time()
        run(batch)
        took = time.process_time() - began
        spent += took
        if took > 0:
            best = max(best, batch / took)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="CPU seconds per side per round (default 2)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    raw = json.loads((REPO / "examples" / "booking.json").read_text(encoding="utf-8"))
    book = load_policies(REPO / "examples" / "policies.yml")
    data = plain_data(raw, book)
    plain_cases = [(int(at.timestamp()), waiver) for at, waiver in CASES]

    for (at, waiver), (cancelled, plain_waiver) in zip(CASES, plain_cases, strict=True):
        quote = engine_quote(raw, book, at, waiver)
        refund, allocations, decision = floor_quote(data, cancelled, plain_waiver)
        engine_allocations = tuple((a["payment"], int(a["amount"].replace(".", "")))
                                   for a in quote["allocations"])
        assert (int(quote["total_refund"].replace(".", "")), engine_allocations,
                quote["decision"]) == (refund, allocations, decision), (quote, refund)

    def engine(n: int) -> None:
        for i in range(n):
            at, waiver = CASES[i & 3]
            engine_quote(raw, book, at, waiver)

    def floor(n: int) -> None:
        for i in range(n):
            cancelled, waiver = plain_cases[i & 3]
            floor_quote(data, cancelled, waiver)

    bot = slow = 0.0
    for _ in range(args.rounds):
        bot = max(bot, best_rate(engine, 500, args.seconds))
        slow = max(slow, best_rate(floor, 5_000, args.seconds))
    ratio = bot / slow
    print(f"examples/booking.json, {len(CASES)} cancellation cases, best of {args.rounds} "
          f"rounds of {args.seconds:g} CPU s each")
    print(f"quote engine, one core: bot {bot:,.0f}/s  floor {slow:,.0f}/s  ratio {ratio:.2f}  "
          f"target >= {TARGET:,}/s  {'OK' if bot >= TARGET else 'BELOW'}")


if __name__ == "__main__":
    main()
