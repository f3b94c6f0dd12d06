"""The customer is told (issue 13, part 1): a message per closed case, drafted from the case and
sent over real SMTP to a local aiosmtpd server, exactly once, under CUSTOMER_MESSAGES."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.cli.world import Item, World
from sandbox.smtp import SandboxSmtp
from services.customers import outbox
from services.customers.drafts import Templates, amount
from services.customers.sending import draft_for
from services.refunds import cases
from services.refunds.models import Case, Status
from services.store import audit

pytestmark = pytest.mark.both_backends

EMAIL = "msg-1@example.test"   # the world gives each booking <code>@example.test


@pytest.fixture
def smtp() -> Iterator[SandboxSmtp]:
    with SandboxSmtp() as server:
        yield server


async def _world(tmp_path: Path, smtp: SandboxSmtp, mode: str, **extra: object
                 ) -> AsyncIterator[World]:
    w = await World.start(tmp_path, smtp_url=smtp.url, customer_messages=mode,
                          rebooking_url="https://tours.example/book", **extra)
    try:
        yield w
    finally:
        await w.stop()


@pytest.fixture
async def auto(tmp_path: Path, smtp: SandboxSmtp) -> AsyncIterator[World]:
    async for w in _world(tmp_path, smtp, "auto", customer_mail_attempts=3):
        yield w


@pytest.fixture
async def review(tmp_path: Path, smtp: SandboxSmtp) -> AsyncIterator[World]:
    async for w in _world(tmp_path, smtp, "review"):
        yield w


@pytest.fixture
async def off(tmp_path: Path, smtp: SandboxSmtp) -> AsyncIterator[World]:
    async for w in _world(tmp_path, smtp, "off"):
        yield w


async def only_case(world: World) -> Case:
    found = await cases.list_cases(world.bot.svc.store)
    assert len(found) == 1, found
    return found[0]


async def closed(world: World, code: str, items: list[Item]) -> Case:
    world.paid_booking(code, items)
    await world.cancel(code)
    await world.settle()
    return await only_case(world)


def parts(message):  # text and HTML bodies of a received message
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return text, html


async def test_refunded_case_is_told_once_with_clause_card_and_timing(
        auto: World, smtp: SandboxSmtp) -> None:
    case = await closed(auto, "MSG-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    assert case.status == Status.REFUNDED
    assert await auto.bot.mail.run_once()
    assert await auto.bot.mail.run_once() == []   # never twice
    assert len(smtp.received) == 1
    got = smtp.received[0]
    assert got.rcpt_tos == [EMAIL]
    assert got.message["To"] == EMAIL
    assert got.message["Subject"] == "Your refund of $95.00 for booking MSG-1"
    text, html = parts(got.message)
    assert "$95.00" in text and "Visa card ending 4242" in text
    assert "5-10 business days" in text and 'under "Full refund 48+ hours' in text
    assert "hours before the start, 100% back" in text and "$10.00 cancellation fee" in text
    assert "https://tours.example/book" in text and 'href="https://tours.example/book"' in html
    assert "<strong>$95.00</strong>" in html
    row = await outbox.for_case(auto.bot.svc.store, case.id)
    assert row is not None and row.state == "sent" and row.message_id == got.message["Message-ID"]
    sent = [e for e in await audit.history(auto.bot.svc.store, case.id)
            if e.action == "customer.message_sent"]
    assert [e.detail["message_id"] for e in sent] == [got.message["Message-ID"]]
    assert sent[0].detail["outcome"] == "refunded"


async def test_review_mode_sends_only_on_send(review: World, smtp: SandboxSmtp) -> None:
    case = await closed(review, "MSG-2", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await review.bot.mail.run_once()
    assert smtp.received == []
    row = await outbox.for_case(review.bot.svc.store, case.id)
    assert row is not None and row.state == "draft"
    svc = review.bot.svc
    async with svc.store.transaction() as tx:
        assert await outbox.queue_edited(tx, row.id, subject="About MSG-2",
                                         text_body="Edited by a person.", by="U1")
    assert await review.bot.mail.run_once() == [row.id]
    assert smtp.received[0].message["Subject"] == "About MSG-2"
    text, html = parts(smtp.received[0].message)   # the edited text, and it as HTML
    assert text.strip() == "Edited by a person." and "<p>Edited by a person.</p>" in html
    after = await outbox.get(svc.store, row.id)
    assert after is not None and after.text_body is None   # the edited text is not kept


async def test_off_sends_nothing_even_when_switched_on_later(
        off: World, smtp: SandboxSmtp) -> None:
    case = await closed(off, "MSG-3", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await off.bot.mail.run_once()
    row = await outbox.for_case(off.bot.svc.store, case.id)
    assert row is not None and row.state == "off"
    off.bot.mail.settings = off.bot.settings.customer_settings().__class__(mode="auto")
    await off.bot.mail.run_once()
    assert smtp.received == []


async def test_failure_is_retried_then_shown(auto: World, smtp: SandboxSmtp,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="services")
    caplog.set_level(logging.DEBUG, logger="bot")
    failed: list[tuple[int, str, str]] = []

    async def record(case: Case, outcome: str, error: str) -> None:
        failed.append((case.id, outcome, error))

    object.__setattr__(auto.bot.svc.notifier, "customer_message_failed", record)
    case = await closed(auto, "MSG-4", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    smtp.refuse(451, times=1)
    assert await auto.bot.mail.run_once() == []
    row = await outbox.for_case(auto.bot.svc.store, case.id)
    assert row is not None and row.state == "queued" and row.attempts == 1
    assert row.error == "SMTP 451"
    await _due_now(auto)
    assert await auto.bot.mail.run_once() == [row.id]   # the retry goes through
    assert len(smtp.received) == 1

    # a second case whose server refuses for good: three tries, then shown
    auto.paid_booking("MSG-5", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await auto.cancel("MSG-5")
    await auto.settle()
    smtp.refuse(550, times=5)
    for _ in range(3):
        await auto.bot.mail.run_once()
        await _due_now(auto)
    other = [c for c in await cases.list_cases(auto.bot.svc.store) if c.booking_code == "MSG-5"]
    row = await outbox.for_case(auto.bot.svc.store, other[0].id)
    assert row is not None and row.state == "failed" and row.attempts == 3
    assert failed == [(other[0].id, "refunded", "SMTP 550")]
    assert len(smtp.received) == 1
    # no address and no body in the audit trail or the logs
    rows = json.dumps([e.detail for e in await audit.history(auto.bot.svc.store, other[0].id)])
    ours = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records
                    if r.name.startswith(("services", "bot")))   # not the SMTP server's own
    assert "customer message not sent" in ours
    for secret in ("msg-4@example.test", "msg-5@example.test", "Visa", "ending 4242", "Hello"):
        assert secret not in rows and secret not in ours


async def test_connection_refused_is_a_retry(auto: World, smtp: SandboxSmtp) -> None:
    case = await closed(auto, "MSG-6", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    smtp.stop()
    assert await auto.bot.mail.run_once() == []
    row = await outbox.for_case(auto.bot.svc.store, case.id)
    assert row is not None and row.state == "queued"
    assert row.error is not None and row.error.startswith("SMTP unreachable")
    smtp.start()
    await _due_now(auto)
    assert await auto.bot.mail.run_once() == [row.id]


async def test_duplicate_close_owes_one_message(auto: World, smtp: SandboxSmtp) -> None:
    case = await closed(auto, "MSG-7", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    svc = auto.bot.svc
    async with svc.store.transaction() as tx:   # the same close told again (a replay)
        await outbox.enqueue(tx, case.id, "refunded")
        await outbox.enqueue(tx, case.id, "refunded")
    await auto.bot.mail.run_once()
    await auto.bot.mail.run_once()
    assert len(smtp.received) == 1
    n = await svc.store.fetch_one("SELECT COUNT(*) AS n FROM customer_messages")
    assert n is not None and n["n"] == 1


async def test_drafts_per_outcome_and_language_fallback(auto: World) -> None:
    case = await closed(auto, "MSG-8", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    svc = auto.bot.svc
    templates = Templates()
    row = await outbox.for_case(svc.store, case.id)
    assert row is not None
    settings = auto.bot.mail.settings
    auto.checkfront.booking("MSG-8").fields["customer_language"] = "es-ES"
    es = await draft_for(svc, row, settings, templates)
    assert es.language == "es" and "95,00" in es.subject and "terminada en 4242" in es.text
    for outcome, words in (("partly_refunded", "separately"), ("adjusted", "reviewed"),
                           ("denied", "does not qualify")):
        draft = await draft_for(svc, outbox.Message(**{**row.__dict__, "outcome": outcome}),
                                settings, templates)
        assert draft.language == ("es" if outcome == "denied" else "en"), outcome
        if outcome != "denied":
            assert words in draft.text and draft.html.startswith("<html>")
    auto.checkfront.booking("MSG-8").fields["customer_language"] = "de"
    assert (await draft_for(svc, row, settings, templates)).language == "en"


def test_amounts_by_currency_and_locale_never_float() -> None:
    assert amount(9500, "USD", "en") == "$95.00"
    assert amount(9500, "EUR", "es") == "95,00\xa0€"
    assert amount(1200, "JPY", "en") == "¥1,200"
    assert amount(1234, "KWD", "en") == "KWD1.234"   # three places, exactly


async def _due_now(world: World) -> None:
    async with world.bot.svc.store.transaction() as tx:
        await tx.execute("UPDATE customer_messages SET next_at = '2000-01-01T00:00:00+00:00'")


async def test_failed_alert_reaches_slack_safely(tmp_path: Path, smtp: SandboxSmtp) -> None:
    from tests.slack_text_checks import unsafe

    w = await World.start(tmp_path, slack=True, smtp_url=smtp.url, customer_messages="auto",
                          customer_mail_attempts=1)
    try:
        await closed(w, "MSG-9", [Item("kayak-tour", "105.00", "5.00",
                                                hours_ahead=72)])
        smtp.refuse(550, times=1)
        await w.bot.mail.run_once()
        await w.settle()
        assert w.slack is not None
        posts = [p for p in w.slack.calls_to("chat.postMessage")
                 if "Customer message not sent" in str(p.params)]
        assert len(posts) == 1 and "MSG-9" in str(posts[0].params)
        assert unsafe(posts[0].params) == []
    finally:
        await w.stop()
