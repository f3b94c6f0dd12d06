"""Click feedback: the time from an Approve click to its card's update (`chat.update`) while
15 posts wait in the outbox for the same channel.

    python bench/click_feedback_bench.py [--queued 15] [--rounds 2] [--interval 1.0]

The demo's world in this process: the bot (real Bolt app over HTTP, real outbox and store), the
Slack, Stripe and Checkfront stand-ins on 127.0.0.1, the Slack stand-in enforcing Slack's rate
limits (`SlackLimits`: chat.postMessage about one a second per channel), the outbox pacing each
channel at `--interval` seconds (Slack's one a second by default). Each round: a pending card,
`--queued` alerts queued for its channel, and once the first of them is out, a signed Approve
click; the clock stops when the stand-in records the card's `chat.update`.

- bot: with the priority lane (the click's card update goes ahead of the queued posts).
- before: the same with the lane switched off (the update waits behind the queue, as before).
- floor: the same click with nothing queued, also right after a post to the channel: the best
  the channel's rate allows (the update cannot leave before the interval since that post).

Best of `--rounds` each (a round of `before` drains the whole queue, ~`queued` x interval). The
last line: bot beside the floor, their ratio and the target (bot <= 1.5 x floor).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, REPO)

from bot.cli.world import APPROVALS, MARIA, Item, World  # noqa: E402
from bot.slack.outbox import Outbox  # noqa: E402
from bot.slack.ui import ids  # noqa: E402
from sandbox.slack_limits import SlackLimits  # noqa: E402
from tests.slack_helpers import all_text, buttons  # noqa: E402

TARGET = 1.5


@contextlib.contextmanager
def _no_lane() -> Iterator[None]:
    yield


async def _post_count(world: World) -> int:
    assert world.slack is not None
    return len([c for c in world.slack.calls_to("chat.postMessage") if c.ok])


async def one_click(world: World, n: int, queued: int, *, lane: bool) -> float:
    """Seconds from the click to the card's chat.update."""
    assert world.slack is not None and world.sender is not None and world.bot.slack is not None
    outbox = world.bot.slack.outbox
    code = f"CLK-{n}"
    world.paid_booking(code, [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await world.cancel(code)
    await world.settle()
    card = next(m for m in world.slack.messages_in(APPROVALS) if code in all_text(m))
    before = await _post_count(world)
    for k in range(max(queued, 1)):   # the floor queues one, and clicks once it is out
        await outbox.add(APPROVALS, "alert", None, {"text": f"queued {n}.{k}"})
    while await _post_count(world) == before:   # the first queued post is out
        await world.slack.wait_for("chat.postMessage",
                                   len(world.slack.calls_to("chat.postMessage")) + 1, 30)
    original = Outbox.__dict__["urgent"]
    if not lane:
        Outbox.urgent = staticmethod(_no_lane)  # type: ignore[method-assign]
    try:
        started = time.monotonic()
        await world.sender.click(ids.APPROVE, buttons(card)[ids.APPROVE]["value"], MARIA,
                                 message_ts=card["ts"])
        while not any(c.params.get("ts") == card["ts"] and c.ok
                      for c in world.slack.calls_to("chat.update")):
            await world.slack.wait_for("chat.update",
                                       len(world.slack.calls_to("chat.update")) + 1, 120)
        elapsed = time.monotonic() - started
    finally:
        Outbox.urgent = original  # type: ignore[method-assign]
    await world.settle()
    return elapsed


async def run(queued: int, rounds: int, interval: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        world = await World.start(Path(folder), slack=True,
                                  slack_post_interval_seconds=interval)
        assert world.slack is not None
        world.slack.rate_limits = SlackLimits()
        try:
            best: dict[str, float] = {}
            n = 0
            for _ in range(rounds):
                for name, count, lane in (("floor", 0, True), ("bot", queued, True),
                                          ("before", queued, False)):
                    n += 1
                    took = await one_click(world, n, count, lane=lane)
                    print(f"  {name:6s} click -> card update {took:6.2f} s")
                    best[name] = min(best.get(name, took), took)
            assert world.slack.rate_limited == 0, "the outbox went over Slack's rate"
            return best
        finally:
            await world.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    print(f"Approve click with {args.queued} posts queued for the channel, "
          f"{args.interval:g} s per post per channel; best of {args.rounds}")
    best = asyncio.run(run(args.queued, max(1, args.rounds), args.interval))
    ratio = best["bot"] / best["floor"]
    print(f"before (no priority lane): {best['before']:.2f} s")
    verdict = "OK" if ratio <= TARGET else "MISSED"
    print(f"click -> card update, {args.queued} queued: bot {best['bot']:.2f} s  "
          f"floor {best['floor']:.2f} s  ratio {ratio:.2f}  target <= {TARGET}  {verdict}")


if __name__ == "__main__":
    main()
