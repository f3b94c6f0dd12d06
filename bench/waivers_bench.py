"""Waiver rules benchmark: what reading the policy file's waiver rules adds to a Checkfront
webhook's intake.

    python bench/waivers_bench.py [--bodies N] [--rounds R]

The bot's side: what intake does to a booking webhook before it is stored, with the example
policy file's three rules (a status, a form field value, a reason pattern) read first
(`waiver_rules.mark`, then `services.privacy.scrub` and the stored text, `payload_json`). The
floor, in the same run: the same bodies scrubbed and written without the rules. Bodies are
parsed once beforehand (parsing is the same either way) and copied for each pass; a third of
them match a rule (a custom status, a form field, a reason), the rest are plain cancellations
whose form fields hold only the customer's details, each body checked against every rule.
Floor and bot take turns, `--rounds` times each; the best of each is kept (the machine is
shared and noisy). The last line: webhooks a second for each, their ratio, and what the rules
add to one webhook against our target: at most 20 us, a twentieth of the CPU a whole webhook
request costs the bot (bench/intake_bench.py, about 400 us at 16 concurrent). The issue sets no
speed target; this one is ours, so that the rules never become a cost of intake. (This stage
alone is only the scrub and the stored text, some 16 us since they were made fast, so the
ratio says little by itself.)
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.intake.events import payload_json  # noqa: E402
from services.privacy import scrub  # noqa: E402
from services.quoting import waiver_rules  # noqa: E402
from services.quoting.policy import load_policies  # noqa: E402

TARGET_US = 20.0   # a twentieth of a webhook's CPU in bench/intake_bench.py (~400 us)
SALT = "bench-salt"


def body(n: int) -> dict[str, Any]:
    """A booking webhook as Checkfront sends it (three lines), every third matching a rule."""
    fields: dict[str, Any] = {"customer_name": f"Guest {n}", "customer_email": f"g{n}@x.test",
                              "customer_phone": "+1 555 0100"}
    status = "STOP"
    if n % 9 == 0:
        status = "WTHR"
    elif n % 9 == 3:
        fields["cancelled_by"] = "Operator"
    elif n % 9 == 6:
        fields["cancel_reason"] = "High winds on the bay, guide called it off"
    items = [{"@attributes": {"line_id": str(i), "item_id": str(10 + i)},
              "start_date": "1795705200", "end_date": "1795716000", "sku": f"sku-{i}",
              "name": f"Tour {i}", "slip": {}, "status": status, "total": "105.00",
              "tax_total": "5.00", "qty": "1"} for i in range(1, 4)]
    return {"@attributes": {"version": "3.0", "host": "bench.checkfront.test"},
            "booking": {"@attributes": {"booking_id": str(1000 + n)}, "status": status,
                        "code": f"BNCH-{n:06d}", "tid": {}, "created_date": "1793525400",
                        "staff_id": "1", "source_ip": "127.0.0.1",
                        "customer": {"name": f"Guest {n}", "email": f"g{n}@x.test"},
                        "fields": fields, "meta": {},
                        "order": {"@attributes": {"currency_id": "USD"}, "sub_total": "300.00",
                                  "tax_total": "15.00", "paid_total": "315.00",
                                  "total": "315.00", "discount": "0.00",
                                  "items": {"item": items}}}}


def run(bodies: list[dict[str, Any]], rules: tuple[waiver_rules.WaiverRule, ...] | None
        ) -> tuple[float, int]:
    """Seconds for the stage over copies of the bodies (copying excluded), and matches."""
    copies = [copy.deepcopy(b) for b in bodies]
    matched = 0
    start = time.perf_counter()
    for payload in copies:
        if rules is not None and waiver_rules.mark(rules, payload) is not None:
            matched += 1
        payload_json(scrub(payload, SALT))
    return time.perf_counter() - start, matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bodies", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rules = load_policies(REPO / "examples" / "policies.yml").waiver_rules
    bodies = [body(n) for n in range(args.bodies)]
    best_bot = best_floor = float("inf")
    matched = 0
    for _ in range(max(1, args.rounds)):
        floor, _ = run(bodies, None)
        bot, matched = run(bodies, rules)
        best_floor, best_bot = min(best_floor, floor), min(best_bot, bot)
    assert matched == len([n for n in range(args.bodies) if n % 3 == 0]), matched
    print(f"{args.bodies:,} booking webhooks, {len(rules)} rules, {matched:,} matched; "
          f"best of {args.rounds}")
    bot_rate, floor_rate = args.bodies / best_bot, args.bodies / best_floor
    ratio = bot_rate / floor_rate
    added = (best_bot - best_floor) / args.bodies * 1e6
    verdict = "OK" if added <= TARGET_US else "MISSED"
    print(f"intake with waiver rules: bot {bot_rate:,.0f}/s  floor {floor_rate:,.0f}/s  "
          f"ratio {ratio:.2f}; the rules add {added:.1f} us a webhook  "
          f"target <= {TARGET_US:.0f} us  {verdict}")


if __name__ == "__main__":
    main()
