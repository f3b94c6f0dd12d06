"""A property sweep against the running app: generated webhook bodies and Slack requests,
signed and not, well-formed and not. Never a 5xx; a rejected request changes nothing stored.

The world (stand-ins and the bot, Slack over HTTP) runs on an event loop in a thread of its
own for the whole module, so each generated example is a plain HTTP request to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import string
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.cli.world import (
    FIONA,
    MARIA,
    SAM,
    SLACK_SIGNING_SECRET,
    STRIPE_WEBHOOK_SECRET,
    WEBHOOK_TOKEN,
    World,
)
from bot.slack.ui import ids
from sandbox.stripe_webhooks import sign

T = TypeVar("T")
SWEEP = settings(max_examples=700, deadline=None,  # 2,100 bad requests a run, about 20 s
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Running:
    """The world's loop in its thread, and a client to call the bot with."""

    def __init__(self, world: World, loop: asyncio.AbstractEventLoop,
                 client: httpx.Client) -> None:
        self.world, self.loop, self.client = world, loop, client

    def __repr__(self) -> str:
        return f"Running({self.world.bot_url})"

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=60)

    def stored(self) -> dict[str, int]:
        """Every table's row count, once the bot's background work has gone quiet."""
        return self.call(_stored(self.world))

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(f"{self.world.bot_url}{path}", content=body, headers=headers)


async def _stored(world: World) -> dict[str, int]:
    await world.settle()
    store = world.bot.svc.store
    tables = await store.fetch_all(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    counts = {}
    for table in tables:
        row = await store.fetch_one(f'SELECT COUNT(*) FROM "{table["name"]}"')
        counts[table["name"]] = int(row[0]) if row else 0
    return counts


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sweep-world", daemon=True)
    thread.start()
    folder: Path = tmp_path_factory.mktemp("sweep")
    world = asyncio.run_coroutine_threadsafe(World.start(folder, slack=True), loop).result(60)
    with httpx.Client(timeout=30) as client:
        yield Running(world, loop, client)
    asyncio.run_coroutine_threadsafe(world.stop(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def check(running: Running, path: str, body: bytes, headers: dict[str, str]) -> None:
    """The property: no 5xx, and a refusal (4xx) leaves every table as it was."""
    before = running.stored()
    answer = running.post(path, body, headers)
    assert answer.status_code < 500, (answer.status_code, answer.text, body[:300])
    if answer.status_code >= 400:
        assert running.stored() == before, (answer.status_code, answer.text, body[:300])


# --- what is generated ---------------------------------------------------------------------

KEYS = st.sampled_from([
    "type", "id", "user", "user_id", "actions", "action_id", "value", "view", "callback_id",
    "private_metadata", "state", "values", "team", "team_id", "event", "event_id", "channel",
    "container", "message_ts", "tab", "trigger_id", "booking", "status", "code", "order",
    "items", "item", "total", "transaction", "data", "object", "@attributes", "booking_id",
]) | st.text(max_size=6)
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=12) | st.sampled_from([MARIA, FIONA, SAM, "STOP", "PAID"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(KEYS, inner, max_size=5), max_leaves=20)
DEEP = st.integers(40, 3000).flatmap(lambda n: st.sampled_from([
    "[" * n + "]" * n, '{"a":' * n + "1" + "}" * n, '{"booking":' + "[" * n + "]" * n + "}"]))
TEXTS = st.one_of(VALUES.map(json.dumps), DEEP, st.text(max_size=120),
                  st.just("{"), st.just('{"a": 1e99999}'), st.just("1" * 5000))
BODIES = st.one_of(TEXTS.map(str.encode), st.binary(max_size=200))
HEADER_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "=-_.:,", max_size=30)
CONTENT_TYPES = st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                                 "text/plain", "multipart/form-data", ""])
FORM_KEYS = st.text(alphabet="abk[]@_", min_size=1, max_size=40)
FORMS = st.lists(st.tuples(FORM_KEYS, st.text(max_size=10)), max_size=6).map(
    lambda pairs: urlencode(pairs).encode())
SLACK_TYPES = st.sampled_from(["block_actions", "view_submission", "view_closed",
                               "event_callback", "shortcut", "message_action",
                               "url_verification", "block_suggestion"]) | st.text(max_size=5)
PAYLOADS = st.builds(lambda kind, rest: {**rest, "type": kind}, SLACK_TYPES,
                     st.dictionaries(KEYS, VALUES, max_size=6))
