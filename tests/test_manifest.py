"""manifest.yml installs as is: the one slash command, the events and scopes the code uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return data


def test_every_url_is_the_one_bolt_endpoint() -> None:
    data = load()
    urls = [c["url"] for c in data["features"]["slash_commands"]]
    urls += [data["settings"]["interactivity"]["request_url"],
             data["settings"]["event_subscriptions"]["request_url"]]
    assert urls and all(u.endswith("/slack/events") for u in urls)
    assert data["settings"]["interactivity"]["is_enabled"] is True


def test_command_events_and_scopes_are_what_the_code_uses() -> None:
    data = load()
    [command] = data["features"]["slash_commands"]
    assert command["command"] == "/refund" and "quote <booking>" in command["usage_hint"]
    assert data["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert data["features"]["app_home"]["home_tab_enabled"] is True
    assert set(data["oauth_config"]["scopes"]["bot"]) == {
        "chat:write", "commands", "usergroups:read", "files:write",
        "channels:read", "groups:read"}  # the last two: doctor's channel membership check
