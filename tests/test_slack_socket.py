"""The same Bolt listeners over Socket Mode: the app dials the Slack stand-in's WebSocket, and
commands, clicks and modal submissions arrive as envelopes it must ack on that socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.cli.world import APPROVALS, MARIA, SAM, Item, World
from bot.slack.ui import ids
from sandbox.slack_server import SlackSandbox
from services.refunds import cases
from services.refunds.models import Status
from tests.slack_helpers import all_text, buttons, responses


@pytest.fixture
async def socket_world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.start(tmp_path, slack=True, socket_mode=True)
    try:
        yield w
    finally:
        await w.stop()


async def test_the_app_connects_with_its_app_token_and_has_no_http_endpoint(
    socket_world: World,
) -> None:
    assert socket_world.slack is not None
    [opened] = socket_world.slack.calls_to("apps.connections.open")
    assert opened.headers["Authorization"].startswith("Bearer xapp-")
    assert len(socket_world.slack.socket.connections) == 1
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{socket_world.bot_url}/slack/events", content=b"x")
    assert answer.status_code in (404, 405)   # nothing listens for Slack over HTTP


async def test_command_and_approve_click_over_the_socket(socket_world: World) -> None:
    assert socket_world.socket is not None and socket_world.slack is not None
    socket_world.paid_booking("SOCK-1", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await socket_world.cancel("SOCK-1")
    await socket_world.settle()
    [case] = await cases.list_cases(socket_world.bot.svc.store)
    card = socket_world.slack.messages_in(APPROVALS)[-1]

    help_ack = await socket_world.socket.command("help", SAM)
    refused = await socket_world.socket.click(
        ids.APPROVE, buttons(card)[ids.APPROVE]["value"], SAM, message_ts=card["ts"])
    approved = await socket_world.socket.click(
        ids.APPROVE, buttons(card)[ids.APPROVE]["value"], MARIA,
        message_ts=card["ts"])
    await socket_world.settle()

    acked = {ack["envelope_id"] for ack in socket_world.slack.socket.acks}
    assert {help_ack["envelope_id"], refused["envelope_id"], approved["envelope_id"]} <= acked
    texts = responses(socket_world)
    assert sorted(texts) == [   # the help and SAM's refusal, each privately
        "Only refund approvers can do that. Ask a manager or finance lead.",
        "Refund bot commands"]
    assert [r.amount for r in socket_world.stripe.refunds] == [case.refund_amount]
    updated = socket_world.slack.message(APPROVALS, card["ts"])
    assert ids.APPROVE not in buttons(updated) and MARIA in all_text(updated)
    assert (await cases.get(socket_world.bot.svc.store, case.id)).status == Status.REFUNDED


async def test_modal_errors_come_back_in_the_ack(socket_world: World) -> None:
    assert socket_world.socket is not None and socket_world.slack is not None
    socket_world.paid_booking("SOCK-2", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await socket_world.cancel("SOCK-2")
    await socket_world.settle()
    card = socket_world.slack.messages_in(APPROVALS)[-1]
    await socket_world.socket.click(ids.ADJUST, buttons(card)[ids.ADJUST]["value"],
                                    MARIA, message_ts=card["ts"])
    await socket_world.settle()
    meta = socket_world.slack.calls_to("views.open")[-1].params["view"]["private_metadata"]

    ack = await socket_world.socket.submit_view(ids.ADJUST_VIEW, {
        ids.AMOUNT_BLOCK: {ids.AMOUNT_INPUT: "12.345"},
        ids.REASON_BLOCK: {ids.REASON_INPUT: "rebooked"}}, MARIA, meta)

    assert ack["payload"]["response_action"] == "errors"
    assert ids.AMOUNT_BLOCK in ack["payload"]["errors"]
    assert socket_world.stripe.refunds == []


async def test_connections_open_wants_the_app_level_token() -> None:
    slack = SlackSandbox()
    server = await slack.serve()
    try:
        async with httpx.AsyncClient() as client:
            bot_token = await client.post(f"{slack.api_url}apps.connections.open",
                                          headers={"Authorization": "Bearer xoxb-bot"})
            app_token = await client.post(f"{slack.api_url}apps.connections.open",
                                          headers={"Authorization": "Bearer xapp-1"})
            forged = await client.get(f"{slack.url}/link/?ticket=guessed")
    finally:
        await server.stop()
    assert bot_token.json() == {"ok": False, "error": "not_allowed_token_type"}
    assert app_token.json()["url"].startswith("ws://127.0.0.1:")
    assert forged.status_code == 401


async def test_the_home_tab_is_drawn_from_an_events_api_envelope(socket_world: World) -> None:
    assert socket_world.slack is not None

    ack = await socket_world.slack.socket.deliver("events_api", {
        "type": "event_callback", "team_id": "T0SANDBOX", "api_app_id": "A0SANDBOX",
        "event": {"type": "app_home_opened", "user": MARIA, "tab": "home",
                  "channel": "D0MARIA", "event_ts": "1.0"},
        "event_id": "Ev0001", "event_time": 1})
    await socket_world.settle()

    assert ack["envelope_id"]
    assert "Automation running" in all_text(socket_world.slack.home_views[MARIA])
