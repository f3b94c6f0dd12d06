"""Malformed input on every route gets a clear 4xx with a reason, never a 5xx, and changes
nothing: deep JSON, form keys nested without end, unreadable Slack timestamps and payloads."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import quote

import httpx
import pytest

from bot.cli.world import SLACK_SIGNING_SECRET, STRIPE_WEBHOOK_SECRET, World
from sandbox.stripe_webhooks import sign
from services.refunds import cases

DEEP_JSON = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 5000 + b"1" + b"}" * 5000


async def stored_rows(world: World) -> dict[str, int]:
    """Row counts of every table a request could change."""
    counts = {}
    for table in ("webhook_events", "audit_log", "cases", "slack_outbox"):
        row = await world.bot.svc.store.fetch_one(f"SELECT COUNT(*) AS n FROM {table}")
        assert row is not None
        counts[table] = int(row["n"])
    return counts


def slack_headers(body: bytes, *, timestamp: str | None = None,
                  content_type: str = "application/x-www-form-urlencoded") -> dict[str, str]:
    """Headers signed over the raw bytes, as Slack signs them (not only UTF-8 text)."""
    ts = timestamp or str(int(time.time()))
    digest = hmac.new(SLACK_SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body,
                      hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}",
            "Content-Type": content_type}


@pytest.mark.parametrize(("body", "content_type"), [
    (DEEP_JSON, "application/json"),
    (DEEP_OBJECT, "application/json"),
    (b'{"booking":' + b"[" * 200 + b"]" * 200 + b"}", "application/json"),
    (b"booking" + b"[x]" * 5000 + b"=1", "application/x-www-form-urlencoded"),
])
async def test_checkfront_bodies_nested_too_deep_are_400(world: World, body: bytes,
                                                          content_type: str) -> None:
    before = await stored_rows(world)
    async with httpx.AsyncClient() as client:
        answer = await client.post(world.webhook_url(), content=body,
                                   headers={"Content-Type": content_type})
    await world.settle()

    assert answer.status_code == 400
    assert "nested deeper than" in answer.json()["error"]
    assert await stored_rows(world) == before
    assert await cases.list_cases(world.bot.svc.store) == []


async def test_a_signed_stripe_body_nested_too_deep_is_400(world: World) -> None:
    body = b'{"id": "evt_deep", "type": "refund.updated", "data": ' + DEEP_JSON + b"}"
    before = await stored_rows(world)
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{world.bot_url}/webhooks/stripe", content=body, headers={
            "Stripe-Signature": sign(body, STRIPE_WEBHOOK_SECRET, int(time.time())),
            "Content-Type": "application/json"})

    assert answer.status_code == 400
    assert await stored_rows(world) == before


@pytest.mark.parametrize("timestamp", ["abc", "", "1e9", "-", "9" * 400])
async def test_an_unsigned_slack_request_with_a_bad_timestamp_is_401(sworld: World,
                                                                      timestamp: str) -> None:
    before = await stored_rows(sworld)
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{sworld.bot_url}/slack/events", content=b"payload=%7B%7D",
                                   headers={"X-Slack-Request-Timestamp": timestamp,
                                            "X-Slack-Signature": "v0=00",
                                            "Content-Type": "application/x-www-form-urlencoded"})

    assert answer.status_code == 401
    assert await stored_rows(sworld) == before
    assert sworld.bot.rejections.counts == {("slack", "bad signature"): 1}


@pytest.mark.parametrize(("body", "content_type", "why"), [
    (b"payload=" + quote("{not json").encode(), "application/x-www-form-urlencoded",
     "payload is not JSON"),
    (b"payload=%FF%FE", "application/x-www-form-urlencoded", "payload is not JSON"),
    (b"\xff\xfe=1", "application/x-www-form-urlencoded", "body is not UTF-8"),
    (b"payload=5", "application/x-www-form-urlencoded", "payload is not a JSON object"),
    (b"payload=%22text%22", "application/x-www-form-urlencoded", "payload is not a JSON object"),
    (b"payload=null", "application/x-www-form-urlencoded", "payload is not a JSON object"),
    (b"payload=" + quote("[1]").encode(), "application/x-www-form-urlencoded",
     "payload is not a JSON object"),
    (b"payload=" + quote(DEEP_JSON.decode()).encode(), "application/x-www-form-urlencoded",
     "nested deeper than"),
    (b"{not json", "application/json", "payload is not JSON"),
    (b"[1, 2]", "application/json", "payload is not a JSON object"),
    (b'{"type": "event_callback", "event": ' + DEEP_JSON + b"}", "application/json",
     "nested deeper than"),
])
async def test_signed_slack_bodies_that_cannot_be_read_are_400(
    sworld: World, body: bytes, content_type: str, why: str,
) -> None:
    before = await stored_rows(sworld)
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{sworld.bot_url}/slack/events", content=body,
                                   headers=slack_headers(body, content_type=content_type))
    await sworld.settle()

    assert answer.status_code == 400, answer.text
    assert why in answer.json()["error"]
    assert await stored_rows(sworld) == before
    assert sworld.bot.rejections.total("slack") == 1


@pytest.mark.parametrize("payload", [
    {"type": "block_actions", "user": 5, "actions": [{"action_id": "refund_approve"}]},
    {"type": "block_actions", "user": {"id": "U0MARIA"}, "actions": []},
    {"type": "block_actions", "user": {"id": "U0MARIA"}, "actions": "approve"},
    {"type": "block_actions", "team": 7, "user": {"id": "U0MARIA"},
     "actions": [{"action_id": "refund_approve", "value": 5}]},
    {"type": "view_submission", "user": {"id": "U0MARIA"}, "view": "x"},
    {"type": "event_callback", "event": "app_home_opened"},
    {"type": "event_callback", "event": {"type": "app_home_opened", "tab": "home"}},
])
async def test_signed_slack_payloads_of_the_wrong_shape_are_not_a_5xx(
    sworld: World, payload: dict[str, object],
) -> None:
    body = b"payload=" + quote(json.dumps(payload)).encode()
    before = await stored_rows(sworld)
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{sworld.bot_url}/slack/events", content=body,
                                   headers=slack_headers(body))
    await sworld.settle()

    assert answer.status_code < 500, answer.text
    assert await stored_rows(sworld) == before
    assert sworld.bot.worker.failures == []


async def test_a_slack_body_over_the_size_limit_is_413(sworld: World) -> None:
    body = b"payload=" + b"x" * (300 * 1024)
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{sworld.bot_url}/slack/events", content=body,
                                   headers=slack_headers(body))
    assert answer.status_code == 413
