"""Storm benchmark: an operator cancels every departure; Stripe at its test-mode rate limit.

    python bench/storm_bench.py [--cancellations N] [--stripe-rps R] [--bot-rps B]
                                [--slack-per-second S] [--concurrency C]

The bot runs as deployed, `python -m bot serve` in a child process (so its peak RSS is its
own), in assisted mode with Slack on. This process holds the stand-ins on 127.0.0.1:
Checkfront, Stripe with a token-bucket rate limit of R requests a second (a burst of R), and
Slack with chat.postMessage at S a second per channel (the other methods by tier). It makes N
paid bookings (one Stripe payment each, a kayak tour 72 hours ahead: a full refund less the
$10 fee, under the auto-approval limit), then cancels them all: N Checkfront "Booking Status
Change" webhooks over HTTP to the bot, C at a time. Stripe's own refund webhooks go to the bot
as Stripe would send them.

Measured, from the first webhook sent: the time until every case is in a final state (read
from the bot's database, read-only); the refunds at the Stripe stand-in against the quotes
(every booking exactly its expected amount, once); Stripe calls seen and refused (429s), Slack
calls and 429s; Slack posts still queued at settle time and how long the outbox then takes to
drain; the bot's peak RSS (VmHWM).

The floor is Stripe's limit: N refunds x 3 calls / R (the issue's target: three calls per
refund), and the same from the calls the stand-in actually answered. `--bot-rps` sets the
bot's client-side pacing (default: R, as `STRIPE_MAX_REQUESTS_PER_SECOND`; 0 turns it off, to
see a retry storm).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox.checkfront_server import CheckfrontSandbox  # noqa: E402
from sandbox.http import start  # noqa: E402
from sandbox.rate_limit import Limit  # noqa: E402
from sandbox.slack_server import SlackLimits, SlackSandbox  # noqa: E402
from sandbox.stripe_server import StripeSandbox  # noqa: E402
from services.money import to_minor  # noqa: E402

TOKEN = "cf-storm-token"
STRIPE_WEBHOOK_SECRET = "whsec_storm"
SLACK_SIGNING_SECRET = "slack-storm-secret"
APPROVALS, DIGEST = "C0APPROVE", "C0DIGEST"
FEE = Decimal("10.00")
FINAL = ("refunded", "partially_refunded", "denied", "skipped", "failed")
CALLS_PER_REFUND = 3   # the target


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def booking_total(n: int) -> Decimal:
    return Decimal("60.00") + Decimal(n % 120)   # 60.00 .. 179.00; refunds under 200.00


def make_bookings(checkfront: CheckfrontSandbox, stripe: StripeSandbox,
                  count: int) -> dict[str, tuple[str, int]]:
    """`count` paid bookings; code -> (payment intent, expected refund in cents)."""
    now = time.time()
    made: dict[str, tuple[str, int]] = {}
    for n in range(count):
        code = f"STORM-{n:05d}"
        total = booking_total(n)
        start_at = int(now + 72 * 3600)
        checkfront.add_booking(
            code=code, status="PAID", currency="USD", customer_name=f"Guest {n}",
            customer_email=f"guest{n}@example.test", created_date=int(now - 240 * 3600),
            items=[{"sku": "kayak-tour", "name": "Kayak tour", "item_id": "1",
                    "start": start_at, "end": start_at + 7200, "total": str(total),
                    "tax": "0.00", "qty": 1}],
            transactions=[], paid_total="0")
        intent = stripe.add_payment(to_minor(str(total), "USD"), "USD",
                                    metadata={"booking": code})
        checkfront.add_transaction(code, amount=str(total), transaction_id=intent.id,
                                   gateway_id="Stripe", date=int(now - 240 * 3600))
        made[code] = (intent.id, to_minor(str(total - FEE), "USD"))
    return made


def bot_env(folder: Path, port: int, cf_url: str, checkfront: CheckfrontSandbox,
            stripe_url: str, slack: SlackSandbox, bot_rps: float) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO),
        "POLICY_FILE": str(REPO / "examples" / "policies.yml"),
        "DATABASE_PATH": str(folder / "refunds.db"), "PORT": str(port),
        "LOG_LEVEL": "WARNING", "SCHEDULER_ENABLED": "false", "MODE": "assisted",
        "CHECKFRONT_HOST": cf_url, "CHECKFRONT_API_KEY": checkfront.api_key,
        "CHECKFRONT_API_SECRET": checkfront.api_secret, "CHECKFRONT_WEBHOOK_SECRET": TOKEN,
        "STRIPE_SECRET_KEY": "sk_test_storm", "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe_url, "STRIPE_MAX_REQUESTS_PER_SECOND": str(bot_rps),
        "SLACK_BOT_TOKEN": "xoxb-storm", "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "SLACK_API_BASE": slack.api_url, "SLACK_APPROVALS_CHANNEL": APPROVALS,
        "SLACK_DIGEST_CHANNEL": DIGEST,
    }


def read_db(path: Path) -> tuple[Counter[str], int, int]:
    """Cases by status, webhook events not yet processed, Slack posts not yet sent."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                            timeout=5)) as db:
        statuses = Counter(dict(db.execute("SELECT status, COUNT(*) FROM cases "
                                           "GROUP BY status").fetchall()))
        events = db.execute("SELECT COUNT(*) FROM webhook_events "
                            "WHERE processed_at IS NULL").fetchone()[0]
        unsent = db.execute("SELECT COUNT(*) FROM slack_outbox "
                            "WHERE sent_at IS NULL").fetchone()[0]
    return statuses, int(events), int(unsent)


