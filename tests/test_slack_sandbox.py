"""The Slack stand-in, driven over HTTP by slack_sdk's AsyncWebClient and Bolt's respond()."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack_server import RESPONSE_URL, UPLOAD, SlackSandbox

TOKEN = "xoxb-sandbox-token"


@pytest.fixture
async def slack() -> AsyncIterator[SlackSandbox]:
    sandbox = SlackSandbox(usergroups={"S0APPROVERS": ["U0ANA", "U0BEN"]})
    sandbox.add_user("U0ANA", "ana", "Ana Silva", tz="Europe/Lisbon")
    sandbox.add_channel("C0REFUNDS", "refunds")
    server = await sandbox.serve()
    try:
        yield sandbox
    finally:
        await server.stop()


def client_for(slack: SlackSandbox, token: str | None = TOKEN, **kwargs: object) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=slack.api_url, **kwargs)  # type: ignore[arg-type]


async def test_auth_test_answers_the_bot_identity(slack: SlackSandbox) -> None:
    result = await client_for(slack).auth_test()
    assert result["ok"] is True
    assert (result["user_id"], result["bot_id"], result["team_id"]) == (
        slack.bot_user_id, slack.bot_id, slack.team_id)
    call = slack.calls_to("auth.test")[0]
    assert call.headers["Authorization"] == "Bearer xoxb-..."  # token not kept in full
    assert call.ok and not call.faulted


async def test_post_then_update_changes_the_stored_card(slack: SlackSandbox) -> None:
    client = client_for(slack)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Refund 75.00 USD?"}}]
    posted = await client.chat_postMessage(channel="C0REFUNDS", text="Refund?", blocks=blocks)
    second = await client.chat_postMessage(channel="C0REFUNDS", text="another")
    ts = posted["ts"]
    assert re.fullmatch(r"\d{10}\.\d{6}", ts) and abs(float(ts) - time.time()) < 60   # when
    assert float(second["ts"]) > float(ts)
    assert posted["message"]["blocks"] == blocks
    assert slack.calls_to("chat.postMessage")[0].params["blocks"] == blocks  # sent as JSON

    done = [{"type": "section", "text": {"type": "mrkdwn", "text": "Refunded by <@U0ANA>"}}]
    updated = await client.chat_update(channel="C0REFUNDS", ts=ts, text="Refunded", blocks=done)
    assert (updated["channel"], updated["ts"]) == ("C0REFUNDS", ts)
    card = slack.message("C0REFUNDS", ts)
    assert card["blocks"] == done and card["text"] == "Refunded" and "edited" in card

    await client.chat_update(channel="C0REFUNDS", ts=ts, text="Refunded (final)")
    assert slack.message("C0REFUNDS", ts)["blocks"] == done  # omitted blocks are kept

    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C0REFUNDS", ts="1.000001", text="x")
    assert err.value.response["error"] == "message_not_found"
    assert err.value.response.status_code == 200


async def test_thread_replies_and_ephemeral(slack: SlackSandbox) -> None:
    client = client_for(slack)
    parent = await client.chat_postMessage(channel="C0REFUNDS", text="card")
    await client.chat_postMessage(channel="C0REFUNDS", text="done", thread_ts=parent["ts"])
    assert [m["text"] for m in slack.replies("C0REFUNDS", parent["ts"])] == ["done"]
    eph = await client.chat_postEphemeral(channel="C0REFUNDS", user="U0ANA", text="not allowed")
    assert eph["message_ts"]
    with pytest.raises(SlackApiError) as err, pytest.warns(UserWarning, match="text"):
        await client.chat_postMessage(channel="C0REFUNDS")
    assert err.value.response["error"] == "no_text"


async def test_rate_limit_is_retried_after_retry_after(slack: SlackSandbox) -> None:
    slack.inject("chat.postMessage", status=429, retry_after=1)
    client = client_for(slack, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)])
    started = time.monotonic()
    result = await client.chat_postMessage(channel="C0REFUNDS", text="hello")
    elapsed = time.monotonic() - started
    assert result["ok"] is True
    assert elapsed >= 1.0
    first, second = slack.calls_to("chat.postMessage")
    assert (first.faulted, first.status, first.error) == (True, 429, "ratelimited")
    assert (second.faulted, second.status) == (False, 200)
    assert second.at - first.at >= 1.0
    assert len(slack.messages) == 1  # the rate-limited call posted nothing


async def test_rate_limit_without_a_handler_raises(slack: SlackSandbox) -> None:
    slack.inject("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as err:
        await client_for(slack).chat_postMessage(channel="C0REFUNDS", text="hello")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"
    assert err.value.response["error"] == "ratelimited"


async def test_server_errors_are_retried(slack: SlackSandbox) -> None:
    slack.inject("chat.update", status=500, times=2)
    posted = await client_for(slack).chat_postMessage(channel="C0REFUNDS", text="card")
    handler = AsyncServerErrorRetryHandler(
        max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(0.01))
    client = client_for(slack, retry_handlers=[handler])
    result = await client.chat_update(channel="C0REFUNDS", ts=posted["ts"], text="v2")
    assert result["ok"] is True
    calls = slack.calls_to("chat.update")
    assert [(c.faulted, c.status) for c in calls] == [(True, 500), (True, 500), (False, 200)]
    assert slack.message("C0REFUNDS", posted["ts"])["text"] == "v2"


async def test_server_error_outlasting_the_retries_raises(slack: SlackSandbox) -> None:
    slack.inject("auth.test", status=503, times=2)
    handler = AsyncServerErrorRetryHandler(
        max_retry_count=1, interval_calculator=FixedValueRetryIntervalCalculator(0.01))
    with pytest.raises(SlackApiError) as err:
        await client_for(slack, retry_handlers=[handler]).auth_test()
    assert err.value.response.status_code == 503
    assert len(slack.calls_to("auth.test")) == 2


async def test_injected_api_error_and_delay(slack: SlackSandbox) -> None:
    slack.inject("chat.postMessage", status=200, error="not_in_channel", delay=0.05)
    started = time.monotonic()
    with pytest.raises(SlackApiError) as err:
        await client_for(slack).chat_postMessage(channel="C0REFUNDS", text="x")
    assert time.monotonic() - started >= 0.05
    assert err.value.response["error"] == "not_in_channel"
    assert slack.calls_to("chat.postMessage")[0].faulted
    assert (await client_for(slack).chat_postMessage(channel="C0REFUNDS", text="x"))["ok"]


async def test_bad_or_missing_token(slack: SlackSandbox) -> None:
    with pytest.raises(SlackApiError) as err:
        await client_for(slack, token="xoxp-not-a-bot").chat_postMessage(
            channel="C0REFUNDS", text="x")
    assert err.value.response["error"] == "invalid_auth"
    assert err.value.response.status_code == 200
    with pytest.raises(SlackApiError) as err:
        await client_for(slack, token=None).auth_test()
    assert err.value.response["error"] == "not_authed"
    assert slack.messages == {}


async def test_exact_token_when_configured() -> None:
    slack = SlackSandbox(token=TOKEN)
    server = await slack.serve()
    try:
        assert (await client_for(slack).auth_test())["ok"]
        with pytest.raises(SlackApiError) as err:
            await client_for(slack, token="xoxb-other").auth_test()
        assert err.value.response["error"] == "invalid_auth"
    finally:
        await server.stop()


async def test_files_upload_v2_round_trip(slack: SlackSandbox) -> None:
    content = b"case,amount\n42,75.00\n"
    result = await client_for(slack).files_upload_v2(
        channel="C0REFUNDS", filename="refunds.csv", content=content, title="Refunds today",
        initial_comment="Daily digest")
    assert result["ok"] is True
    [stored] = slack.files.values()
    assert (stored.filename, stored.content, stored.title) == ("refunds.csv", content,
                                                                "Refunds today")
    assert (stored.channel, stored.initial_comment, stored.completed) == (
        "C0REFUNDS", "Daily digest", True)
    assert stored.length == len(content)
    assert result["files"][0]["id"] == stored.id
    [upload] = slack.calls_to(UPLOAD)
    assert upload.params == {"file_id": stored.id, "length": len(content),
                             "filename": "refunds.csv"}
    assert [c.method for c in slack.calls] == [
        "files.getUploadURLExternal", UPLOAD, "files.completeUploadExternal"]


async def test_lookups_sent_as_get(slack: SlackSandbox) -> None:
    client = client_for(slack)
    members = await client.usergroups_users_list(usergroup="S0APPROVERS")
    assert members["users"] == ["U0ANA", "U0BEN"]
    user = (await client.users_info(user="U0ANA"))["user"]
    assert (user["id"], user["name"], user["real_name"], user["tz"]) == (
        "U0ANA", "ana", "Ana Silva", "Europe/Lisbon")
    channel = (await client.conversations_info(channel="C0REFUNDS"))["channel"]
    assert (channel["id"], channel["name"]) == ("C0REFUNDS", "refunds")
    assert {c.http_method for c in slack.calls} == {"GET"}
    for call, error in [(client.users_info(user="U0NOBODY"), "user_not_found"),
                        (client.usergroups_users_list(usergroup="S0NONE"), "no_such_subteam"),
                        (client.conversations_info(channel="C0NONE"), "channel_not_found")]:
        with pytest.raises(SlackApiError) as err:
            await call
        assert err.value.response["error"] == error


async def test_views_open_update_and_hash_conflict(slack: SlackSandbox) -> None:
    client = client_for(slack)
    modal = {"type": "modal", "callback_id": "deny",
             "title": {"type": "plain_text", "text": "Deny refund"}, "blocks": []}
    opened = (await client.views_open(trigger_id="123.456.abc", view=modal))["view"]
    assert opened["id"] and opened["callback_id"] == "deny"
    changed = {**modal, "blocks": [{"type": "section",
                                    "text": {"type": "plain_text", "text": "Sure?"}}]}
    updated = (await client.views_update(view_id=opened["id"], view=changed,
                                         hash=opened["hash"]))["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    assert slack.views[opened["id"]]["blocks"] == changed["blocks"]
    with pytest.raises(SlackApiError) as err:
        await client.views_update(view_id=opened["id"], view=modal, hash=opened["hash"])
    assert err.value.response["error"] == "hash_conflict"
    pushed = (await client.views_push(trigger_id="123.456.def", view=modal))["view"]
    assert pushed["id"] != opened["id"]


async def test_respond_posts_to_the_response_url(slack: SlackSandbox) -> None:
    respond = AsyncRespond(response_url=slack.response_url("r1"))
    sent = await respond(text="Approved", replace_original=True)
    assert sent.status_code == 200
    [call] = slack.calls_to(RESPONSE_URL)
    assert call.params == {"text": "Approved", "replace_original": True, "response_id": "r1"}
    assert slack.responses["r1"] == [{"text": "Approved", "replace_original": True}]
    for _ in range(4):
        await respond(text="again")
    assert (await respond(text="sixth")).status_code == 404  # five uses per URL


async def test_form_bodies_and_unknown_methods(slack: SlackSandbox) -> None:
    async with aiohttp.ClientSession() as http:
        form = {"token": TOKEN, "channel": "C0REFUNDS", "text": "hi",
                "blocks": '[{"type": "divider"}]'}
        async with http.post(slack.api_url + "chat.postMessage", data=form) as res:
            body = await res.json()
        assert body["ok"] is True and body["message"]["blocks"] == [{"type": "divider"}]
        call = slack.calls_to("chat.postMessage")[0]
        assert "token" not in call.params  # never recorded
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(slack.api_url + "no.such", headers=headers) as res:
            assert (res.status, await res.json()) == (200, {"ok": False,
                                                            "error": "unknown_method"})
        async with http.post(slack.api_url + "chat.postMessage", data="{not json",
                             headers={**headers, "Content-Type": "application/json"}) as res:
            assert (await res.json())["error"] == "invalid_json"


async def test_wait_for_sees_calls_made_concurrently(slack: SlackSandbox) -> None:
    client = client_for(slack)

    async def later() -> None:
        await asyncio.sleep(0.02)
        await client.chat_postMessage(channel="C0REFUNDS", text="one")
        await client.chat_postMessage(channel="C0REFUNDS", text="two")

    task = asyncio.create_task(later())
    calls = await slack.wait_for("chat.postMessage", count=2, timeout=2.0)
    await task
    assert [c.params["text"] for c in calls] == ["one", "two"]
    assert len(slack.messages) == 2  # answered and stored before wait_for returns
    with pytest.raises(TimeoutError):
        await slack.wait_for("chat.update", timeout=0.05)
    slack.clear()
    assert slack.calls == [] and len(slack.messages) == 2
