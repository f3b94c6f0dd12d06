"""The Home tab's waiting list: filters (taken by me, within my limit, all), pages past ten
rows, Open card on each row, search by booking; and the message shortcut that quotes the
booking a message names."""

from __future__ import annotations

import json
from typing import Any

from bot.cli.world import APPROVALS, FIONA, JOE, MARIA, SAM, Item, World
from bot.slack.ui import ids
from bot.slack.ui.home import OPEN_CARD
from handlers.slack.shortcuts import booking_codes
from services.refunds import cases, ownership
from tests.flow_helpers import message_shortcut, select, unsafe_calls
from tests.slack_helpers import buttons, responses


def rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in view["blocks"] if b.get("type") == "section"
            and (b.get("accessory") or {}).get("action_id", "").startswith(OPEN_CARD)]


async def waiting_cases(world: World, n: int) -> list[int]:
    for i in range(n):
        code = f"PAGE-{i:02d}"
        world.paid_booking(code, [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
        await world.cancel(code)
    await world.settle()
    return sorted(c.id for c in await cases.list_cases(world.bot.svc.store))


async def test_the_waiting_list_pages_past_ten_rows_and_links_each_card(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    ids_ = await waiting_cases(sworld, 12)
    await sworld.sender.home_opened(MARIA)
    await sworld.settle()
    first = sworld.slack.home_views[MARIA]
    text = json.dumps(first["blocks"])
    assert "Waiting for approval (12)" in text and "Page 1 of 2" in text
    assert len(rows(first)) == 10
    card = next(m for m in sworld.slack.messages_in(APPROVALS) if "PAGE-00" in json.dumps(m))
    link = rows(first)[0]["accessory"]
    assert link["url"].endswith(f"/archives/{APPROVALS}/p{card['ts'].replace('.', '')}")
    assert link["text"]["text"] == "Open card"
    assert set(buttons(first)) >= {ids.HOME_PAGE, ids.HOME_SEARCH}

    await sworld.sender.click(buttons(first)[ids.HOME_PAGE]["action_id"],
                              buttons(first)[ids.HOME_PAGE]["value"], MARIA)
    await sworld.settle()
    second = sworld.slack.home_views[MARIA]
    assert len(rows(second)) == 2 and "Page 2 of 2" in json.dumps(second["blocks"])
    assert buttons(second)[ids.HOME_PAGE]["text"]["text"] == "Previous"
    assert f"case #{ids_[-1]}*" in json.dumps(second["blocks"])

    answer = await sworld.sender.click(f"{OPEN_CARD}:{ids_[0]}", "", MARIA)   # a link: ack
    assert answer.status_code == 200
    assert unsafe_calls(sworld) == []


async def test_filters_show_mine_and_within_my_limit(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    ids_ = await waiting_cases(sworld, 3)
    await ownership.claim(sworld.bot.svc.store, ids_[1], MARIA)

    await select(sworld, ids.HOME_FILTER, "mine", MARIA)
    await select(sworld, ids.HOME_FILTER, "limit", JOE)        # joe approves up to 300.00
    await select(sworld, ids.HOME_FILTER, "limit", FIONA)      # a finance lead: any amount
    await select(sworld, ids.HOME_FILTER, "limit", SAM)        # staff: approves nothing
    await sworld.settle()

    mine = sworld.slack.home_views[MARIA]
    assert "taken by you (1)" in json.dumps(mine["blocks"])
    assert [r["accessory"]["action_id"] for r in rows(mine)] == [f"{OPEN_CARD}:{ids_[1]}"]
    assert f"<@{MARIA}> is on it" in json.dumps(mine["blocks"])
    chosen = next(e for b in mine["blocks"] if b["type"] == "actions" for e in b["elements"]
                  if e["action_id"] == ids.HOME_FILTER)["initial_option"]["value"]
    assert chosen == "mine"
    assert "within your limit (0)" in json.dumps(sworld.slack.home_views[JOE]["blocks"])
    assert len(rows(sworld.slack.home_views[FIONA])) == 3
    assert "within your limit (0)" in json.dumps(sworld.slack.home_views[SAM]["blocks"])
    assert unsafe_calls(sworld) == []


async def test_search_by_booking_opens_a_modal_and_draws_the_booking_s_cases(
    sworld: World,
) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    ids_ = await waiting_cases(sworld, 2)
    await sworld.sender.click(ids.HOME_SEARCH, "search", SAM)
    await sworld.settle()
    opened = sworld.slack.calls_to("views.open")[-1].params
    view = json.loads(opened["view"]) if isinstance(opened["view"], str) else opened["view"]
    assert view["callback_id"] == ids.SEARCH_VIEW

    empty = await sworld.sender.submit_view(
        ids.SEARCH_VIEW, {ids.SEARCH_BLOCK: {ids.SEARCH_INPUT: "  "}}, SAM, "")
    assert empty.json()["response_action"] == "errors"
    found = await sworld.sender.submit_view(
        ids.SEARCH_VIEW, {ids.SEARCH_BLOCK: {ids.SEARCH_INPUT: "page-01"}}, SAM, "")
    await sworld.settle()
    assert found.status_code == 200 and not found.text
    home = json.dumps(sworld.slack.home_views[SAM]["blocks"])
    assert "Cases of booking `page-01` (1)" in home and f"case #{ids_[1]}*" in home
    assert "Clear search" in home

    missing = await sworld.sender.submit_view(
        ids.SEARCH_VIEW, {ids.SEARCH_BLOCK: {ids.SEARCH_INPUT: "<!channel> NOPE"}}, SAM, "")
    await sworld.settle()
    assert missing.status_code == 200
    home = json.dumps(sworld.slack.home_views[SAM]["blocks"])
    assert "(0)" in home and "/refund quote" in home
    assert unsafe_calls(sworld) == []


def test_booking_codes_are_found_in_message_text() -> None:
    assert booking_codes("Guest on kmvq-060314 (and KMVQ-060314, ABCD-123456) cancelled") == [
        "KMVQ-060314", "ABCD-123456"]
    assert booking_codes("XKMVQ-0603149 or ABC-123456 or order 2026-120101") == []


async def test_the_message_shortcut_quotes_the_booking_a_message_names(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    sworld.paid_booking("SHRT-000001", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    answer = await message_shortcut(sworld, ids.QUOTE_SHORTCUT,
                                    "Customer on shrt-000001 wants to cancel <!here>", SAM)
    assert answer.status_code == 200
    await sworld.settle()
    await message_shortcut(sworld, ids.QUOTE_SHORTCUT, "no booking in here", SAM)
    await sworld.settle()

    said = responses(sworld)
    assert "Refund quote for SHRT-000001: 95.00 USD" in said
    assert any("found no Checkfront booking code" in t for t in said)
    quote = next(c.params for c in sworld.slack.calls_to("response_url")
                 if c.params.get("text", "").startswith("Refund quote"))
    assert quote["response_type"] == "ephemeral" and ids.REQUEST in json.dumps(quote)
    assert unsafe_calls(sworld) == []
