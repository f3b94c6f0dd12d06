"""manifest.yml and manifest.socket.yml install as they are: valid against Slack's published
app manifest schema (vendored in tests/data/slack_manifest_schema), the one slash command, the
events, and exactly the bot scopes that the Web API methods the code calls need."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "manifest.yml"
SOCKET_MANIFEST = REPO / "manifest.socket.yml"
SCHEMAS = Path(__file__).resolve().parent / "data" / "slack_manifest_schema"
SCHEMA_BASE = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/"
CODE = ("bot", "handlers", "services")

# Each slack_sdk client method the code may call, the Web API methods it makes and the bot
# scopes Slack's method reference lists for them (an empty set: no scope needed).
SCOPES: dict[str, frozenset[str]] = {
    "auth_test": frozenset(),                          # auth.test
    "apps_connections_open": frozenset(),              # app-level token, connections:write
    "chat_postMessage": frozenset({"chat:write"}),
    "chat_update": frozenset({"chat:write"}),
    "chat_postEphemeral": frozenset({"chat:write"}),
    "chat_delete": frozenset({"chat:write"}),
    "chat_getPermalink": frozenset(),
    "views_open": frozenset(),
    "views_push": frozenset(),
    "views_update": frozenset(),
    "views_publish": frozenset(),
    "usergroups_users_list": frozenset({"usergroups:read"}),
    "users_info": frozenset({"users:read"}),
    # conversations.info takes the :read scope of the channel's kind; the bot's channels are
    # public (channels:read) or private (groups:read), never DMs
    "conversations_info": frozenset({"channels:read", "groups:read"}),
    "conversations_open": frozenset({"im:write"}),
    # files.getUploadURLExternal, the upload, files.completeUploadExternal
    "files_upload_v2": frozenset({"files:write"}),
    "files_getUploadURLExternal": frozenset({"files:write"}),
    "files_completeUploadExternal": frozenset({"files:write"}),
    "files_info": frozenset({"files:read"}),           # a .yml uploaded to /refund simulate
    "reactions_add": frozenset({"reactions:write"}),
    "conversations_history": frozenset({"channels:history", "groups:history"}),
    "conversations_replies": frozenset({"channels:history", "groups:history"}),
}
# Web API method families (calls.* left out: `calls_to` is the Slack stand-in's own method)
FAMILIES = ("admin", "api", "apps", "assistant", "auth", "bookmarks", "bots",
            "canvases", "chat", "conversations", "dialog", "dnd", "emoji", "files",
            "functions", "pins", "reactions", "reminders", "search", "stars", "team",
            "usergroups", "users", "views", "workflows")
CLIENT_CALL = re.compile(r"\.((?:" + "|".join(FAMILIES) + r")_[A-Za-z0-9_]+)\(")
API_CALL = re.compile(r"api_call\(\s*[\"']([a-zA-Z.]+)[\"']")


def load(path: Path = MANIFEST) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def validator() -> Draft7Validator:
    """Slack's top-level manifest schema, its `$ref`s answered from the vendored copies."""
    resources = [(SCHEMA_BASE + name, Resource.from_contents(
        json.loads((SCHEMAS / name).read_text()))) for name in
        ("manifest.schema.1.0.0.json", "manifest.schema.2.0.0.json")]
    schema = json.loads((SCHEMAS / "manifest.schema.json").read_text())
    return Draft7Validator(schema, registry=Registry().with_resources(resources))


def called_methods() -> dict[str, set[str]]:
    """The Web API client methods the code calls, each with the files calling it."""
    found: dict[str, set[str]] = {}
    for folder in CODE:
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text()
            names = set(CLIENT_CALL.findall(text))
            names |= {m.replace(".", "_") for m in API_CALL.findall(text)}
            for name in names:
                found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def required_scopes(manifest: dict[str, Any]) -> set[str]:
    methods = called_methods()
    unknown = sorted(set(methods) - set(SCOPES))
    assert not unknown, (f"add these client methods with their documented scopes to SCOPES: "
                         f"{ {m: sorted(methods[m]) for m in unknown} }")
    needed = set().union(*(SCOPES[m] for m in methods))
    features = manifest.get("features") or {}
    if features.get("slash_commands") or features.get("shortcuts"):
        needed.add("commands")
    return needed


