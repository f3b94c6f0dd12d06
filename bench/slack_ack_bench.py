"""Ack latency of Slack button clicks: the refund bot next to a bare Bolt app.

Each app runs in its own process on 127.0.0.1; this process sends signed `block_actions`
requests (bodies signed before the clock starts) and measures the time to Slack's answer:
1,000 sequential clicks, then 1,000 clicks with 16 in flight. The bot's click is a real
Approve by an approver (permission check included; the work after the ack runs too). The
floor is a bare Bolt app with one ack-only button in `process_before_response=True` mode;
Bolt's default mode is shown for reference. Prints p50/p99 and the bot/floor ratio.

    python bench/slack_ack_bench.py [--clicks 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bot.cli.world import MARIA, SLACK_SIGNING_SECRET
from sandbox.slack_requests import SlackSender

BARE_ACTION = "ack_only"


def _serve_bot(ready: Any) -> None:
    async def main() -> None:
        import logging

        logging.disable(logging.WARNING)
        from bot.cli.world import Item, World
        from bot.slack.ui import cards
        from services.refunds import cases

        world = await World.start(Path(tempfile.mkdtemp(prefix="ack-bench-")), slack=True)
        world.paid_booking("BENCH-1", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
        await world.cancel("BENCH-1")
        await world.settle()
        case = (await cases.list_cases(world.bot.svc.store))[0]
        ready.put((f"{world.bot_url}/slack/events",
                   cards.button_value(case.id, case.quote_version)))
        await asyncio.Event().wait()

    asyncio.run(main())


def _serve_bare(ready: Any, process_before_response: bool) -> None:
    async def main() -> None:
        from aiohttp import web
        from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
        from slack_bolt.async_app import AsyncApp
        from slack_bolt.authorization import AuthorizeResult

        from sandbox.http import start

        async def authorize(**_: Any) -> AuthorizeResult:
            return AuthorizeResult(enterprise_id=None, team_id=None, bot_token="xoxb-bench")

        app = AsyncApp(signing_secret=SLACK_SIGNING_SECRET, authorize=authorize,
                       process_before_response=process_before_response)

        @app.action(BARE_ACTION)
        async def ack_only(ack: Any) -> None:
            await ack()

        async def handle(request: web.Request) -> web.Response:
            return await to_aiohttp_response(await app.async_dispatch(
                await to_bolt_request(request)))

        web_app = web.Application()
        web_app.router.add_post("/slack/events", handle)
        server = await start(web_app)
        ready.put((f"{server.url}/slack/events", "{}"))
        await asyncio.Event().wait()

    asyncio.run(main())


async def _measure(url: str, action: str, value: str, clicks: int,
                   concurrency: int) -> list[float]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(
            max_connections=concurrency, max_keepalive_connections=concurrency)) as client:
        sender = SlackSender(url, SLACK_SIGNING_SECRET, client=client)
        requests = []
        for _ in range(clicks + 50):
            body = sender.click_body(action, value, MARIA)
            requests.append((body.encode(), sender.signed(body)))
        timings: list[float] = []
        queue = list(reversed(requests))

        async def one(body: bytes, headers: dict[str, str], record: bool) -> None:
            started = time.perf_counter()
            answer = await client.post(url, content=body, headers=headers)
            elapsed = time.perf_counter() - started
            if answer.status_code != 200:
                raise RuntimeError(f"click answered {answer.status_code}")
            if record:
                timings.append(elapsed)

        for _ in range(50):  # warm-up, not recorded
            await one(*queue.pop(), record=False)

        async def lane() -> None:
            while queue:
                await one(*queue.pop(), record=True)

        await asyncio.gather(*(lane() for _ in range(concurrency)))
        return timings


def _start(target: Any, *args: Any) -> tuple[mp.Process, tuple[str, str]]:
    ready: Any = mp.Queue()
    process = mp.Process(target=target, args=(ready, *args), daemon=True)
    process.start()
    return process, ready.get(timeout=60)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clicks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    targets = [
        ("bare Bolt, process_before_response", _serve_bare, (True,), BARE_ACTION),
        ("bare Bolt, default mode", _serve_bare, (False,), BARE_ACTION),
        ("refund bot, Approve click", _serve_bot, (), "refund_approve"),
    ]
    results: dict[str, dict[int, list[float]]] = {}
    for name, target, extra, action in targets:
        process, (url, value) = _start(target, *extra)
        try:
            results[name] = {
                lanes: asyncio.run(_measure(url, action, value, args.clicks, lanes))
                for lanes in (1, args.concurrency)
            }
        finally:
            process.terminate()
            process.join()
    print(f"Ack latency over {args.clicks} signed clicks (ms), loopback HTTP")
    print(f"{'app':<38} {'seq p50':>8} {'seq p99':>8} {'c16 p50':>8} {'c16 p99':>8}")
    for name, by_lanes in results.items():
        seq, conc = by_lanes[1], by_lanes[args.concurrency]
        print(f"{name:<38} {_pct(seq, .5):8.2f} {_pct(seq, .99):8.2f} "
              f"{_pct(conc, .5):8.2f} {_pct(conc, .99):8.2f}")
    floor, bot = results[targets[0][0]], results[targets[2][0]]
    for lanes, label in ((1, "sequential"), (args.concurrency, f"{args.concurrency} concurrent")):
        ratio = _pct(bot[lanes], .99) / _pct(floor[lanes], .99)
        print(f"bot p99 / floor p99, {label}: {ratio:.2f}x (target ≤ 3x)")
    print(f"(medians: bot {statistics.median(bot[1]) * 1000:.2f} ms, "
          f"floor {statistics.median(floor[1]) * 1000:.2f} ms)")


if __name__ == "__main__":
    main()
