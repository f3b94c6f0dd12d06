"""The customer message on the card (issue 13, part 1, the Slack side): the Customer message
button in review mode, the modal with the draft, Send by an approver through the outbox (one
message at the local SMTP server), a refusal for anyone else, a second Send answered in the
modal, a failure shown on the card with Retry; every Slack call is safe text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli.world import APPROVALS, MARIA, SAM, Item, World
from bot.slack.ui import ids
from bot.slack.ui.customer import CustomerForm, customer_modal
from sandbox.smtp import SandboxSmtp
from services.customers import outbox
from services.customers.drafts import Templates
from services.refunds import cases
from services.refunds.models import Case, Status
from services.store import audit
from tests.slack_helpers import buttons, responses
from tests.slack_text_checks import EVIL, unsafe
from tests.test_blocks import check_modal, make_case, make_quote

pytestmark = pytest.mark.both_backends


@pytest.fixture
def smtp() -> Iterator[SandboxSmtp]:
    with SandboxSmtp() as server:
        yield server


@pytest.fixture
async def world(tmp_path: Path, smtp: SandboxSmtp) -> AsyncIterator[World]:
    w = await World.start(tmp_path, slack=True, smtp_url=smtp.url, customer_messages="review",
                          customer_mail_attempts=1)
    try:
        yield w
    finally:
        await w.stop()


async def approved(world: World, code: str) -> tuple[Case, str]:
    """A cancellation a person approves: its case (refunded) and its card's ts, the message
    drafted (review mode) and the card refreshed."""
    assert world.slack is not None and world.sender is not None
    world.paid_booking(code, [Item("kayak-tour", "630.00", "30.00", 96, "Sunset kayak")])
    await world.cancel(code)
    await world.settle()
    card = next(m for m in world.slack.messages_in(APPROVALS) if code in json.dumps(m)
                and ids.APPROVE in buttons(m))
    await world.sender.click(ids.APPROVE, buttons(card)[ids.APPROVE]["value"], MARIA,
                             message_ts=card["ts"])
    await world.settle()
    assert world.bot.mail is not None
    await world.bot.mail.run_once()   # review mode: the row becomes a draft
    await world.settle()
    case = next(c for c in await cases.list_cases(world.bot.svc.store)
                if c.booking_code == code)
    assert case.status == Status.REFUNDED
    return case, card["ts"]


def card(world: World, ts: str) -> dict[str, Any]:
    assert world.slack is not None
    return world.slack.message(APPROVALS, ts)


async def open_modal(world: World, ts: str, user: str) -> dict[str, Any]:
    assert world.slack is not None and world.sender is not None
    value = buttons(card(world, ts))[ids.CUSTOMER_MESSAGE]["value"]
    await world.sender.click(ids.CUSTOMER_MESSAGE, value, user, message_ts=ts)
    await world.settle()
    opened = world.slack.calls_to("views.open")[-1].params["view"]
    opened = json.loads(opened) if isinstance(opened, str) else opened
    assert "Drafting" in json.dumps(opened)
    view = world.slack.calls_to("views.update")[-1].params["view"]
    return json.loads(view) if isinstance(view, str) else view


def inputs(view: dict[str, Any]) -> dict[str, str]:
    return {b["block_id"]: b["element"].get("initial_value", "") for b in view["blocks"]
            if b["type"] == "input"}


def all_safe(world: World) -> None:
    assert world.slack is not None
    bad = [(c.method, p) for c in world.slack.calls for p in unsafe(c.params)]
    assert bad == []


async def test_send_by_an_approver_sends_the_edited_text_once(
        world: World, smtp: SandboxSmtp) -> None:
    assert world.sender is not None and world.slack is not None
    store = world.bot.svc.store
    case, ts = await approved(world, "CM-1")
    shown = card(world, ts)
    assert ids.CUSTOMER_MESSAGE in buttons(shown) and "drafted" in json.dumps(shown)
    assert smtp.received == []

    view = await open_modal(world, ts, SAM)   # anyone may read the draft
    assert view["callback_id"] == ids.CUSTOMER_VIEW
    fields = inputs(view)
    assert fields[ids.SUBJECT_BLOCK] == "Your refund of $620.00 for booking CM-1"
    draft = fields[ids.BODY_BLOCK]
    assert "$620.00" in draft and "Visa card ending 4242" in draft and "5-10 business" in draft
    assert "cm-1@example.test" not in json.dumps(view)   # the address never reaches Slack
    meta = view["private_metadata"]

    # not an approver: refused inside the modal, audited, nothing queued
    refused = await world.sender.submit_view(ids.CUSTOMER_VIEW, {
        ids.SUBJECT_BLOCK: {ids.SUBJECT_INPUT: "Hi"},
        ids.BODY_BLOCK: {ids.BODY_INPUT: "x"}}, SAM, meta)
    assert "Only refund approvers" in refused.json()["errors"][ids.SUBJECT_BLOCK]
    await world.settle()
    history = await audit.history(store, case.id)
    assert [e.detail["action"] for e in history if e.action == "slack.refused"] == \
        [ids.CUSTOMER_VIEW]
    row = await outbox.for_case(store, case.id)
    assert row is not None and row.state == "draft"

    edited = draft.replace("Hello Ana,", "Hello Ana,\n\nSorry about the weather <3 & see you.")
    ok = await world.sender.submit_view(ids.CUSTOMER_VIEW, {
        ids.SUBJECT_BLOCK: {ids.SUBJECT_INPUT: "Your refund for CM-1"},
        ids.BODY_BLOCK: {ids.BODY_INPUT: edited}}, MARIA, meta)
    assert ok.status_code == 200 and not ok.content
    await world.settle()
    assert "being sent" in json.dumps(card(world, ts))
    assert world.bot.mail is not None
    assert await world.bot.mail.run_once() == [row.id]
    assert await world.bot.mail.run_once() == []
    assert len(smtp.received) == 1
    got = smtp.received[0].message
    assert got["Subject"] == "Your refund for CM-1" and got["To"] == "cm-1@example.test"
    text = got.get_body(("plain",)).get_content()
    html = got.get_body(("html",)).get_content()
    assert "Sorry about the weather <3 & see you." in text
    assert "Sorry about the weather &lt;3 &amp; see you.</p>" in html and "<script" not in html

    await world.settle()
    told = card(world, ts)
    assert "Customer told at <!date^" in json.dumps(told) and "(message sent)" in json.dumps(told)
    assert ids.CUSTOMER_MESSAGE not in buttons(told)
    history = await audit.history(store, case.id)
    sent = [e for e in history if e.action == "customer.message_sent"]
    assert [e.detail["message_id"] for e in sent] == [got["Message-ID"]]
    asked = [e for e in history if e.action == "customer.send_requested"]
    assert [(e.actor, e.detail["edited"]) for e in asked] == [(MARIA, True)]
    trail = json.dumps([e.detail for e in history])
    assert "cm-1@example.test" not in trail and "weather" not in trail

    # a second Send of the same form: answered in the modal, nothing sent
    again = await world.sender.submit_view(ids.CUSTOMER_VIEW, {
        ids.SUBJECT_BLOCK: {ids.SUBJECT_INPUT: "Your refund for CM-1"},
        ids.BODY_BLOCK: {ids.BODY_INPUT: edited}}, MARIA, meta)
    body = again.json()
    assert body["response_action"] == "errors"
    assert "already sent" in body["errors"][ids.SUBJECT_BLOCK]
    await world.settle()
    assert await world.bot.mail.run_once() == [] and len(smtp.received) == 1
    all_safe(world)


async def test_a_failed_message_shows_on_the_card_and_retry_sends_it(
        world: World, smtp: SandboxSmtp) -> None:
    assert world.sender is not None and world.slack is not None and world.bot.mail is not None
    store = world.bot.svc.store
    case, ts = await approved(world, "CM-2")
    view = await open_modal(world, ts, MARIA)
    fields = inputs(view)
    smtp.refuse(550, times=1)
    ok = await world.sender.submit_view(ids.CUSTOMER_VIEW, {   # the draft as it was
        ids.SUBJECT_BLOCK: {ids.SUBJECT_INPUT: fields[ids.SUBJECT_BLOCK]},
        ids.BODY_BLOCK: {ids.BODY_INPUT: fields[ids.BODY_BLOCK]}}, MARIA,
        view["private_metadata"])
    assert not ok.content
    await world.settle()
    assert await world.bot.mail.run_once() == []   # one attempt allowed: failed for now
    await world.settle()
    shown = card(world, ts)
    assert "Customer message not sent:* SMTP 550" in json.dumps(shown)
    assert ids.CUSTOMER_RETRY in buttons(shown)
    alerts = [c for c in world.slack.calls_to("chat.postMessage")
              if "Customer message not sent" in str(c.params)]
    assert len(alerts) == 1   # and the alert, once

    value = buttons(shown)[ids.CUSTOMER_RETRY]["value"]
    await world.sender.click(ids.CUSTOMER_RETRY, value, SAM, message_ts=ts)   # not an approver
    await world.settle()
    assert any("Only refund approvers" in t for t in responses(world))
    row = await outbox.for_case(store, case.id)
    assert row is not None and row.state == "failed"
    refusals = [e for e in await audit.history(store, case.id) if e.action == "slack.refused"]
    assert refusals[-1].detail["action"] == ids.CUSTOMER_RETRY

    await world.sender.click(ids.CUSTOMER_RETRY, value, MARIA, message_ts=ts)
    await world.settle()
    row = await outbox.for_case(store, case.id)
    assert row is not None and row.state == "queued" and row.attempts == 0
    assert await world.bot.mail.run_once() == [row.id]
    assert len(smtp.received) == 1
    html = smtp.received[0].message.get_body(("html",)).get_content()
    assert "<strong>$620.00</strong>" in html   # unchanged: the template's own HTML part
    await world.settle()
    assert "(message sent)" in json.dumps(card(world, ts))
    all_safe(world)


def test_the_modal_keeps_to_slacks_limits_with_a_long_hostile_draft() -> None:
    case = make_case(make_quote(), booking_code=EVIL[:40], status=Status.REFUNDED)
    form = CustomerForm(message_id=3, case_id=case.id, digest="ab" * 12, channel="C0APPROVE")
    long_text = "\n".join(f"{EVIL} line {n}" for n in range(80))   # past 3000 characters
    for text in ("Hello <@U123>,\nYour refund.", long_text):
        view = customer_modal(case, "refunded", EVIL, text, "en", form)
        check_modal(view)
        assert unsafe({"view": view}) == []
        body = [b for b in view["blocks"] if b.get("block_id") == ids.BODY_BLOCK]
        if text is long_text:
            assert body == [] and "cannot be edited here" in json.dumps(view)
            assert not [b for b in view["blocks"] if b["type"] == "input"]
        else:
            assert body[0]["element"]["initial_value"] == text
            assert body[0]["element"]["max_length"] == 3000


def test_edited_html_is_the_text_escaped() -> None:
    html = Templates().edited_html("Hi <b>Ana</b> & co,\nline two\n\n\nBye", "es")
    assert "<p>Hi &lt;b&gt;Ana&lt;/b&gt; &amp; co,<br>\nline two</p>" in html
    assert "<p>Bye</p>" in html and "<b>" not in html


@pytest.mark.sqlite_only   # SQLite's query plan
async def test_the_card_reads_the_message_with_one_indexed_query(world: World) -> None:
    plan = await world.bot.svc.store.fetch_all("EXPLAIN QUERY PLAN " + outbox.CARD_SQL, (1,))
    details = " ".join(str(r["detail"]) for r in plan)
    assert "USING INDEX" in details and "case_id=?" in details, details
