"""Helpers for the ownership, reminder and Home tab tests: Slack requests the stand-in's sender
does not build (a static select, a message shortcut), and the safety check over every call."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from bot.cli.world import World
from sandbox.slack_requests import TEAM
from tests.slack_text_checks import unsafe


async def select(world: World, action_id: str, value: str, user: str) -> Any:
    """A static select's choice on the Home tab, as Slack posts it."""
    assert world.sender is not None
    return await world.sender.select(action_id, value, user)


async def message_shortcut(world: World, callback_id: str, text: str, user: str,
                           channel: str = "C0APPROVE") -> Any:
    """A message shortcut on a message saying `text`, as Slack posts it."""
    assert world.sender is not None
    payload = {
        "type": "message_action", "callback_id": callback_id, "team": TEAM,
        "user": {"id": user, "username": user.lower(), "team_id": TEAM["id"]},
        "channel": {"id": channel, "name": "refunds"}, "api_app_id": "A0SANDBOX",
        "trigger_id": f"trigger.{time.time_ns()}", "action_ts": str(time.time()),
        "message_ts": "1700000000.000200", "response_url": world.sender._response_url(),
        "message": {"type": "message", "user": "U0JOE", "ts": "1700000000.000200",
                    "text": text},
    }
    return await world.sender.post(urlencode({"payload": json.dumps(payload)}))


def unsafe_calls(world: World) -> list[str]:
    """What any call the bot made to the stand-in would let Slack parse as live."""
    assert world.slack is not None
    return [f"{c.method}: {p}" for c in world.slack.calls for p in unsafe(c.params)]
