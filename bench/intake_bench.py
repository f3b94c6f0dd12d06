"""Webhook intake benchmark: the bot's real aiohttp app storing Checkfront cancellations, beside
a floor measured in the same run.

    python bench/intake_bench.py [--sequential N] [--concurrent N] [--seconds S] [--rates 100,500]
                                 [--postgresql | --database-url URL]

The bot (`bot.app.Bot`, its store, intake writer and worker) serves in this process; the
Checkfront and Stripe stand-ins in a child process; the load generator (an aiohttp client) in
another, so neither's CPU is the bot's. Each request is a Checkfront "Booking Status Change"
webhook (path-token authenticated), a cancellation; the answer 200 means stored.

The floor: a bare aiohttp app that reads the same body and inserts it into a table of the same
shape (`INSERT OR IGNORE`, unique by source and id) through aiosqlite and commits (two thread
round trips), at the durability a webhook's 200 pays in the bot (the store's journal_mode and
the intake writer's synchronous), on the same machine, with the same client, in the same run.
Beside each rate, the CPU time a request cost this process (`time.process_time()`, every
thread: the bot's writer, the floor's aiosqlite thread), the figure that does not move with
the machine's other load.

Cases:
- sequential, one request at a time; 16 concurrent (16 connections, each sending as soon as
  it has its answer): stored/s. The bot's worker is stopped here (events stay queued, as in a
  storm's first seconds), so this is intake alone, like the floor. Bot and floor alternate
  `--rounds` times and the best round of each is compared (the machine is shared and noisy).
- fixed rate (open loop: request i is due at i/rate; latency from when it was due), 100/s then
  500/s, for `--seconds` each, with the worker running: every cancellation is of a real paid
  booking in the stand-ins, which the worker processes (Checkfront reads, a quote, the case,
  Stripe refunds when the policy approves) while the next ones arrive. p50/p99 latency, the
  cases the worker finished meanwhile (it must keep going), how many it held for the loop
  (`bot.loop_guard`), the loop's lag (a timer every 5 ms: how late it fired), how long
  the intake writer waited for the write lock the worker's transactions held, and how long
  the log syncer's syncs took (what an answer waits for the disk). The floor's fixed-rate
  figures are taken before, with no bot running.

The last lines: each figure beside the floor's, the ratio and the issue's target, OK or MISS.

On PostgreSQL (`--postgresql`: a throwaway cluster started for the run by `sandbox.postgres`,
at the server's default durability, fsync and synchronous_commit on; `--database-url URL` or
`BENCH_DATABASE_URL`: a server the bench may create and drop databases on) the same cases run
with the bot's store on a database of its own (`run_postgres`). The floor there: a bare aiohttp
app inserting the same row (`INSERT ... ON CONFLICT DO NOTHING`, unique by source and id) into
a table of the same shape in another database on the same server, through an asyncpg pool of
16 connections, each request its own autocommit statement, so each 200 waits for its WAL flush
as the bot's does (PostgreSQL merges the flushes of concurrent commits by itself).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import aiosqlite  # noqa: E402
from aiohttp import web  # noqa: E402

from bot.app import Bot  # noqa: E402
from bot.cli.world import EXAMPLE_POLICIES, STRIPE_WEBHOOK_SECRET, WEBHOOK_TOKEN  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from sandbox.http import start  # noqa: E402
from services.store.db import Store  # noqa: E402

CONCURRENCY = 16
TARGET_RATIO = 0.70
TARGET_P99_MS = 20.0


# --- the stand-ins (child process) ---------------------------------------------------------

def standins_main(conn: Connection, bookings: int) -> None:
    from sandbox.checkfront_server import CheckfrontSandbox
    from sandbox.stripe_server import StripeSandbox
    from services.money import to_minor

    async def main() -> None:
        checkfront, stripe = CheckfrontSandbox(), StripeSandbox()
        cf_server = await start(checkfront.app())
        stripe_server = await start(stripe.app())
        now = time.time()
        bodies = []
        for n in range(bookings):
            code = f"STORM-{n:05d}"
            total = Decimal("105.00") if n % 2 else Decimal("52.50")
            checkfront.add_booking(
                code=code, status="PAID", currency="USD", customer_name="Ana Silva",
                customer_email=f"{code.lower()}@example.test", created_date=int(now - 864000),
                items=[{"sku": "kayak-tour", "name": "Kayak tour", "item_id": "1",
                        "start": int(now + 72 * 3600), "end": int(now + 74 * 3600),
                        "total": str(total), "tax": "5.00", "qty": 1}],
                transactions=[], paid_total="0")
            intent = stripe.add_payment(to_minor(str(total), "USD"), "USD",
                                        metadata={"booking": code})
            checkfront.add_transaction(code, amount=str(total), transaction_id=intent.id,
                                       gateway_id="Stripe", date=int(now - 864000))
            checkfront.booking(code).status = "STOP"
            for item in checkfront.booking(code).items:
                item.status = "STOP"
            bodies.append(json.dumps(checkfront.webhook_body(code)).encode())
        conn.send({"checkfront": cf_server.url, "stripe": stripe_server.url,
                   "api_key": checkfront.api_key, "api_secret": checkfront.api_secret,
                   "bodies": bodies})
        loop = asyncio.get_running_loop()
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            if message[0] == "webhook":
                stripe.configure_webhook(message[1], STRIPE_WEBHOOK_SECRET)
                conn.send("ok")
            else:
                break
        await cf_server.stop()
        await stripe_server.stop()

    asyncio.run(main())


# --- the load generator (child process) ----------------------------------------------------

def load_main(conn: Connection) -> None:
    async def closed_loop(session: aiohttp.ClientSession, url: str, bodies: list[bytes],
                          concurrency: int) -> dict[str, Any]:
        queue = list(reversed(bodies))
        latencies: list[float] = []
        bad = 0

        async def one_connection() -> None:
            nonlocal bad
            while queue:
                body = queue.pop()
                began = time.perf_counter()
                async with session.post(url, data=body,
                                        headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    bad += r.status != 200
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(one_connection() for _ in range(concurrency)))
        return {"elapsed": time.perf_counter() - began, "latencies": latencies, "bad": bad}

    async def open_loop(session: aiohttp.ClientSession, url: str, bodies: list[bytes],
                        rate: float) -> dict[str, Any]:
        latencies: list[float] = []
        bad = 0

        async def one(body: bytes, due: float) -> None:
            nonlocal bad
            async with session.post(url, data=body,
                                    headers={"Content-Type": "application/json"}) as r:
                await r.read()
                bad += r.status != 200
            latencies.append(time.perf_counter() - due)

        tasks = []
        began = time.perf_counter()
        for n, body in enumerate(bodies):
            due = began + n / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(body, due)))
        await asyncio.gather(*tasks)
        return {"elapsed": time.perf_counter() - began, "latencies": latencies, "bad": bad}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as session:
            while True:
                job = await loop.run_in_executor(None, conn.recv)
                if job is None:
                    return
                kind, url, bodies, n = job
                if kind == "closed":
                    conn.send(await closed_loop(session, url, bodies, n))
                else:
                    conn.send(await open_loop(session, url, bodies, n))

    asyncio.run(main())


# --- the floor ------------------------------------------------------------------------------

async def floor_app(path: Path, synchronous: int) -> tuple[web.Application, aiosqlite.Connection]:
    db = await aiosqlite.connect(path)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute(f"PRAGMA synchronous={synchronous}")
    await db.execute(
        "CREATE TABLE webhook_events (id INTEGER PRIMARY KEY, source TEXT NOT NULL, "
        "event_id TEXT NOT NULL, kind TEXT NOT NULL, received_at TEXT NOT NULL, "
        "payload TEXT NOT NULL, processed_at TEXT, outcome TEXT, UNIQUE (source, event_id))")
    await db.commit()
    counter = iter(range(1 << 62))

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        await db.execute(
            "INSERT OR IGNORE INTO webhook_events (source, event_id, kind, received_at, payload) "
            "VALUES (?, ?, ?, ?, ?)",
            ("checkfront", str(next(counter)), "booking", "now", body.decode()))
        await db.commit()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/webhooks/checkfront/{token}", receive)
    return app, db


# --- the run --------------------------------------------------------------------------------

def distinct_bodies(template: bytes, count: int, prefix: str) -> list[bytes]:
    """`count` different cancellation bodies (each its own event id: the body's hash)."""
    payload = json.loads(template)
    out = []
    for n in range(count):
        payload["booking"]["code"] = f"{prefix}-{n:06d}"
        out.append(json.dumps(payload).encode())
    return out


async def start_bot(folder: Path, world: dict[str, Any],
                    database_url: str | None = None) -> tuple[Bot, Any]:
    settings = load_settings(
        _env_file=None, database_path=folder / "refunds.db", database_url=database_url,
        policy_file=EXAMPLE_POLICIES,
        checkfront_host=world["checkfront"], checkfront_api_key=world["api_key"],
        checkfront_api_secret=world["api_secret"], checkfront_webhook_secret=WEBHOOK_TOKEN,
        stripe_secret_key="sk_test_sandbox", stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
        stripe_api_base=world["stripe"], stripe_timeout_seconds=5.0, scheduler_enabled=False,
        stripe_max_requests_per_second=0,   # the stand-ins run without rate limits
        log_level="WARNING")
    bot = await Bot.create(settings)
    return bot, await start(bot.web)


def rate(result: dict[str, Any]) -> float:
    return len(result["latencies"]) / result["elapsed"]


def pct(result: dict[str, Any], q: float) -> float:
    ordered = sorted(result["latencies"])
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def stored(store: Store) -> int:
    row = await store.read_one("SELECT COUNT(*) FROM webhook_events WHERE source='checkfront'")
    return int(row[0]) if row else 0


async def run(args: argparse.Namespace) -> int:
    ctx = multiprocessing.get_context("spawn")
    rates = [float(r) for r in args.rates.split(",")]
    real = sum(int(r * args.seconds) for r in rates)
    stand_pipe, stand_child = ctx.Pipe()
    standins = ctx.Process(target=standins_main, args=(stand_child, real), daemon=True)
    standins.start()
    load_pipe, load_child = ctx.Pipe()
    loader = ctx.Process(target=load_main, args=(load_child,), daemon=True)
    loader.start()
    loop = asyncio.get_running_loop()
    world = await loop.run_in_executor(None, stand_pipe.recv)

    async def job(kind: str, url: str, bodies: list[bytes], n: float) -> dict[str, Any]:
        load_pipe.send((kind, url, bodies, n))
        result = await loop.run_in_executor(None, load_pipe.recv)
        if result["bad"]:
            raise SystemExit(f"{result['bad']} requests were not answered 200")
        return result

    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # intake alone: the bot with its worker stopped, and the floor
        (folder / "alone").mkdir()
        bot, server = await start_bot(folder / "alone", world)
        await bot.worker.stop(grace=0)
        journal = await bot.svc.store.fetch_one("PRAGMA journal_mode")
        writer = bot.svc.store.writer
        assert writer is not None, "a file store has an intake writer"
        synchronous = writer.synchronous   # what a webhook's commit pays before its 200
        floor, floor_db = await floor_app(folder / "floor.db", synchronous)
        floor_server = await start(floor)
        bot_url = f"{server.url}/webhooks/checkfront/{WEBHOOK_TOKEN}"
        floor_url = f"{floor_server.url}/webhooks/checkfront/{WEBHOOK_TOKEN}"
        template = world["bodies"][0]
        print(f"store: journal_mode={journal[0] if journal else '?'} synchronous={synchronous}"
              f" (the floor at the same)", flush=True)

        results: dict[str, dict[str, Any]] = {}
        warm = distinct_bodies(template, 200, "WARM")
        await job("closed", bot_url, warm, 4)
        await job("closed", floor_url, warm, 4)
        for name, count, conc in (("sequential", args.sequential, 1),
                                  (f"{CONCURRENCY} concurrent", args.concurrent, CONCURRENCY)):
            for n in range(args.rounds):   # alternated; the best round of each counts
                bodies = distinct_bodies(template, count, f"{name.split()[0].upper()}{n}")
                before = await stored(bot.svc.store)
                cpu = time.process_time()
                mine = await job("closed", bot_url, bodies, conc)
                mine["cpu"] = (time.process_time() - cpu) / count
                assert await stored(bot.svc.store) - before == count, "not every event stored"
                cpu = time.process_time()
                floors = await job("closed", floor_url, bodies, conc)
                floors["cpu"] = (time.process_time() - cpu) / count
                print(f"{name} round {n + 1}: bot {rate(mine):,.0f}/s "
                      f"({1e6 * mine['cpu']:.0f} us CPU each)  floor {rate(floors):,.0f}/s "
                      f"({1e6 * floors['cpu']:.0f} us CPU each)", flush=True)
                if f"bot {name}" not in results or rate(mine) > rate(results[f"bot {name}"]):
                    results[f"bot {name}"] = mine
                if (f"floor {name}" not in results
                        or rate(floors) > rate(results[f"floor {name}"])):
                    results[f"floor {name}"] = floors
        for r in rates:   # the floor at the fixed rates, on a machine without the bot's work
            results[f"floor {r:g}/s"] = await job(
                "open", floor_url, distinct_bodies(template, int(r * args.seconds), f"R{r:g}"),
                r)
        batches = writer.batches
        inline = getattr(writer, "inline_batches", 0)   # committed on the loop's thread
        syncs = getattr(writer, "syncs", 0)
        await server.stop()
        await bot.close()
        await floor_server.stop()
        await floor_db.close()

        # fixed rates with the worker busy: real cancellations, processed as they come
        (folder / "busy").mkdir()
        bot, server = await start_bot(folder / "busy", world)
        stand_pipe.send(("webhook", f"{server.url}/webhooks/stripe"))
        await loop.run_in_executor(None, stand_pipe.recv)
        bot_url = f"{server.url}/webhooks/checkfront/{WEBHOOK_TOKEN}"
        real_bodies = list(world["bodies"])
        for r in rates:
            count = int(r * args.seconds)
            bodies, real_bodies = real_bodies[:count], real_bodies[count:]
            done_before = await done_cases(bot.svc.store)
            lags: list[float] = []
            probe = asyncio.create_task(loop_lag(lags))
            held = bot.worker.guard.held
            busy_writer = bot.svc.store.writer
            assert busy_writer is not None
            waits = (busy_writer.lock_waits, busy_writer.lock_wait_seconds,
                     busy_writer.batches)
            busy_writer.lock_wait_longest = 0.0
            syncer = getattr(busy_writer, "syncer", None)   # SQLite's log syncer
            if syncer is not None:
                syncer.took.clear()
            began = time.perf_counter()
            results[f"bot {r:g}/s"] = await job("open", bot_url, bodies, r)
            took = time.perf_counter() - began
            probe.cancel()
            lags.sort()
            worked = await done_cases(bot.svc.store) - done_before
            backlog = await bot.svc.store.read_one(
                "SELECT COUNT(*) FROM webhook_events WHERE processed_at IS NULL")
            waited = busy_writer.lock_waits - waits[0]
            print(f"{r:g}/s intake writer: {waited} of {busy_writer.batches - waits[2]} "
                  f"batches waited for the worker's write lock, "
                  f"{1000 * (busy_writer.lock_wait_seconds - waits[1]):.0f} ms in all, longest "
                  f"{1000 * busy_writer.lock_wait_longest:.1f} ms", flush=True)
            if syncer is not None and syncer.took:   # what the answers waited for the disk
                times = sorted(syncer.took)
                print(f"{r:g}/s log syncs: {len(times)}, p50 "
                      f"{1000 * times[len(times) // 2]:.1f} ms p99 "
                      f"{1000 * times[int(.99 * len(times))]:.1f} ms longest "
                      f"{1000 * times[-1]:.1f} ms", flush=True)
            print(f"{r:g}/s with the worker busy: bot p50 {pct(results[f'bot {r:g}/s'], .5):.1f}"
                  f" ms p99 {pct(results[f'bot {r:g}/s'], .99):.1f} ms; the worker processed "
                  f"{worked} cancellations in {took:.1f} s ({worked / took:.1f}/s), "
                  f"{backlog[0] if backlog else '?'} events waiting, "
                  f"{bot.worker.guard.held - held} cases held for the loop; loop lag p99 "
                  f"{1000 * lags[int(.99 * len(lags))]:.1f} ms max {1000 * lags[-1]:.1f} ms; "
                  f"floor p50 "
                  f"{pct(results[f'floor {r:g}/s'], .5):.1f} ms p99 "
                  f"{pct(results[f'floor {r:g}/s'], .99):.1f} ms", flush=True)
        await server.stop()
        await bot.worker.stop(grace=0)
        await bot.close()

    load_pipe.send(None)
    stand_pipe.send(("stop",))
    loader.join(10)
    standins.join(10)

    print(f"intake writer: {(args.sequential + args.concurrent) * args.rounds + 200} events in "
          f"{batches} transactions (intake alone; {inline} of them committed on the event loop's "
          f"thread, the log synced {syncs} times)")
    return verdicts("intake", results, rates, lines)


def verdicts(what: str, results: dict[str, dict[str, Any]], rates: list[float],
             lines: list[str]) -> int:
    """Print `lines` and then each figure beside the floor's, the target, OK or MISS (the
    bench's last lines); 1 when a target is missed."""
    failed = 0
    for name in ("sequential", f"{CONCURRENCY} concurrent"):
        bot_rate, floor_rate = rate(results[f"bot {name}"]), rate(results[f"floor {name}"])
        ratio = bot_rate / floor_rate
        ok = ratio >= TARGET_RATIO
        failed += not ok
        lines.append(f"{what} {name}: bot {bot_rate:,.0f}/s  floor {floor_rate:,.0f}/s  "
                     f"ratio {ratio:.2f}  target >= {TARGET_RATIO:.2f}  {'OK' if ok else 'MISS'}"
                     f"  (CPU a request: bot {1e6 * results[f'bot {name}']['cpu']:.0f} us, "
                     f"floor {1e6 * results[f'floor {name}']['cpu']:.0f} us)")
    for r in rates:
        bot_r, floor_r = results[f"bot {r:g}/s"], results[f"floor {r:g}/s"]
        ok = pct(bot_r, .99) < TARGET_P99_MS
        failed += not ok
        lines.append(f"{what} {r:g}/s worker busy: bot p50 {pct(bot_r, .5):.1f} ms p99 "
                     f"{pct(bot_r, .99):.1f} ms  floor p50 {pct(floor_r, .5):.1f} ms p99 "
                     f"{pct(floor_r, .99):.1f} ms  target p99 < {TARGET_P99_MS:g} ms  "
                     f"{'OK' if ok else 'MISS'}")
    print("\n".join(lines))
    return 1 if failed else 0


async def loop_lag(lags: list[float], every: float = 0.005) -> None:
    """How late a timer fires (how long a ready callback waits), every `every` seconds."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + every
        await asyncio.sleep(every)
        lags.append(max(0.0, loop.time() - due))


async def done_cases(store: Store) -> int:
    row = await store.read_one(
        "SELECT COUNT(*) FROM webhook_events WHERE processed_at IS NOT NULL "
        "AND source = 'checkfront'")
    return int(row[0]) if row else 0


# --- on PostgreSQL ---------------------------------------------------------------------------

PG_FLOOR_POOL = CONCURRENCY


async def pg_floor_app(url: str) -> tuple[web.Application, Any]:
    """The floor on PostgreSQL: bare aiohttp + asyncpg, each request one autocommit INSERT of
    the same row (a WAL flush before its 200 at synchronous_commit=on)."""
    import asyncpg
    pool = await asyncpg.create_pool(url, min_size=PG_FLOOR_POOL, max_size=PG_FLOOR_POOL)
    await pool.execute(
        "CREATE TABLE webhook_events (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        "source TEXT NOT NULL, event_id TEXT NOT NULL, kind TEXT NOT NULL, "
        "received_at TEXT NOT NULL, payload TEXT NOT NULL, processed_at TEXT, outcome TEXT, "
        "UNIQUE (source, event_id))")
    counter = iter(range(1 << 62))

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        await pool.execute(
            "INSERT INTO webhook_events (source, event_id, kind, received_at, payload) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, event_id) DO NOTHING",
            "checkfront", str(next(counter)), "booking", "now", body.decode())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/webhooks/checkfront/{token}", receive)
    return app, pool


async def run_postgres(args: argparse.Namespace) -> int:
    """The same cases with the bot's store on PostgreSQL, beside the PostgreSQL floor."""
    from sandbox import postgres
    server = postgres.start(args.database_url or None, durable=True)
    urls = [server.empty() for _ in range(3)]   # the bot alone, the floor, the bot busy
    try:
        return await _run_postgres(args, server, urls)
    finally:
        for url in urls:
            server.drop(url)
        server.stop()


async def _run_postgres(args: argparse.Namespace, server: Any, urls: list[str]) -> int:
    ctx = multiprocessing.get_context("spawn")
    rates = [float(r) for r in args.rates.split(",")]
    real = sum(int(r * args.seconds) for r in rates)
    stand_pipe, stand_child = ctx.Pipe()
    standins = ctx.Process(target=standins_main, args=(stand_child, real), daemon=True)
    standins.start()
    load_pipe, load_child = ctx.Pipe()
    loader = ctx.Process(target=load_main, args=(load_child,), daemon=True)
    loader.start()
    loop = asyncio.get_running_loop()
    world = await loop.run_in_executor(None, stand_pipe.recv)

    async def job(kind: str, url: str, bodies: list[bytes], n: float) -> dict[str, Any]:
        load_pipe.send((kind, url, bodies, n))
        result = await loop.run_in_executor(None, load_pipe.recv)
        if result["bad"]:
            raise SystemExit(f"{result['bad']} requests were not answered 200")
        return result

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bot, bot_server = await start_bot(folder, world, database_url=urls[0])
        await bot.worker.stop(grace=0)
        setting = await bot.svc.store.read_one("SHOW synchronous_commit")
        fsync = await bot.svc.store.read_one("SHOW fsync")
        floor, pool = await pg_floor_app(urls[1])
        floor_server = await start(floor)
        bot_url = f"{bot_server.url}/webhooks/checkfront/{WEBHOOK_TOKEN}"
        floor_url = f"{floor_server.url}/webhooks/checkfront/{WEBHOOK_TOKEN}"
        template = world["bodies"][0]
        print(f"store: PostgreSQL synchronous_commit={setting[0] if setting else '?'} "
              f"fsync={fsync[0] if fsync else '?'} (the floor on the same server)", flush=True)
        warm = distinct_bodies(template, 200, "WARM")
        await job("closed", bot_url, warm, 4)
        await job("closed", floor_url, warm, 4)
        for name, count, conc in (("sequential", args.sequential, 1),
                                  (f"{CONCURRENCY} concurrent", args.concurrent, CONCURRENCY)):
            for n in range(args.rounds):
                bodies = distinct_bodies(template, count, f"{name.split()[0].upper()}{n}")
                before = await stored(bot.svc.store)
                cpu = time.process_time()
                mine = await job("closed", bot_url, bodies, conc)
                mine["cpu"] = (time.process_time() - cpu) / count
                assert await stored(bot.svc.store) - before == count, "not every event stored"
                cpu = time.process_time()
                floors = await job("closed", floor_url, bodies, conc)
                floors["cpu"] = (time.process_time() - cpu) / count
                print(f"postgresql {name} round {n + 1}: bot {rate(mine):,.0f}/s "
                      f"({1e6 * mine['cpu']:.0f} us CPU each)  floor {rate(floors):,.0f}/s "
                      f"({1e6 * floors['cpu']:.0f} us CPU each)", flush=True)
                for who, got in (("bot", mine), ("floor", floors)):
                    key = f"{who} {name}"
                    if key not in results or rate(got) > rate(results[key]):
                        results[key] = got
        for r in rates:
            results[f"floor {r:g}/s"] = await job(
                "open", floor_url, distinct_bodies(template, int(r * args.seconds), f"R{r:g}"),
                r)
        await bot_server.stop()
        await bot.close()
        await floor_server.stop()
        await pool.close()

        (folder / "busy").mkdir()
        bot, bot_server = await start_bot(folder / "busy", world, database_url=urls[2])
        stand_pipe.send(("webhook", f"{bot_server.url}/webhooks/stripe"))
        await loop.run_in_executor(None, stand_pipe.recv)
        bot_url = f"{bot_server.url}/webhooks/checkfront/{WEBHOOK_TOKEN}"
        real_bodies = list(world["bodies"])
        for r in rates:
            count = int(r * args.seconds)
            bodies, real_bodies = real_bodies[:count], real_bodies[count:]
            done_before = await done_cases(bot.svc.store)
            began = time.perf_counter()
            results[f"bot {r:g}/s"] = await job("open", bot_url, bodies, r)
            took = time.perf_counter() - began
            worked = await done_cases(bot.svc.store) - done_before
            print(f"postgresql {r:g}/s with the worker busy: bot p50 "
                  f"{pct(results[f'bot {r:g}/s'], .5):.1f} ms p99 "
                  f"{pct(results[f'bot {r:g}/s'], .99):.1f} ms; the worker processed {worked} "
                  f"cancellations in {took:.1f} s", flush=True)
        await bot_server.stop()
        await bot.worker.stop(grace=0)
        await bot.close()

    load_pipe.send(None)
    stand_pipe.send(("stop",))
    loader.join(10)
    standins.join(10)

    return verdicts("intake postgresql", results, rates, [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=2000)
    parser.add_argument("--concurrent", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=4.0, help="per fixed rate")
    parser.add_argument("--rates", default="100,500")
    parser.add_argument("--rounds", type=int, default=2,
                        help="bot and floor alternated this many times (intake alone); the "
                             "best round of each is compared")
    parser.add_argument("--postgresql", action="store_true",
                        help="the bot's store on a throwaway PostgreSQL cluster started for "
                             "the run, beside the PostgreSQL floor")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""),
                        help="a PostgreSQL server the bench may create and drop databases on")
    args = parser.parse_args()
    if args.postgresql or args.database_url:
        return asyncio.run(run_postgres(args))
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
