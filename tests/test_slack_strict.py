"""The Slack stand-in refuses what Slack refuses: blocks over Block Kit's limits, posts to
channels that are unknown or lack the bot, direct messages while the Messages tab is off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack_methods import MANIFEST, manifest_messages_tab
from sandbox.slack_server import RESPONSE_URL, SlackSandbox

TOKEN = "xoxb-sandbox-token"


@pytest.fixture
async def slack() -> AsyncIterator[SlackSandbox]:
    sandbox = SlackSandbox()
    sandbox.add_user("U0ANA", "ana")
    sandbox.add_user("U0OTHERBOT", "otherbot", is_bot=True)
    sandbox.add_channel("C0REFUNDS", "refunds")
    sandbox.add_channel("C0OUTSIDE", "general", is_member=False)
    sandbox.add_channel("C0SECRET", "finance", is_private=True, is_member=False)
    server = await sandbox.serve()
    try:
        yield sandbox
    finally:
        await server.stop()


def client(slack: SlackSandbox) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=slack.api_url)


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(action_id: str, text: str = "Approve", value: str = "1") -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "value": value,
            "text": {"type": "plain_text", "text": text}}


def actions(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "actions", "elements": list(elements)}


def context(n: int) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": f"c{i}"}
                                            for i in range(n)]}


def fields(n: int, length: int = 10) -> dict[str, Any]:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * length}
                                          for _ in range(n)]}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


# (what, blocks over the limit, Slack's message, blocks at the limit)
OVER: list[tuple[str, list[dict[str, Any]], str, list[dict[str, Any]]]] = [
    ("section text", [section("x" * 3001)],
     "must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
     [section("x" * 3000)]),
    ("blocks", [section("a")] * 51, "no more than 50 items allowed [json-pointer:/blocks]",
     [section("a")] * 50),
    ("fields", [fields(11)], "no more than 10 items allowed [json-pointer:/blocks/0/fields]",
     [fields(10)]),
    ("field text", [fields(1, 2001)],
     "must be less than 2001 characters [json-pointer:/blocks/0/fields/0/text]",
     [fields(1, 2000)]),
    ("header", [header("h" * 151)],
     "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
     [header("h" * 150)]),
    ("header type", [{"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}],
     "must be one of plain_text [json-pointer:/blocks/0/text/type]", [header("h")]),
    ("button text", [actions(button("a", text="b" * 76))],
     "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]",
     [actions(button("a", text="b" * 75))]),
    ("button value", [actions(button("a", value="v" * 2001))],
     "must be less than 2001 characters [json-pointer:/blocks/0/elements/0/value]",
     [actions(button("a", value="v" * 2000))]),
    ("action_id", [actions(button("a" * 256))],
     "must be less than 256 characters [json-pointer:/blocks/0/elements/0/action_id]",
     [actions(button("a" * 255))]),
    ("block_id", [{**section("a"), "block_id": "b" * 256}],
     "must be less than 256 characters [json-pointer:/blocks/0/block_id]",
     [{**section("a"), "block_id": "b" * 255}]),
    ("actions elements", [actions(*[button(f"a{n}") for n in range(26)])],
     "no more than 25 items allowed [json-pointer:/blocks/0/elements]",
     [actions(*[button(f"a{n}") for n in range(25)])]),
    ("context elements", [context(11)],
     "no more than 10 items allowed [json-pointer:/blocks/0/elements]", [context(10)]),
    ("duplicate action_id", [actions(button("approve"), button("approve"))],
     "duplicate action_id 'approve' [json-pointer:/blocks/0/elements/1/action_id]",
     [actions(button("approve"), button("deny"))]),
    ("duplicate block_id", [{**section("a"), "block_id": "b"}, {**section("c"), "block_id": "b"}],
     "duplicate block_id 'b' [json-pointer:/blocks/1/block_id]",
     [{**section("a"), "block_id": "b"}, {**section("c"), "block_id": "c"}]),
    ("empty text", [section("")],
     "must be more than 0 characters [json-pointer:/blocks/0/text/text]", [section(" x")]),
]


@pytest.mark.parametrize(("over", "message", "at_limit"), [o[1:] for o in OVER],
                         ids=[o[0] for o in OVER])
async def test_blocks_over_a_limit_are_invalid_blocks(
    slack: SlackSandbox, over: list[dict[str, Any]], message: str,
    at_limit: list[dict[str, Any]],
) -> None:
    with pytest.raises(SlackApiError) as err:
        await client(slack).chat_postMessage(channel="C0REFUNDS", text="t", blocks=over)
    answer = err.value.response
    assert (answer.status_code, answer["error"]) == (200, "invalid_blocks")
    assert message in answer["errors"]
    assert f"[ERROR] {message}" in answer["response_metadata"]["messages"]
    assert slack.messages == {}  # refused: nothing posted
    assert slack.calls_to("chat.postMessage")[0].details == answer["errors"]
    posted = await client(slack).chat_postMessage(channel="C0REFUNDS", text="t",
                                                  blocks=at_limit)
    assert posted["ok"] is True


async def test_update_and_ephemeral_are_checked_too(slack: SlackSandbox) -> None:
    web = client(slack)
    posted = await web.chat_postMessage(channel="C0REFUNDS", text="card", blocks=[section("a")])
    with pytest.raises(SlackApiError) as err:
        await web.chat_update(channel="C0REFUNDS", ts=posted["ts"], text="x",
                              blocks=[section("a")] * 51)
    assert err.value.response["error"] == "invalid_blocks"
    assert slack.message("C0REFUNDS", posted["ts"])["blocks"] == [section("a")]  # unchanged
    with pytest.raises(SlackApiError) as err:
        await web.chat_postEphemeral(channel="C0REFUNDS", user="U0ANA", text="x",
                                     blocks=[header("h" * 151)])
    assert err.value.response["error"] == "invalid_blocks"


async def test_message_text_is_truncated_at_40000_not_refused(slack: SlackSandbox) -> None:
    web = client(slack)
    posted = await web.chat_postMessage(channel="C0REFUNDS", text="y" * 40_001)
    assert posted["ok"] is True
    assert len(slack.message("C0REFUNDS", posted["ts"])["text"]) == 40_000
    await web.chat_update(channel="C0REFUNDS", ts=posted["ts"], text="z" * 50_000)
    assert slack.message("C0REFUNDS", posted["ts"])["text"] == "z" * 40_000


async def test_a_response_url_refuses_invalid_blocks(slack: SlackSandbox) -> None:
    async with httpx.AsyncClient() as http:
        refused = await http.post(slack.response_url("r1"),
                                  json={"text": "x", "blocks": [section("x" * 3001)]})
        accepted = await http.post(slack.response_url("r1"),
                                   json={"text": "x", "blocks": [section("x")]})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_blocks"
    assert accepted.status_code == 200
    assert slack.responses["r1"] == [{"text": "x", "blocks": [section("x")]}]
    assert [c.ok for c in slack.calls_to(RESPONSE_URL)] == [False, True]


def modal(**changes: Any) -> dict[str, Any]:
    view: dict[str, Any] = {"type": "modal", "callback_id": "deny",
                            "title": {"type": "plain_text", "text": "Deny refund"},
                            "submit": {"type": "plain_text", "text": "Deny"},
                            "close": {"type": "plain_text", "text": "Cancel"},
                            "blocks": [section("Why?")]}
    view.update(changes)
    return view


def plain(n: int) -> dict[str, str]:
    return {"type": "plain_text", "text": "t" * n}


VIEWS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("title", modal(title=plain(25)), "/view/title/text", modal(title=plain(24))),
    ("submit", modal(submit=plain(25)), "/view/submit/text", modal(submit=plain(24))),
    ("close", modal(close=plain(25)), "/view/close/text", modal(close=plain(24))),
    ("callback_id", modal(callback_id="c" * 256), "/view/callback_id",
     modal(callback_id="c" * 255)),
    ("private_metadata", modal(private_metadata="m" * 3001), "/view/private_metadata",
     modal(private_metadata="m" * 3000)),
    ("blocks", modal(blocks=[section("a")] * 101), "/view/blocks",
     modal(blocks=[section("a")] * 100)),
]


@pytest.mark.parametrize(("over", "pointer", "at_limit"), [v[1:] for v in VIEWS],
                         ids=[v[0] for v in VIEWS])
async def test_views_over_a_limit_are_invalid_arguments(
    slack: SlackSandbox, over: dict[str, Any], pointer: str, at_limit: dict[str, Any],
) -> None:
    web = client(slack)
    with pytest.raises(SlackApiError) as err:
        await web.views_open(trigger_id="1.2.a", view=over)
    answer = err.value.response
    assert answer["error"] == "invalid_arguments"
    [message] = answer["response_metadata"]["messages"]
    assert message.startswith("[ERROR] ") and message.endswith(f"[json-pointer:{pointer}]")
    assert slack.views == {}
    opened = (await web.views_open(trigger_id="1.2.b", view=at_limit))["view"]
    with pytest.raises(SlackApiError) as err:
        await web.views_update(view_id=opened["id"], view=over)
    assert err.value.response["error"] == "invalid_arguments"


async def test_home_tab_allows_100_blocks(slack: SlackSandbox) -> None:
    web = client(slack)
    home = {"type": "home", "blocks": [section("a")] * 100}
    assert (await web.views_publish(user_id="U0ANA", view=home))["ok"]
    with pytest.raises(SlackApiError) as err:
        await web.views_publish(user_id="U0ANA", view={**home, "blocks": [section("a")] * 101})
    assert err.value.response["response_metadata"]["messages"] == [
        "[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"]
    assert len(slack.home_views["U0ANA"]["blocks"]) == 100  # the refused one not published


async def post_error(slack: SlackSandbox, channel: str) -> str:
    with pytest.raises(SlackApiError) as err:
        await client(slack).chat_postMessage(channel=channel, text="hello")
    return str(err.value.response["error"])


async def test_the_configured_channels_have_the_bot(slack: SlackSandbox) -> None:
    web = client(slack)
    for channel in ("C0APPROVE", "C0DIGEST"):
        info = (await web.conversations_info(channel=channel))["channel"]
        assert info["is_member"] is True
        assert (await web.chat_postMessage(channel=channel, text="hi"))["ok"]
    assert SlackSandbox(workspace_channels={}).channels == {}


async def test_posts_need_a_known_channel_with_the_bot_in_it(slack: SlackSandbox) -> None:
    web = client(slack)
    assert await post_error(slack, "C0NOWHERE") == "channel_not_found"
    assert await post_error(slack, "C0OUTSIDE") == "not_in_channel"
    assert await post_error(slack, "C0SECRET") == "channel_not_found"  # private: unseen
    with pytest.raises(SlackApiError) as err:
        await web.chat_postEphemeral(channel="C0OUTSIDE", user="U0ANA", text="x")
    assert err.value.response["error"] == "not_in_channel"
    assert slack.messages == {}

    slack.add_member("C0OUTSIDE")   # /invite @refund-bot
    posted = await web.chat_postMessage(channel="C0OUTSIDE", text="now in")
    assert (await web.conversations_info(channel="C0OUTSIDE"))["channel"]["is_member"] is True
    slack.remove_member("C0OUTSIDE")
    assert await post_error(slack, "C0OUTSIDE") == "not_in_channel"
    assert [m["ts"] for m in slack.messages_in("C0OUTSIDE")] == [posted["ts"]]
    slack.add_channel("C0OLD", "old", is_archived=True)
    assert await post_error(slack, "C0OLD") == "is_archived"


async def test_uploads_are_shared_only_where_the_bot_is(slack: SlackSandbox) -> None:
    web = client(slack)
    with pytest.raises(SlackApiError) as err:
        await web.files_upload_v2(channel="C0OUTSIDE", filename="r.csv", content=b"a,b\n")
    assert err.value.response["error"] == "not_in_channel"
    [upload] = slack.files.values()
    assert upload.completed is False and upload.channel is None
    with pytest.raises(SlackApiError) as err:
        await web.files_upload_v2(channel="U0ANA", filename="r.csv", content=b"a,b\n")
    assert err.value.response["error"] == "messages_tab_disabled"
    done = await web.files_upload_v2(channel="C0REFUNDS", filename="r.csv", content=b"a,b\n")
    assert done["files"][0]["channels"] == ["C0REFUNDS"]


def test_the_messages_tab_follows_the_app_manifest(tmp_path: Path) -> None:
    assert SlackSandbox().messages_tab_enabled is manifest_messages_tab(MANIFEST)
    assert manifest_messages_tab(MANIFEST) is False   # manifest.yml keeps the tab off
    enabled = tmp_path / "manifest.yml"
    enabled.write_text("features:\n  app_home:\n    messages_tab_enabled: true\n")
    assert SlackSandbox(manifest=enabled).messages_tab_enabled is True
    assert SlackSandbox(messages_tab_enabled=True).messages_tab_enabled is True


async def test_no_dms_while_the_messages_tab_is_off(slack: SlackSandbox) -> None:
    web = client(slack)
    assert await post_error(slack, "U0ANA") == "messages_tab_disabled"
    assert await post_error(slack, slack.dm_channel("U0ANA")) == "messages_tab_disabled"
    with pytest.raises(SlackApiError) as err:
        await web.conversations_open(users="U0ANA")
    assert err.value.response["error"] == "messages_tab_disabled"
    assert slack.messages == {}


async def test_dms_when_the_messages_tab_is_on(slack: SlackSandbox) -> None:
    slack.messages_tab_enabled = True
    web = client(slack)
    posted = await web.chat_postMessage(channel="U0ANA", text="decided")
    assert posted["channel"] == "D0ANA"
    assert [m["text"] for m in slack.messages_in("D0ANA")] == ["decided"]
    opened = await web.conversations_open(users="U0ANA")
    assert opened["channel"]["id"] == "D0ANA"
    assert await post_error(slack, "U0OTHERBOT") == "cannot_dm_bot"
    assert await post_error(slack, slack.bot_user_id) == "cannot_dm_bot"
    assert await post_error(slack, "U0NOBODY") == "channel_not_found"
    with pytest.raises(SlackApiError) as err:
        await web.conversations_open(users="U0NOBODY")
    assert err.value.response["error"] == "user_not_found"