def quoted(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return dict(db.execute("SELECT booking_code, refund_amount FROM cases").fetchall())


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


async def wait_healthy(url: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(600):
            if process.returncode is not None:
                raise SystemExit("the bot exited at start-up")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise SystemExit("the bot did not start")


async def run(args: argparse.Namespace) -> int:
    n, rps = args.cancellations, args.stripe_rps
    bot_rps = rps if args.bot_rps is None else args.bot_rps
    checkfront = CheckfrontSandbox()
    stripe = StripeSandbox(rate_limit=Limit(rps, burst=rps))
    slack = SlackSandbox(rate_limits=SlackLimits(
        post_message=Limit(args.slack_per_second, burst=3)))
    servers = [await start(checkfront.app()), await start(stripe.app()), await slack.serve()]
    cf_url, stripe_url = servers[0].url, servers[1].url
    bookings = make_bookings(checkfront, stripe, n)
    expected = {pi: amount for pi, amount in bookings.values()}

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = bot_env(folder, port, cf_url, checkfront, stripe_url, slack, bot_rps)
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", cwd=folder, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=(folder / "bot.log").open("wb"))
        try:
            await wait_healthy(url, bot)
            stripe.configure_webhook(f"{url}/webhooks/stripe", STRIPE_WEBHOOK_SECRET,
                                     retries=3, retry_delay=1.0)
            requests_before = len(stripe.requests)
            slack_before = len(slack.calls)
            db_path = folder / "refunds.db"
            print(f"{n:,} cancellations; Stripe limited to {rps:g} req/s (burst {rps:g}), bot "
                  f"paced at {bot_rps:g} req/s; Slack chat.postMessage {args.slack_per_second:g}"
                  f"/s per channel", flush=True)

            began = time.monotonic()
            queue = list(bookings)
            statuses_sent: Counter[int] = Counter()

            async def sender(client: httpx.AsyncClient) -> None:
                while queue:
                    code = queue.pop()
                    booking = checkfront.booking(code)
                    booking.status = "STOP"
                    for item in booking.items:
                        item.status = "STOP"
                    answer = await client.post(f"{url}/webhooks/checkfront/{TOKEN}",
                                               json=checkfront.webhook_body(code))
                    statuses_sent[answer.status_code] += 1

            async with httpx.AsyncClient(timeout=30) as client:
                await asyncio.gather(*(sender(client) for _ in range(args.concurrency)))
            sent_in = time.monotonic() - began
            print(f"webhooks sent in {sent_in:.1f} s: {dict(statuses_sent)}", flush=True)

            statuses: Counter[str] = Counter()
            last_report = began
            while True:
                statuses, events_left, unsent = await asyncio.to_thread(read_db, db_path)
                final = sum(statuses[s] for s in FINAL)
                if final >= n and events_left == 0:
                    break
                if bot.returncode is not None:
                    raise SystemExit("the bot died:\n" + (folder / "bot.log").read_text()[-3000:])
                if time.monotonic() - last_report >= 30:
                    last_report = time.monotonic()
                    print(f"  {last_report - began:6.0f} s: {final:,} final, "
                          f"{dict(statuses)}, Stripe 429s {stripe.rate_limited:,}", flush=True)
                await asyncio.sleep(0.25)
            settled = time.monotonic() - began
            rss = peak_rss(bot.pid)
            _, _, unsent_at_settle = await asyncio.to_thread(read_db, db_path)
            drained = None
            while drained is None and time.monotonic() - began < settled + 600:
                _, _, unsent = await asyncio.to_thread(read_db, db_path)
                if unsent == 0:
                    drained = time.monotonic() - began - settled
                else:
                    await asyncio.sleep(0.25)
            await stripe.drain_webhooks()
            quotes = await asyncio.to_thread(quoted, db_path)
        finally:
            if bot.returncode is None:
                bot.terminate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(bot.wait(), 30)
            if bot.returncode is None:
                bot.kill()
                await bot.wait()
            for server in servers:
                await server.stop()

    # ---- what happened ---------------------------------------------------------------------
    refunded: Counter[str] = Counter()
    refund_count: Counter[str] = Counter()
    for refund in stripe.refunds:
        if refund.status in ("succeeded", "pending"):
            refunded[str(refund.payment_intent)] += refund.amount
            refund_count[str(refund.payment_intent)] += 1
    exact = sum(1 for pi, amount in expected.items()
                if refunded[pi] == amount and refund_count[pi] == 1)
    quotes_match = sum(1 for code, (_, amount) in bookings.items()
                       if quotes.get(code) == amount)
    seen = stripe.requests[requests_before:]
    answered = [r for r in seen if not r.limited]
    by_path = Counter(f"{r.method} {r.path.split('/')[2]}" for r in answered)
    slack_calls = slack.calls[slack_before:]
    posts = sum(1 for c in slack_calls if c.method == "chat.postMessage" and not c.limited)
    slack_429 = sum(1 for c in slack_calls if c.limited)
    lines_posted = sum(1 for c in slack_calls if c.method == "chat.postMessage" and c.ok)

    floor = n * CALLS_PER_REFUND / rps
    floor_seen = len(answered) / rps
    ratio = settled / floor
    print(f"cases: {dict(statuses)}; quotes as expected {quotes_match:,}/{n:,}")
    print(f"Stripe: {len(answered):,} calls answered ({len(answered) / max(n, 1):.2f} a "
          f"refund: {dict(by_path)}), {stripe.rate_limited:,} refused with 429")
    print(f"Slack: {len(slack_calls):,} calls, {posts:,} chat.postMessage ({lines_posted:,} ok), "
          f"{slack_429} 429s; posts queued at settle {unsent_at_settle:,}, outbox drained "
          + (f"{drained:.1f} s after settle" if drained is not None else "NOT within 600 s"))
    print(f"bot peak RSS {rss / 2**20:.0f} MiB")
    ok = ratio <= 1.05 and exact == n and slack_429 == 0
    print(f"storm {n:,} cancellations at {rps:g} req/s: refunds exact {exact:,}/{n:,}  "
          f"Stripe 429s {stripe.rate_limited:,}  Slack 429s {slack_429}")
    print(f"storm settle: bot {settled:.1f} s  floor {floor:.1f} s ({CALLS_PER_REFUND} calls a "
          f"refund; {floor_seen:.1f} s for the {len(answered):,} calls made)  ratio "
          f"{ratio:.2f}  target <= 1.05  {'OK' if ok else 'NOT MET'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cancellations", type=int, default=2_000)
    parser.add_argument("--stripe-rps", type=float, default=25.0)
    parser.add_argument("--bot-rps", type=float, default=None)
    parser.add_argument("--slack-per-second", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=16)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