@pytest.mark.parametrize("path", [MANIFEST, SOCKET_MANIFEST], ids=lambda p: p.name)
def test_valid_against_slacks_manifest_schema(path: Path) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator().iter_errors(load(path))]
    assert errors == []


def test_the_schema_refuses_what_slack_refuses() -> None:
    """The vendored schema does catch mistakes (so the test above can fail)."""
    broken = load()
    broken["display_information"]["name"] = "x" * 36          # names are at most 35
    broken["features"]["slash_commands"][0]["command"] = "refund"   # needs the slash
    broken["settings"]["unknown_setting"] = True

    def leaves(errors: Any) -> list[str]:
        found: list[str] = []
        for error in errors:
            found += leaves(error.context) if error.context else [
                f"{'/'.join(map(str, error.absolute_path))}: {error.message}"]
        return found

    messages = set(leaves(validator().iter_errors(broken)))
    for expected in ("display_information/name: '" + "x" * 36 + "' is too long",
                     "features/slash_commands/0/command: 'refund' does not match",
                     "settings: Additional properties are not allowed ('unknown_setting' was "
                     "unexpected)"):
        assert any(m.startswith(expected) for m in messages), (expected, sorted(messages))


def test_every_url_is_the_one_bolt_endpoint() -> None:
    data = load()
    urls = [c["url"] for c in data["features"]["slash_commands"]]
    urls += [data["settings"]["interactivity"]["request_url"],
             data["settings"]["event_subscriptions"]["request_url"]]
    assert urls and all(u.endswith("/slack/events") for u in urls)
    assert data["settings"]["interactivity"]["is_enabled"] is True
    assert data["settings"]["socket_mode_enabled"] is False


def test_the_socket_manifest_is_the_same_app_without_urls() -> None:
    http, socket = load(), load(SOCKET_MANIFEST)
    assert socket["settings"]["socket_mode_enabled"] is True
    text = SOCKET_MANIFEST.read_text()
    assert not re.search(r"^\s*(url|request_url):", text, re.MULTILINE)

    def without_urls(data: Any) -> Any:
        if isinstance(data, dict):
            return {k: without_urls(v) for k, v in data.items()
                    if k not in ("url", "request_url", "socket_mode_enabled")}
        if isinstance(data, list):
            return [without_urls(v) for v in data]
        return data

    assert without_urls(socket) == without_urls(http)


def test_command_events_and_app_home() -> None:
    data = load()
    [command] = data["features"]["slash_commands"]
    assert command["command"] == "/refund" and "quote <booking>" in command["usage_hint"]
    assert data["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert data["features"]["app_home"]["home_tab_enabled"] is True


@pytest.mark.parametrize("path", [MANIFEST, SOCKET_MANIFEST], ids=lambda p: p.name)
def test_bot_scopes_are_exactly_what_the_called_methods_need(path: Path) -> None:
    data = load(path)
    asked = set(data["oauth_config"]["scopes"]["bot"])
    needed = required_scopes(data)
    assert sorted(needed - asked) == [], "the manifest lacks scopes the code needs"
    assert sorted(asked - needed) == [], "the manifest asks for scopes no call uses"


def test_the_method_scan_sees_the_calls_it_must() -> None:
    """The scan finds the calls known to be there (a broken pattern would find none)."""
    methods = called_methods()
    for name in ("chat_postMessage", "chat_update", "views_open", "usergroups_users_list",
                 "files_upload_v2", "conversations_info"):
        assert name in methods, name
