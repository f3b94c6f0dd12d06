"""Structured logs (bot/logs.py) and the correlation id (services/correlation.py): the scrubbing
processor, the fields of a line, the id's scope, its place in the audit rows, and one
cancellation end to end through `python -m bot serve` (json by default), every line parsed."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import logs
from bot.settings import LogSettings
from sandbox.checkfront_server import CheckfrontSandbox
from sandbox.http import start
from sandbox.slack_server import SlackSandbox
from sandbox.stripe_server import StripeSandbox
from services import correlation
from services.money import to_minor
from services.store import audit
from services.store.db import Store
from tests.served import TOKEN, free_port, serve

EMAIL, PHONE = "zuzanna.quiroga@example.test", "+44 20 7946 0958"
FIRST, LAST = "Zuzanna", "Quiroga-Blythe"


@contextlib.contextmanager
def captured(fmt: logs.LogFormat = "json", level: int = logging.DEBUG) -> Iterator[io.StringIO]:
    """The root logger's records, formatted by the bot's formatter, into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter(fmt))
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


# --- the scrubbing processor ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "label"), [
    (f"mail {EMAIL} now", "[email]"),
    (f"call {PHONE}", "[phone]"),
    ("call (415) 555-0132", "[phone]"),
    ("call 415-555-0132", "[phone]"),
    ("card 4242 4242 4242 4242", "[card]"),
    ("card 4000056655665556", "[card]"),
    ("key sk_live_51HxYzAbCdEf", "[secret]"),
    ("key rk_test_51HxYzAbCdEf", "[secret]"),
    ("secret whsec_abc123DEF", "[secret]"),
    ("token xoxb-1234-5678-abcdEFGH", "[secret]"),
    ("token xapp-1-A0-1234-abcd", "[secret]"),
    ("Authorization: Bearer abcdefgh12345678", "[secret]"),
    ("Authorization: Basic a2V5OnNlY3JldA==", "[secret]"),
])
def test_redact_text_replaces_pii_and_secrets(text: str, label: str) -> None:
    redacted = logs.redact_text(text)
    assert label in redacted
    assert not any(part in redacted for part in (EMAIL, "7946", "555-0132", "4242", "5556",
                                                 "51HxYz", "abc123", "abcdEFGH", "abcdefgh",
                                                 "a2V5"))


@pytest.mark.parametrize("text", [
    "event stripe/refund.created 12: case 3 refunded",
    "2026-11-24T10:00:00+00:00 amount 9500 USD",
    "refund re_3PxYz123456789012 of pi_3PxYz1234567890123",
    "card 4242 4242 4242 4241",             # fails the Luhn check: not a card number
    "took 0.004512s, 1732442400 epoch",
    "POST /webhooks/checkfront/*** HTTP/1.1 200",
])
def test_redact_text_leaves_ordinary_lines_alone(text: str) -> None:
    assert logs.redact_text(text) == text


def test_scrub_drops_contact_fields_and_redacts_secret_fields() -> None:
    event = {
        "event": f"booking for {EMAIL}", "correlation_id": "ev-1", "case_id": 4,
        "customer_email": EMAIL, "phone": PHONE, "customer_name": f"{FIRST} {LAST}",
        "name": FIRST, "api_key": "k-123", "authorization": "Basic xyz", "stripe_token": "t",
        "amount": 9500, "booking": {"code": "AB-1", "customer": {"name": f"{FIRST} {LAST}",
                                                                "email": EMAIL},
                                    "fields": {"phone": PHONE}, "note": f"ring {PHONE}"},
        "ids": ["re_1", EMAIL],
    }
    kept = logs.scrub(None, "info", event)
    assert kept["event"] == "booking for [email]"
    assert (kept["correlation_id"], kept["case_id"], kept["amount"]) == ("ev-1", 4, 9500)
    for gone in ("customer_email", "phone", "customer_name", "name"):
        assert gone not in kept
    assert kept["api_key"] == kept["authorization"] == kept["stripe_token"] == "[redacted]"
    assert kept["booking"] == {"code": "AB-1", "note": "ring [phone]"}
    assert kept["ids"] == ["re_1", "[email]"]
    rendered = json.dumps(kept)
    assert not any(s in rendered for s in (EMAIL, "7946", FIRST, LAST, "k-123", "xyz"))


# --- a line --------------------------------------------------------------------------------

