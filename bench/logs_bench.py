"""What a log line costs the bot: its formatter (structlog's ProcessorFormatter: correlation
fields, UTC timestamp, the scrubbing processor, JSON or text) against the plain text formatter
it replaced (`%(asctime)s %(levelname)s %(name)s %(message)s`), each writing lines of the
worker's shape to a null stream from a logger with a correlation bound; and a call below the
level (debug while INFO is on), which must cost what the standard library's check costs.

    python bench/logs_bench.py [--lines N] [--rounds R]

The last lines are the figures beside the floor measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bot import logs  # noqa: E402
from services import correlation  # noqa: E402


class _Null(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def _rate(formatter: logging.Formatter | None, lines: int, *, debug: bool = False) -> float:
    logger = logging.getLogger("bench.logs")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(_Null())
    if formatter is not None:
        handler.setFormatter(formatter)
    logger.addHandler(handler)
    call = logger.debug if debug else logger.info
    with correlation.scope("ev-123456", case_id=4242, booking_code="BOOK-4242"):
        began = time.perf_counter()
        for n in range(lines):
            call("event %s/%s %s: %s", "checkfront", "booking", n, "case 4242 refunded")
        took = time.perf_counter() - began
    logger.removeHandler(handler)
    return lines / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    best: dict[str, float] = {}
    for _ in range(args.rounds):   # best of R: the machine is noisy
        for name, formatter, debug in (("floor", plain, False), ("json", logs.formatter("json"),
                                        False), ("text", logs.formatter("text"), False),
                                       ("floor-debug", plain, True),
                                       ("json-debug", logs.formatter("json"), True)):
            rate = _rate(formatter, args.lines if not debug else args.lines * 10, debug=debug)
            best[name] = max(best.get(name, 0.0), rate)
    floor, floor_debug = best["floor"], best["floor-debug"]
    for name, target in (("json", 0.15), ("text", 0.15)):
        ratio = best[name] / floor
        print(f"log line {name}: bot {best[name]:,.0f}/s  floor {floor:,.0f}/s  "
              f"ratio {ratio:.2f}  target >= {target:.2f}  {'OK' if ratio >= target else 'LOW'}")
    ratio = best["json-debug"] / floor_debug
    print(f"below the level: bot {best['json-debug']:,.0f}/s  floor {floor_debug:,.0f}/s  "
          f"ratio {ratio:.2f}  target >= 0.80  {'OK' if ratio >= 0.80 else 'LOW'}")


if __name__ == "__main__":
    main()
