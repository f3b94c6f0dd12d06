"""The demo's departure: a storm closes the river, staff ask for the whole departure's card
(`/refund departure bike-tour <start> waiver WEATHER`), and one click by an approver whose limit
covers the total cancels each booking in Checkfront and refunds each once, the card showing
its progress and then the outcome.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bot.cli.render import buttons_of, say, slack_message_text
from bot.cli.world import APPROVALS, MARIA, SAM, Item, World
from bot.slack.ui.departure import CANCEL_ALL
from services.money import display

CODES = ("HBR-2001", "HBR-2002", "HBR-2003")


async def show(world: World) -> None:
    assert world.slack is not None and world.sender is not None
    now = time.time()
    start = int(now // 3600 * 3600 + 30 * 3600)   # a whole hour, 30 hours from now
    for code in CODES:
        world.paid_booking(code, [Item("bike-tour", "84.00", "4.00", (start - now) / 3600,
                                       "E-bike tour")])
    await world.settle()
    when = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M+00:00")
    say(f"A storm closes the trails: /refund departure bike-tour {when} waiver WEATHER")
    await world.sender.command(f"departure bike-tour {when} waiver WEATHER", SAM)
    await world.settle()
    card = next((m for m in reversed(world.slack.messages_in(APPROVALS))
                 if CANCEL_ALL in buttons_of(m)), None)
    if card is None:
        print("  (no departure card was posted)")
        return
    print(slack_message_text(card))
    say("Maria clicks Cancel and refund all")
    await world.sender.click(CANCEL_ALL, buttons_of(card)[CANCEL_ALL], MARIA,
                             message_ts=card["ts"])
    await world.settle()
    print("  the departure card, updated as each booking went:")
    print(slack_message_text(world.slack.message(APPROVALS, card["ts"])))
    refunds = [r for r in world.stripe.refunds if r.metadata.get("booking_code") in CODES]
    print(f"  Checkfront: {', '.join(f'{c} {world.checkfront.status_of(c)}' for c in CODES)}; "
          f"Stripe refunds: {len(refunds)} "
          f"({', '.join(display(r.amount, r.currency.upper()) for r in refunds)})")