def test_a_json_line_carries_time_level_logger_and_the_bound_case() -> None:
    log = logging.getLogger("refund.test")
    with captured() as out:
        with correlation.scope("ev-7", booking_code="AB-7"):
            correlation.bind(case_id=12)
            log.info("case %s refunded to %s", 12, EMAIL)
        log.warning("no correlation here")
    first, second = lines(out)
    assert list(first)[:7] == ["timestamp", "level", "logger", "event", "correlation_id",
                               "case_id", "booking_code"]
    assert (first["level"], first["logger"], first["event"]) == \
        ("info", "refund.test", "case 12 refunded to [email]")
    assert (first["correlation_id"], first["case_id"], first["booking_code"]) == \
        ("ev-7", 12, "AB-7")
    moment = datetime.fromisoformat(first["timestamp"])
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0
    assert "correlation_id" not in second and second["level"] == "warning"


def test_a_traceback_is_one_scrubbed_field_of_its_line() -> None:
    with captured() as out:
        try:
            raise ValueError(f"no booking for {EMAIL}")
        except ValueError:
            logging.getLogger("refund.test").exception("lookup failed")
    (line,) = lines(out)
    assert "ValueError: no booking for [email]" in line["exception"]
    assert EMAIL not in out.getvalue()


def test_nothing_is_formatted_below_the_level() -> None:
    formatted = []

    class Costly:
        def __str__(self) -> str:
            formatted.append(1)
            return "costly"

    with captured(level=logging.INFO) as out:
        logging.getLogger("refund.test").debug("detail %s", Costly())
    assert formatted == [] and out.getvalue() == ""


def test_the_text_format_is_one_readable_line_with_the_same_fields() -> None:
    with captured("text") as out, correlation.scope("sl-abc", case_id=5):
        logging.getLogger("refund.test").info("approved by %s", EMAIL)
    text = out.getvalue()
    assert text.count("\n") == 1 and not text.startswith("{")
    assert "approved by [email]" in text and "correlation_id=sl-abc" in text
    assert "case_id=5" in text and "[refund.test]" in text


def test_setup_replaces_its_own_handler_and_log_format_is_read() -> None:
    root = logging.getLogger()
    level = root.level
    try:
        first = logs.setup(level="INFO", fmt="json", stream=io.StringIO())
        second = logs.setup(level="INFO", fmt="text", stream=io.StringIO())
        assert second in root.handlers and first not in root.handlers
    finally:
        root.removeHandler(second)
        root.setLevel(level)
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logs.formatter("xml")  # type: ignore[arg-type]
    assert LogSettings(_env_file=None, log_format="").log_format is None  # type: ignore[call-arg]
    assert LogSettings(_env_file=None, log_format="text").log_format == "text"  # type: ignore[call-arg]


# --- the correlation id --------------------------------------------------------------------

async def test_the_correlation_follows_tasks_and_never_leaks_between_them() -> None:
    seen: dict[str, str | None] = {}

    async def child(name: str) -> None:
        await asyncio.sleep(0)
        seen[name] = correlation.correlation_id()

    async def one_event(row: int) -> None:
        correlation.begin(correlation.for_event(row))
        await asyncio.create_task(child(f"child-{row}"))
        seen[f"event-{row}"] = correlation.correlation_id()

    await asyncio.gather(one_event(1), one_event(2))
    assert seen == {"child-1": "ev-1", "event-1": "ev-1", "child-2": "ev-2", "event-2": "ev-2"}
    assert correlation.current() is None
    correlation.bind(case_id=3)   # nothing under way: nothing bound
    assert correlation.current() is None


async def test_audit_rows_carry_the_correlation_id_and_the_chain_holds(tmp_path: Path) -> None:
    store = await Store(tmp_path / "audit.db").open()
    try:
        with correlation.scope("ev-42", case_id=None):
            await audit.record(store, actor="worker", action="test.one", detail={"n": 1})
            await audit.record(store, actor="worker", action="test.two")
        await audit.record(store, actor="cli", action="test.three", detail={"n": 3})
        rows = await store.fetch_all("SELECT action, detail FROM audit_log ORDER BY id")
        details = {r["action"]: json.loads(r["detail"]) for r in rows}
        assert details["test.one"] == {"n": 1, "correlation_id": "ev-42"}
        assert details["test.two"] == {"correlation_id": "ev-42"}
        assert details["test.three"] == {"n": 3}
        assert (await audit.verify(store)).ok
    finally:
        await store.close()


# --- one cancellation, end to end, as deployed ---------------------------------------------

APPROVALS = "C0APPROVE"
SLACK_TOKEN, SIGNING = "xoxb-logs-test-token", "slack-signing-secret-logs"
STRIPE_KEY, STRIPE_WHSEC = "sk_test_logs_key_value", "whsec_logs_secret_value"


