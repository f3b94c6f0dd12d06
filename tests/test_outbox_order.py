"""A card's later change is never lost behind the update that was on its way when it came."""

from __future__ import annotations

from typing import Any

from bot.cli.world import APPROVALS, World
from bot.slack.ui import ids
from services.refunds import cases
from services.refunds.models import Status
from tests.test_slack import buttons, pending_card


async def test_a_change_queued_while_the_card_update_is_on_its_way_is_drawn_after_it(
        sworld: World) -> None:
    case, card = await pending_card(sworld, "RACE-1")
    assert sworld.bot.slack is not None and sworld.slack is not None
    outbox = sworld.bot.slack.outbox
    real_update = outbox.client.chat_update
    moved = False

    async def update_then_the_case_moves(**kwargs: Any) -> Any:
        nonlocal moved
        answer = await real_update(**kwargs)   # Slack has the card as drawn before the move
        if not moved:
            moved = True   # meanwhile a person denies it, and its new state is queued
            await cases.deny(sworld.bot.svc.store, case.id, by="maria", reason="no-show")
            await outbox.add(APPROVALS, "card", case.id)
        return answer

    outbox.client.chat_update = update_then_the_case_moves  # type: ignore[method-assign]
    await outbox.add(APPROVALS, "card", case.id)   # a redraw of the waiting card
    await sworld.settle()

    assert (await cases.get(sworld.bot.svc.store, case.id)).status == Status.DENIED
    final = sworld.slack.message(APPROVALS, card["ts"])
    assert ids.APPROVE not in buttons(final), "the card still offers Approve on a denied case"
