"""Customer privacy: what the bot stores and logs keeps the first name and salted hashes of a
customer, never their email, phone or full name, nor any secret the bot was given."""

from __future__ import annotations

import copy
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from bot.app import Bot
from bot.cli.world import (
    SLACK_SIGNING_SECRET,
    STRIPE_WEBHOOK_SECRET,
    WEBHOOK_TOKEN,
    Item,
    World,
)
from bot.scheduler import ScheduledJobs
from bot.settings import load_settings
from sandbox.http import start
from sandbox.stripe_webhooks import sign
from services.intake.events import body_hash, purge_payloads, store_event
from services.privacy import customer_hash, scrub
from services.quoting.booking_read import parse_snapshot
from services.refunds import cases
from services.refunds.execution import execute
from services.refunds.models import Status
from services.refunds.snapshots import quote_snapshot
from services.store import audit
from services.store.db import Store, dumps
from tests.quote_fixtures import booking, item, policies, policy, quote

SALT = "pepper-Zq81-not-for-logs"
FIRST, SURNAME = "Ana", "Quixotelle"
FULL_NAME = f"{FIRST} {SURNAME}"
EMAIL = "ana.quixotelle@mail.example"
PHONE = "+1 555 0199 7788"


def webhook_with_contact_details(world: World, code: str) -> dict[str, Any]:
    """The "Booking Modified" webhook as Checkfront sends it, with the customer's form fields
    (name, email, phone, address) and the phone on the customer too."""
    body = world.checkfront.webhook_body(code)
    booking_ = body["booking"]
    booking_["customer"]["phone"] = PHONE
    booking_["fields"] = {"customer_name": FULL_NAME, "customer_email": EMAIL,
                          "customer_phone": PHONE, "customer_address": "12 Rue Quixotelle"}
    booking_["source_ip"] = "203.0.113.77"
    return body


def stripe_failure_event(intent_id: str) -> dict[str, Any]:
    """A `payment_intent.payment_failed` event whose payment method names the cardholder."""
    billing = {"name": FULL_NAME, "email": EMAIL, "phone": PHONE,
               "address": {"line1": "12 Rue Quixotelle", "city": "Lyon"}}
    return {"id": "evt_priv_1", "object": "event", "type": "payment_intent.payment_failed",
            "data": {"object": {
                "id": intent_id, "object": "payment_intent", "amount": 25000, "currency": "usd",
                "status": "requires_payment_method", "receipt_email": EMAIL,
                "metadata": {"booking": "PRIV-3"},
                "shipping": {"name": FULL_NAME, "phone": PHONE},
                "last_payment_error": {
                    "code": "card_declined", "decline_code": "insufficient_funds",
                    "message": "Your card has insufficient funds.", "type": "card_error",
                    "payment_method": {"id": "pm_priv_1", "object": "payment_method",
                                       "billing_details": billing}}}}}


def secrets_of(world: World) -> dict[str, str]:
    return {"checkfront api key": world.checkfront.api_key,
            "checkfront api secret": world.checkfront.api_secret,
            "checkfront webhook token": WEBHOOK_TOKEN,
            "stripe secret key": "sk_test_sandbox",
            "stripe webhook secret": STRIPE_WEBHOOK_SECRET,
            "slack bot token": "xoxb-sandbox-token",
            "slack signing secret": SLACK_SIGNING_SECRET,
            "customer hash salt": SALT}


def customer_details() -> dict[str, str]:
    digits = "".join(ch for ch in PHONE if ch.isdigit())
    return {"email": EMAIL, "email (any case)": EMAIL.upper(), "phone": PHONE,
            "phone digits": digits, "surname": SURNAME, "full name": FULL_NAME}