async def until(what: Any, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not what():
        assert time.monotonic() < deadline, "not seen in time"
        await asyncio.sleep(0.05)


async def test_one_cancellation_logs_json_under_one_correlation_id_without_pii(
    tmp_path: Path,
) -> None:
    checkfront, stripe, slack = CheckfrontSandbox(), StripeSandbox(), SlackSandbox()
    servers = [await start(checkfront.app()), await start(stripe.app()), await slack.serve()]
    port = free_port()
    stripe.configure_webhook(f"http://127.0.0.1:{port}/webhooks/stripe", STRIPE_WHSEC)
    now = time.time()
    checkfront.add_booking(
        code="LOG-1", status="PAID", currency="USD", customer_name=f"{FIRST} {LAST}",
        customer_email=EMAIL, created_date=int(now - 240 * 3600),
        items=[{"sku": "kayak-tour", "name": "Kayak tour", "item_id": "1",
                "start": int(now + 72 * 3600), "end": int(now + 74 * 3600),
                "total": "120.00", "tax": "0.00", "qty": 1}],
        transactions=[], paid_total="0")
    intent = stripe.add_payment(to_minor(Decimal("120.00"), "USD"), "USD",
                                metadata={"booking": "LOG-1"})
    checkfront.add_transaction("LOG-1", amount="120.00", transaction_id=intent.id,
                               gateway_id="Stripe", date=int(now - 240 * 3600))
    served = await serve(
        tmp_path, port=port, LOG_FORMAT="",   # unset: serve's default, json
        CHECKFRONT_HOST=servers[0].url, CHECKFRONT_API_KEY=checkfront.api_key,
        CHECKFRONT_API_SECRET=checkfront.api_secret, STRIPE_API_BASE=servers[1].url,
        STRIPE_SECRET_KEY=STRIPE_KEY, STRIPE_WEBHOOK_SECRET=STRIPE_WHSEC,
        SLACK_BOT_TOKEN=SLACK_TOKEN, SLACK_SIGNING_SECRET=SIGNING,
        SLACK_API_BASE=slack.api_url, SLACK_APPROVALS_CHANNEL=APPROVALS,
        SLACK_POST_INTERVAL_SECONDS="0.02")
    try:
        booking = checkfront.booking("LOG-1")
        booking.status = "STOP"
        for item in booking.items:
            item.status = "STOP"
        body = checkfront.webhook_body("LOG-1")
        body["booking"]["customer"]["phone"] = PHONE
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{served.url}/webhooks/checkfront/{TOKEN}", json=body)
        assert answer.status_code == 200
        await until(lambda: any(r.status == "succeeded" for r in stripe.refunds))
        await until(lambda: checkfront.notes("LOG-1") and slack.messages_in(APPROVALS))
        await asyncio.sleep(0.5)   # the last posts and their lines
    finally:
        await served.terminate(within=15)
        for server in servers:
            await server.stop()

    parsed = [json.loads(line) for line in served.lines if line.strip()]   # every line
    for line in parsed:
        assert {"timestamp", "level", "logger", "event"} <= set(line), line
        assert line["timestamp"].endswith("Z")
    webhook = [p for p in parsed if p["logger"] == "aiohttp.access"
               and "/webhooks/checkfront/***" in p["event"]]
    assert len(webhook) == 1, served.log
    cid = webhook[0]["correlation_id"]
    assert cid.startswith("ev-")
    ours = [p for p in parsed if p.get("correlation_id") == cid]
    by_logger = {p["logger"] for p in ours}
    assert {"aiohttp.access", "bot.worker", "stripe", "httpx", "bot.slack.outbox"} <= by_logger
    worker = [p for p in ours if p["logger"] == "bot.worker"]
    assert "checkfront/booking" in worker[0]["event"] and "refunded" in worker[0]["event"]
    checkfront_calls = [p for p in ours if p["logger"] == "httpx"]
    assert all(servers[0].url in p["event"] for p in checkfront_calls)
    for call in [p for p in ours if p["logger"] in ("stripe", "bot.slack.outbox")]:
        assert call["booking_code"] == "LOG-1" and isinstance(call["case_id"], int)
    # the phone as written and its digits (not a four-digit part of it: a timestamp's
    # microseconds or a latency may hold any four digits)
    for secret in (EMAIL, PHONE, "7946 0958", "2079460958", FIRST, LAST, TOKEN, SLACK_TOKEN,
                   SIGNING, STRIPE_KEY, STRIPE_WHSEC, checkfront.api_key,
                   checkfront.api_secret):
        assert secret not in served.log, secret

    with contextlib.closing(sqlite3.connect(served.database)) as db:
        details = [json.loads(d) for (d,) in db.execute(
            "SELECT detail FROM audit_log WHERE case_id IS NOT NULL ORDER BY id")]
    opened = [d for d in details if d.get("correlation_id") == cid]
    assert len(opened) >= 3   # case opened, quoted, approved, refunded ... under this id
