"""A Slack post is made once though its answer is lost: the outbox looks for it in the
channel's history (by the row's id in the message's metadata) before posting it again."""

from __future__ import annotations

from bot.cli.world import APPROVALS, MARIA, World
from bot.slack.post_once import EVENT_TYPE
from services.refunds import cases
from services.refunds.models import Status
from tests.slack_helpers import all_text
from tests.test_slack import pending_card


async def test_a_card_whose_answer_was_lost_is_posted_once_and_updated_in_place(
        sworld: World) -> None:
    assert sworld.slack is not None and sworld.bot.slack is not None
    sworld.slack.inject("chat.postMessage", status=500, after_processing=True)   # posted

    case, card = await pending_card(sworld, "LOST-1")

    posts = sworld.slack.calls_to("chat.postMessage")
    assert [p.faulted for p in posts] == [True], posts   # no blind retry posted it again
    assert [c["ts"] for c in sworld.slack.messages_in(APPROVALS)] == [card["ts"]]
    assert card["metadata"]["event_type"] == EVENT_TYPE
    assert sworld.slack.calls_to("conversations.history"), "the retry did not look first"
    shown = await sworld.bot.svc.store.fetch_one(
        "SELECT ts FROM slack_messages WHERE case_id = ?", (case.id,))
    assert shown is not None and shown["ts"] == card["ts"]   # the card found is the card
    await cases.deny(sworld.bot.svc.store, case.id, by=MARIA, reason="no-show")
    await sworld.bot.slack.outbox.add(APPROVALS, "card", case.id)
    await sworld.settle()
    assert (await cases.get(sworld.bot.svc.store, case.id)).status == Status.DENIED
    assert [c["ts"] for c in sworld.slack.messages_in(APPROVALS)] == [card["ts"]]
    assert "Denied" in all_text(sworld.slack.message(APPROVALS, card["ts"]))


async def test_a_post_that_never_reached_slack_is_posted_when_tried_again(
        sworld: World) -> None:
    assert sworld.slack is not None
    sworld.slack.inject("chat.postMessage", status=500)   # refused before posting

    _, card = await pending_card(sworld, "LOST-2")

    assert [p.faulted for p in sworld.slack.calls_to("chat.postMessage")] == [True, False]
    assert [c["ts"] for c in sworld.slack.messages_in(APPROVALS)] == [card["ts"]]


async def test_without_the_history_scope_the_post_is_made_again(sworld: World) -> None:
    assert sworld.slack is not None
    sworld.slack.inject("chat.postMessage", status=500, after_processing=True)
    sworld.slack.inject("conversations.history", status=200, error="missing_scope")

    await pending_card(sworld, "LOST-3")

    assert len(sworld.slack.messages_in(APPROVALS)) == 2   # twice at worst, as before
