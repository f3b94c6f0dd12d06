"""Reading what the bot posted to the Slack stand-in (shared by the Slack tests)."""

from __future__ import annotations

import json
from typing import Any

from bot.cli.world import World


def all_text(message: dict[str, Any]) -> str:
    return json.dumps(message.get("blocks") or []) + str(message.get("text") or "")


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A message's buttons by action id."""
    return {e["action_id"]: e for b in message.get("blocks") or [] if b.get("type") == "actions"
            for e in b.get("elements", [])}


def responses(world: World) -> list[str]:
    """Texts the bot sent back through response URLs (its private answers), in order."""
    assert world.slack is not None
    return [str(c.params.get("text") or "") for c in world.slack.calls_to("response_url")]