COMMANDS = st.fixed_dictionaries({
    "command": st.sampled_from(["/refund", "/other"]) | st.text(max_size=6),
    "text": st.sampled_from(["help", "quote", "status X", "report a b"]) | st.text(max_size=20),
    "user_id": st.sampled_from([MARIA, SAM, ""]) | st.text(max_size=5),
}, optional={"channel_id": st.text(max_size=8), "team_id": st.text(max_size=8)}).map(
    lambda form: urlencode(form).encode())
USERS = st.sampled_from([MARIA, FIONA, SAM]) | st.text(max_size=5)
CLICKS = st.fixed_dictionaries({
    "type": st.just("block_actions"),
    "user": st.fixed_dictionaries({"id": USERS}) | VALUES,
    "actions": st.lists(st.fixed_dictionaries({
        "action_id": st.sampled_from([ids.APPROVE, ids.DENY, ids.ADJUST, ids.RETRY, ids.REQUEST,
                                      ids.RESUME, ids.HOME_RESUME, *ids.ACTIONS]),
        "value": st.text(max_size=40) | VALUES}), max_size=2),
}, optional={"channel": VALUES, "container": VALUES, "team": VALUES, "message": VALUES})
VIEWS = st.fixed_dictionaries({
    "type": st.just("view_submission"),
    "user": st.fixed_dictionaries({"id": USERS}),
    "view": st.fixed_dictionaries({
        "callback_id": st.sampled_from([ids.DENY_VIEW, ids.ADJUST_VIEW]),
        "private_metadata": st.text(max_size=40),
        "state": st.fixed_dictionaries({"values": VALUES})}) | VALUES,
})
SLACK_BODIES = st.one_of(
    PAYLOADS.map(lambda p: b"payload=" + quote(json.dumps(p)).encode()),
    st.one_of(CLICKS, VIEWS).map(lambda p: b"payload=" + quote(json.dumps(p)).encode()),
    PAYLOADS.map(lambda p: json.dumps(p).encode()),
    TEXTS.map(lambda t: b"payload=" + quote(t).encode()),
    COMMANDS, BODIES, FORMS)


def slack_signed(body: bytes, timestamp: str) -> str:
    digest = hmac.new(SLACK_SIGNING_SECRET.encode(), b"v0:" + timestamp.encode() + b":" + body,
                      hashlib.sha256).hexdigest()
    return f"v0={digest}"


# --- the sweep -----------------------------------------------------------------------------

@SWEEP
@given(body=st.one_of(BODIES, FORMS), content_type=CONTENT_TYPES,
       token=st.sampled_from([WEBHOOK_TOKEN, WEBHOOK_TOKEN + "x", "guess"]))
def test_checkfront_webhook_bodies(running: Running, body: bytes, content_type: str,
                                   token: str) -> None:
    check(running, f"/webhooks/checkfront/{token}", body, {"Content-Type": content_type})


EVENTS = st.builds(
    lambda event_id, kind, obj: json.dumps({"id": event_id, "type": kind, "object": "event",
                                            "data": {"object": obj}}).encode(),
    st.text(max_size=10), st.sampled_from(["refund.updated", "charge.refunded",
                                           "customer.created"]) | st.text(max_size=8), VALUES)


@SWEEP
@given(body=st.one_of(BODIES, EVENTS), signed=st.booleans(), header=HEADER_TEXT)
def test_stripe_webhook_bodies(running: Running, body: bytes, signed: bool,
                               header: str) -> None:
    signature = sign(body, STRIPE_WEBHOOK_SECRET, int(time.time())) if signed else header
    check(running, "/webhooks/stripe", body, {"Stripe-Signature": signature,
                                              "Content-Type": "application/json"})


@SWEEP
@given(body=SLACK_BODIES, content_type=CONTENT_TYPES, signed=st.booleans(),
       timestamp=HEADER_TEXT, signature=HEADER_TEXT,
       retry=st.none() | st.sampled_from(["0", "1", "2", "x"]))
def test_slack_requests(running: Running, body: bytes, content_type: str, signed: bool,
                        timestamp: str, signature: str, retry: str | None) -> None:
    if signed:
        timestamp = str(int(time.time()))
        signature = slack_signed(body, timestamp)
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp,
               "X-Slack-Signature": signature}
    if retry is not None:
        headers["X-Slack-Retry-Num"] = retry
    check(running, "/slack/events", body, headers)
