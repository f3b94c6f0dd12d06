"""Quotes for a moment: `/refund quote <booking> [at <time>] [waiver CODE]`; Request refund on
a booking already cancelled quotes it at its cancellation, and whoever pressed it is told
privately where they asked once the case is decided."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.cli.world import APPROVALS, FIONA, SAM, Item, World
from bot.slack.ui import ids
from handlers.slack.commands import parse_quote_args
from services.refunds import cases, requests
from services.refunds.models import Status
from services.store.db import utcnow
from tests.flow_helpers import unsafe_calls
from tests.slack_helpers import buttons, responses
from tests.test_slack import pending_card

NY = ZoneInfo("America/New_York")


def test_the_quote_arguments_read_a_time_in_the_business_zone_or_iso() -> None:
    assert parse_quote_args(["KMVQ-060314"], NY) == ("KMVQ-060314", None, None)
    asked = parse_quote_args(["KMVQ-060314", "at", "2026-12-01", "14:00"], NY)
    assert asked.at == datetime(2026, 12, 1, 19, 0, tzinfo=UTC)       # EST is UTC-5
    asked = parse_quote_args(["b1", "waiver", "weather", "at", "2026-07-01T09:30+01:00"], NY)
    assert asked == ("b1", datetime(2026, 7, 1, 8, 30, tzinfo=UTC), "WEATHER")
    assert parse_quote_args(["b1", "at", "2026-12-01"], NY).at == datetime(
        2026, 12, 1, 5, 0, tzinfo=UTC)
    assert parse_quote_args(["b1", "at", "2026-12-01T14:00Z"], NY).at == datetime(
        2026, 12, 1, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize("words", [["b1", "at"], ["b1", "at", "tomorrow"], ["b1", "soon"],
                                   ["b1", "waiver"], ["b1", "at", "2026-13-01"],
                                   ["b1", "at", "2026-12-01", "at", "2026-12-02"]])
def test_the_quote_arguments_refuse_what_they_cannot_read(words: list[str]) -> None:
    with pytest.raises(ValueError):
        parse_quote_args(words, NY)


async def test_a_quote_at_a_moment_is_priced_then_and_offers_no_request(sworld: World) -> None:
    assert sworld.sender is not None
    sworld.paid_booking("WHEN-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    late = (utcnow() + timedelta(hours=71)).strftime("%Y-%m-%d %H:%M")   # 1h before the start

    for text in ("quote WHEN-1", f"quote WHEN-1 at {late}", "quote WHEN-1 at noon"):
        await sworld.sender.command(text, SAM)
        await sworld.settle()

    assert sworld.slack is not None
    now_answer, then_answer, bad = (c.params for c in sworld.slack.calls_to("response_url"))
    assert ids.REQUEST in json.dumps(now_answer)
    assert now_answer["text"] == "Refund quote for WHEN-1: 95.00 USD"   # 72h notice now
    then = json.dumps(then_answer)
    assert "Quoted as if cancelled at <!date^" in then and ids.REQUEST not in then
    assert then_answer["text"] == "Refund quote for WHEN-1: 0.00 USD"  # 1h before the start
    assert "is not a time like 2026-12-01 14:00" in str(bad.get("text") or json.dumps(bad))
    for hostile in ("at <!channel>", "at 2026-12-01 <@U123>", "waiver <https://evil.example|x>",
                    "<!here> at"):
        await sworld.sender.command(f"quote WHEN-1 {hostile}", SAM)
    await sworld.settle()
    assert len(sworld.slack.calls_to("response_url")) == 7
    assert unsafe_calls(sworld) == []
    assert await cases.list_cases(sworld.bot.svc.store) == []


async def test_request_refund_on_a_cancelled_booking_uses_its_cancellation_time(
    sworld: World,
) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    first, _ = await pending_card(sworld, "WHEN-2")
    store = sworld.bot.svc.store
    await cases.deny(store, first.id, by=FIONA, reason="customer asked to wait")
    await sworld.settle()
    booking_id = str(sworld.checkfront.booking("WHEN-2").booking_id)
    raw_now = utcnow()
    await sworld.sender.command("quote WHEN-2", SAM)
    await sworld.settle()
    assert any("Quoted at its cancellation, <!date^" in json.dumps(c.params)
               for c in sworld.slack.calls_to("response_url"))

    await sworld.sender.click(ids.REQUEST, json.dumps({"b": booking_id, "w": None}), SAM)
    await sworld.settle()

    second = next(c for c in await cases.list_cases(store) if c.id != first.id)
    assert second.source == "slack" and second.requested_by == SAM
    assert second.cancelled_at == first.cancelled_at                # not the click's time
    assert datetime.fromisoformat(second.cancelled_at) < raw_now
    asked = await requests.of(store, second.id)
    assert asked is not None and (asked.user, asked.channel) == (SAM, APPROVALS)


async def test_whoever_asked_is_told_privately_once_when_it_is_decided(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    sworld.paid_booking("TELL-1", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    booking_id = str(sworld.checkfront.booking("TELL-1").booking_id)
    await sworld.sender.click(ids.REQUEST, json.dumps({"b": booking_id, "w": None}), SAM)
    await sworld.settle()
    case = (await cases.list_cases(sworld.bot.svc.store))[0]
    assert case.status == Status.PENDING_APPROVAL
    assert sworld.slack.calls_to("chat.postEphemeral") == []        # not decided yet

    card = sworld.slack.messages_in(APPROVALS)[-1]
    await sworld.sender.click(ids.APPROVE, buttons(card)[ids.APPROVE]["value"], FIONA)
    await sworld.settle()
    await sworld.bot.svc.notifier.case_updated(await cases.get(sworld.bot.svc.store, case.id))
    await sworld.settle()                                            # told again: still once

    notes = [c.params for c in sworld.slack.calls_to("chat.postEphemeral")
             if c.params.get("user") == SAM]
    assert len(notes) == 1
    assert notes[0]["channel"] == APPROVALS
    assert "TELL-1" in notes[0]["text"] and "was refunded" in notes[0]["text"]
    assert f"<@{FIONA}>" in notes[0]["text"]
    assert sworld.slack.calls_to("conversations.open") == []        # no DM: no Messages tab
    assert any("opened" in t for t in responses(sworld))
    assert unsafe_calls(sworld) == []