def stored_text(db: Path) -> Iterator[tuple[str, str]]:
    """(table.column, text) of every value of every table of the SQLite file."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as raw:
        tables = [r[0] for r in raw.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cursor = raw.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description]
            for row in cursor:
                for name, value in zip(names, row, strict=True):
                    if value is not None:
                        yield f"{table}.{name}", str(value)


def found(needles: dict[str, str], haystacks: Iterator[tuple[str, str]]) -> list[str]:
    hits = []
    for where, text in haystacks:
        folded = text.casefold()
        hits += [f"{what} in {where}" for what, needle in needles.items()
                 if needle.casefold() in folded]
    return sorted(set(hits))


async def test_a_run_stores_and_logs_no_customer_details_and_no_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    world = await World.start(tmp_path, slack=True, customer_hash_salt=SALT)
    try:
        # an automatic refund, opened by the cancellation webhook
        world.paid_booking("PRIV-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)],
                           customer=FULL_NAME, email=EMAIL)
        # a refund a person approves after the booking changed (re-quoted before Stripe)
        world.paid_booking("PRIV-2", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)],
                           customer=FULL_NAME, email=EMAIL)
        async with httpx.AsyncClient() as client:
            payment = world.checkfront.transaction_webhook_body("PRIV-1")
            payment["transaction"]["payment_customer"] = FULL_NAME
            assert (await client.post(world.webhook_url(), json=payment)).status_code == 200
            for code in ("PRIV-1", "PRIV-2"):
                world.checkfront.booking(code).status = "STOP"
                answer = await client.post(world.webhook_url(),
                                           json=webhook_with_contact_details(world, code))
                assert answer.status_code == 200
            await world.settle()
            waiting = await cases.latest_for_booking(world.bot.svc.store, "PRIV-2")
            assert waiting is not None and waiting.status == Status.PENDING_APPROVAL
            world.checkfront.add_transaction("PRIV-2", amount="10.00", transaction_id="cash-1",
                                             gateway_id="Cash")
            await cases.approve(world.bot.svc.store, waiting.id, by="maria")
            await execute(world.bot.svc, waiting.id, actor="maria")
            body = json.dumps(stripe_failure_event("pi_priv_failed")).encode()
            answer = await client.post(
                f"{world.bot_url}/webhooks/stripe", content=body,
                headers={"Stripe-Signature": sign(body, STRIPE_WEBHOOK_SECRET, int(time.time())),
                         "Content-Type": "application/json"})
            assert answer.status_code == 200
        await world.settle()
        store = world.bot.svc.store
        first = await cases.latest_for_booking(store, "PRIV-1")
        assert first is not None and first.status == Status.REFUNDED
        assert first.customer_hash == customer_hash(EMAIL, SALT)
        quotes = await store.fetch_all("SELECT COUNT(*) AS n FROM quotes WHERE case_id = ?",
                                       (waiting.id,))
        assert quotes[0]["n"] == 2  # the re-quote made before Stripe was kept too
        # the card still greets the customer by first name
        assert world.slack is not None
        assert any(FIRST in json.dumps(m) for m in world.slack.messages_in("C0APPROVE"))
        db = Path(world.bot.settings.database_path)
    finally:
        await world.stop()

    stored = found({**customer_details(), **secrets_of(world)}, stored_text(db))
    assert stored == []
    # nor anywhere in the files' bytes (free pages, the write-ahead log)
    files = [(p.name, p.read_bytes().decode("utf-8", "replace"))
             for p in db.parent.glob(db.name + "*")]
    assert len(files) >= 2
    assert found({**customer_details(), **secrets_of(world)}, iter(files)) == []
    # the bot's own log lines (not the test's requests to the bot, which carry the token)
    lines = [(r.name, r.getMessage() + (r.exc_text or "")) for r in caplog.records
             if world.bot_url not in r.getMessage()]
    assert found({**customer_details(), **secrets_of(world)}, iter(lines)) == []


def checkfront_booking_webhook() -> dict[str, Any]:
    data = booking([item("kayak", "100.00"), item("paddle", "20.00")])
    data["booking"]["customer"] = {"name": FULL_NAME, "email": EMAIL, "phone": PHONE}
    data["booking"]["fields"] = {"customer_name": FULL_NAME, "customer_email": EMAIL,
                                 "customer_phone": PHONE}
    data["booking"]["source_ip"] = "203.0.113.77"
    data["transactions"][0]["payment_customer"] = FULL_NAME
    return data


def test_scrub_keeps_the_first_name_a_salted_email_hash_and_what_quoting_reads() -> None:
    raw = checkfront_booking_webhook()
    before = copy.deepcopy(raw)

    kept = scrub(raw, SALT)

    assert raw == before  # the caller's dict is not changed
    assert kept["booking"]["customer"] == {"name": FIRST, "email_hash": customer_hash(EMAIL, SALT)}
    assert "fields" not in kept["booking"] and "source_ip" not in kept["booking"]
    assert "payment_customer" not in kept["transactions"][0]
    assert kept["booking"]["order"] == raw["booking"]["order"]  # lines, totals, item names
    assert [{k: v for k, v in t.items() if k != "payment_customer"}
            for t in raw["transactions"]] == kept["transactions"]
    assert found(customer_details(), iter([("scrubbed", dumps(kept))])) == []
    assert scrub(kept, SALT) == kept == scrub(kept)  # scrubbing twice changes nothing


def test_scrub_without_a_salt_drops_the_email() -> None:
    kept = scrub(checkfront_booking_webhook())
    assert kept["booking"]["customer"] == {"name": FIRST}


def test_scrub_removes_stripe_contact_details_and_keeps_the_rest() -> None:
    event = stripe_failure_event("pi_1")
    kept = scrub(event, SALT)
    intent = kept["data"]["object"]
    assert "receipt_email" not in intent and "shipping" not in intent
    assert intent["last_payment_error"]["payment_method"] == {"id": "pm_priv_1",
                                                              "object": "payment_method"}
    assert intent["last_payment_error"]["decline_code"] == "insufficient_funds"
    assert (intent["id"], intent["amount"], intent["metadata"]) == (
        "pi_1", 25000, {"booking": "PRIV-3"})
    assert found(customer_details(), iter([("scrubbed", dumps(kept))])) == []


def test_a_scrubbed_snapshot_quotes_exactly_as_the_original() -> None:
    raw = checkfront_booking_webhook()
    book = policies(policy("standard", default=True, fee="5.00"))
    original, kept = parse_snapshot(raw), parse_snapshot(scrub(raw, SALT))
    assert kept.fingerprint == original.fingerprint
    assert kept.customer_first_name == original.customer_first_name == FIRST
    assert kept.customer_key(SALT) == original.customer_key(SALT) == customer_hash(EMAIL, SALT)
    assert quote(scrub(raw, SALT), book) == quote(raw, book)


async def test_stored_events_are_scrubbed_and_processed_as_received(tmp_path: Path) -> None:
    raw = checkfront_booking_webhook()
    async with Store(tmp_path / "e.db") as store:
        event = await store_event(store, source="checkfront", event_id="sha256:x",
                                  kind="booking", payload=raw, salt=SALT)
        assert event is not None and event.payload == raw  # the worker gets it as received
        row = await store.fetch_one("SELECT payload FROM webhook_events")
        assert row is not None
        stored = json.loads(row["payload"])
    assert stored == scrub(raw, SALT)
    assert stored["booking"]["customer"]["email_hash"] == customer_hash(EMAIL, SALT)


async def test_an_event_stored_before_a_crash_keeps_the_customer_hash(world: World) -> None:
    world.paid_booking("LATE-2", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)],
                       customer=FULL_NAME, email=EMAIL)
    world.checkfront.booking("LATE-2").status = "STOP"
    payload = world.checkfront.webhook_body("LATE-2")
    salt = world.bot.svc.config.customer_hash_salt
    await store_event(world.bot.svc.store, source="checkfront",
                      event_id=body_hash(json.dumps(payload).encode()), kind="booking",
                      payload=payload, salt=salt)
    await world.bot.close()

    restarted = await Bot.create(world.bot.settings)
    server = await start(restarted.web)
    try:
        await restarted.worker.drain()
        case = (await cases.list_cases(restarted.svc.store))[0]
        assert case.customer_hash == customer_hash(EMAIL, salt)
    finally:
        await server.stop()


async def test_old_processed_event_bodies_are_purged_and_the_rows_kept(tmp_path: Path) -> None:
    async with Store(tmp_path / "p.db") as store:
        for n in (1, 2, 3):
            await store_event(store, source="stripe", event_id=f"evt_{n}", kind="refund.updated",
                              payload={"id": f"evt_{n}", "data": {"object": {"amount": n}}})
        async with store.transaction() as tx:
            await tx.execute("UPDATE webhook_events SET received_at = '2020-01-01T00:00:00+00:00'"
                             " WHERE event_id IN ('evt_1', 'evt_2')")
            await tx.execute("UPDATE webhook_events SET processed_at = received_at, "
                             "outcome = 'ok' WHERE event_id IN ('evt_1', 'evt_3')")

        assert await purge_payloads(store, timedelta(days=30)) == 1
        assert await purge_payloads(store, timedelta(days=30)) == 0

        rows = await store.fetch_all("SELECT event_id, payload, outcome FROM webhook_events "
                                     "ORDER BY id")
        payloads = {r["event_id"]: json.loads(r["payload"]) for r in rows}
        assert payloads["evt_1"] == {}  # old and processed: the body is gone, the row stays
        assert payloads["evt_2"]["id"] == "evt_2"  # old but not processed yet: still needed
        assert payloads["evt_3"]["id"] == "evt_3"  # processed but recent
        # a redelivery of the purged event is still recognised
        assert await store_event(store, source="stripe", event_id="evt_1", kind="refund.updated",
                                 payload={"id": "evt_1"}) is None
        purged = await store.fetch_all(
            "SELECT detail FROM audit_log WHERE action = 'webhook.purged'")
        assert [json.loads(r["detail"])["events"] for r in purged] == [1]
        assert (await audit.verify(store)).ok


def test_the_retention_setting_reaches_the_domain(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, policy_file=tmp_path / "p.yml",
                             checkfront_host="x", checkfront_api_key="k",
                             checkfront_api_secret="s", checkfront_webhook_secret="w",
                             stripe_secret_key="sk", stripe_webhook_secret="wh",
                             raw_event_retention_days=7)
    assert settings.refund_config().raw_event_retention == timedelta(days=7)


async def test_a_repeat_refunder_requoted_from_the_stored_snapshot_quotes_the_same(
    world: World,
) -> None:
    for n in range(3):
        world.paid_booking(f"AGAIN-{n}", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)],
                           customer=FULL_NAME, email=EMAIL)
        await world.cancel(f"AGAIN-{n}")
        await world.settle()
    third = (await cases.list_cases(world.bot.svc.store))[0]
    assert third.status == Status.PENDING_APPROVAL  # flagged: 2 other refunds
    stored = await cases.current_quote(world.bot.svc.store, third)
    assert EMAIL not in dumps(stored.snapshot)

    _, again = await quote_snapshot(world.bot.svc, stored.snapshot,
                                    datetime.fromisoformat(third.cancelled_at), third.waiver)

    assert again == stored.quote and again.version == third.quote_version
    assert [f.code for f in again.risk_flags] == [f.code for f in stored.quote.risk_flags] != []


async def test_the_daily_job_empties_processed_bodies_past_the_retention(world: World) -> None:
    store = world.bot.svc.store
    await store_event(store, source="stripe", event_id="evt_old", kind="refund.updated",
                      payload={"id": "evt_old"})
    async with store.transaction() as tx:
        await tx.execute("UPDATE webhook_events SET received_at = '2020-01-01T00:00:00+00:00', "
                         "processed_at = '2020-01-01T00:00:01+00:00'")

    await ScheduledJobs(world.bot.svc, ZoneInfo("UTC"), check_checkfront=False).daily()

    row = await store.fetch_one("SELECT payload FROM webhook_events WHERE event_id = 'evt_old'")
    assert row is not None and json.loads(row["payload"]) == {}


async def test_the_webhook_endpoints_store_the_customer_hash(world: World) -> None:
    """An event received over HTTP is stored with the salted email hash, so a restart that
    processes it from the store still recognises a repeat refunder."""
    world.paid_booking("HOOK-1", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)],
                       customer=FULL_NAME, email=EMAIL)
    assert (await world.cancel("HOOK-1")).status_code == 200
    row = await world.bot.svc.store.fetch_one(
        "SELECT payload FROM webhook_events WHERE source = 'checkfront'")
    assert row is not None
    stored = json.loads(row["payload"])
    salt = world.bot.svc.config.customer_hash_salt
    assert stored["booking"]["customer"]["email_hash"] == customer_hash(EMAIL, salt)
    assert EMAIL not in row["payload"]
