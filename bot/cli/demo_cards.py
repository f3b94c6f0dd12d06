"""The demo's card details and a refund made by hand: anyone opens a waiting card's Details
(the itemised quote, the allocation and the policy clause in a modal), and the cash booking
HBR-1004, approved but not refundable through Stripe, is refunded at the desk and closed with
Mark refunded (amount, method, reference), which the daily reconciliation counts as manual.
"""

from __future__ import annotations

import json
from typing import Any

from bot.cli.render import buttons_of, say, slack_message_text, view_of
from bot.cli.world import APPROVALS, MARIA, SAM, World
from bot.slack.ui import ids
from services.refunds import cases


async def show(world: World) -> None:
    assert world.slack is not None and world.sender is not None
    store = world.bot.svc.store
    waiting = _card_with(world, ids.DETAILS, ids.APPROVE)
    if waiting is not None:
        say("Sam (staff) clicks Details on a waiting card: the quote in a modal")
        await world.sender.click(ids.DETAILS, buttons_of(waiting)[ids.DETAILS], SAM,
                                 message_ts=waiting["ts"])
        await world.settle()
        print(slack_message_text(view_of(world.slack.calls_to("views.open")[-1].params)))

    card = _card_with(world, ids.MARK_REFUNDED)
    if card is None:
        return
    case = next(c for c in await cases.list_cases(store) if c.booking_code in json.dumps(card))
    left = case.refund_amount
    say(f"The desk refunds {case.money(left)} {case.currency} of {case.booking_code} in cash; "
         "Maria clicks Mark refunded")
    await world.sender.click(ids.MARK_REFUNDED, buttons_of(card)[ids.MARK_REFUNDED], MARIA,
                             message_ts=card["ts"])
    await world.settle()
    view = view_of(world.slack.calls_to("views.open")[-1].params)
    await world.sender.submit_view(ids.MANUAL_VIEW, {
        ids.AMOUNT_BLOCK: {ids.AMOUNT_INPUT: case.money(left).split(" ")[0]},
        ids.METHOD_BLOCK: {ids.METHOD_INPUT: "cash"},
        ids.REFERENCE_BLOCK: {ids.REFERENCE_INPUT: "till receipt 0042"}},
        MARIA, view["private_metadata"])
    await world.settle()
    print("  the card, updated in place:")
    print(slack_message_text(world.slack.message(APPROVALS, card["ts"])))
    closed = await cases.get(store, case.id)
    print(f"  case #{closed.id} is now {closed.status.value}")


def _card_with(world: World, *action_ids: str) -> dict[str, Any] | None:
    assert world.slack is not None
    return next((m for m in reversed(world.slack.messages_in(APPROVALS))
                 if all(a in buttons_of(m) for a in action_ids)), None)

