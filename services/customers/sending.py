"""The sender's pass: customer messages looked at under the mode, drafted, sent, retried.

`CUSTOMER_MESSAGES`: `auto` sends a message as soon as its case closed; `review` keeps it as a
draft until a person presses Send (the card's Customer message button); `off` marks it never to
be sent. Each row is looked at once under the mode in force then, so switching a mode on later
does not send the backlog.

Sending: the address, first name and language are read from Checkfront now (the store keeps
none); the draft is rendered (`drafts`) or a person's edited text used; the row is marked
`sending` with its Message-ID, the message goes to the injected `Mailer`, and the row is marked
sent with an audit row holding the Message-ID and the outcome (never an address or a body), and
the case's card is refreshed. A person's edited text goes as they left it, its HTML part that
text escaped into `edited.html` (`Templates.edited_html`). A failure (SMTP 4xx/5xx, connection
refused) is tried again with backoff; after `max_attempts` the row is `failed` and the notifier
shows it. Exactly once: the row is unique per (case, outcome); the one window is a crash
between the server's 250 and the `sent` mark, after which the message is sent once more with
the same Message-ID (receivers may fold it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

from services.customers import outbox
from services.customers.drafts import Draft, Templates, facts_for
from services.customers.outbox import Message
from services.deps import Deps
from services.refunds import cases, ledger
from services.store import audit
from services.store.db import utcnow

log = logging.getLogger(__name__)

AUTO, REVIEW, OFF = "auto", "review", "off"


class MailError(Exception):
    """A send that did not go through; the message is safe to keep (no address, no body)."""


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Deliver one message or raise MailError."""


@dataclass(frozen=True)
class CustomerSettings:
    mode: str = REVIEW
    mail_from: str = "refunds@example.com"
    rebooking_url: str | None = None
    max_attempts: int = 5
    first_wait: timedelta = timedelta(minutes=1)
    longest_wait: timedelta = timedelta(hours=1)

    def wait(self, attempts: int) -> timedelta:
        return min(self.first_wait * 2 ** min(max(attempts - 1, 0), 20), self.longest_wait)


@dataclass(frozen=True)
class Contact:
    email: str
    first_name: str
    language: str


async def draft_for(svc: Deps, message: Message, settings: CustomerSettings,
                    templates: Templates, contact: Contact | None = None) -> Draft:
    """The message as the template makes it now, from the case, its quote, the refunds it
    made and the cards they went to."""
    case = await cases.get(svc.store, message.case_id)
    quote = (await cases.current_quote(svc.store, case)).quote
    if contact is None:
        contact = await read_contact(svc, case.booking_id)
    refunds = [r for r in await ledger.for_case(svc.store.db, case.id) if r.settled]
    refunded = sum(r.amount for r in refunds)
    approved = case.approved_amount if case.approved_amount is not None else 0
    by_hand = max(0, approved - refunded) if message.outcome != outbox.DENIED else 0
    cards_seen: list[tuple[str, str]] = []
    if svc.stripe is not None:
        for ref in dict.fromkeys(r.payment_ref for r in refunds):
            card = await svc.stripe.card_of(ref)
            if card is not None and card not in cards_seen:
                cards_seen.append(card)
    facts = facts_for(case, quote, message.outcome, refunded=refunded, by_hand=by_hand,
                      first_name=contact.first_name, language=contact.language,
                      cards=cards_seen, rebooking_url=settings.rebooking_url)
    return templates.render(facts, contact.language)


async def read_contact(svc: Deps, booking_id: str) -> Contact:
    if svc.checkfront is None:
        raise MailError("Checkfront is not configured: no address to send to")
    found = await svc.checkfront.get_contact(booking_id)
    return Contact(found["email"], found["first_name"], found["language"])


async def look_at_new(svc: Deps, settings: CustomerSettings) -> list[int]:
    """Rows not looked at yet, each put where the mode says; the ids now queued."""
    queued = []
    target = {AUTO: "queued", REVIEW: "draft", OFF: "off"}[settings.mode]
    for message in await outbox.new_rows(svc.store):
        async with svc.store.transaction() as tx:
            moved = await outbox.set_state(tx, message.id, target, only_from=("new",))
            if moved:
                await audit.append(tx, actor="customer_messages", action=f"customer.{target}",
                                   case_id=message.case_id,
                                   detail={"outcome": message.outcome, "mode": settings.mode})
        if moved and target == "queued":
            queued.append(message.id)
        elif moved and target == "draft":   # the card shows the Customer message button
            await svc.notifier.case_updated(await cases.get(svc.store, message.case_id))
    return queued


async def recover(svc: Deps) -> None:
    """At start-up: a row a crash left `sending` is queued again (it may have gone out: the
    resend carries the same Message-ID), unless another live instance is sending it now (its
    lease holds: `outbox.requeue_stale`)."""
    await outbox.requeue_stale(svc.store, utcnow(), mine_too=True)


async def send_due(svc: Deps, mailer: Mailer, settings: CustomerSettings,
                   templates: Templates) -> list[int]:
    """One pass: queue again the rows an instance gone left `sending`, look at new rows, then
    send every queued one that is due; the ids sent."""
    await outbox.requeue_stale(svc.store, utcnow())
    await look_at_new(svc, settings)
    sent = []
    for message in await outbox.due(svc.store):
        if await send_one(svc, mailer, settings, templates, message):
            sent.append(message.id)
    return sent


async def send_one(svc: Deps, mailer: Mailer, settings: CustomerSettings, templates: Templates,
                   message: Message) -> bool:
    """Send one queued row; False when it failed (retried later) or another pass took it."""
    async with svc.store.transaction() as tx:   # one sender per row
        if not await outbox.set_state(tx, message.id, "sending", only_from=("queued",)):
            return False
    try:
        case = await cases.get(svc.store, message.case_id)
        contact = await read_contact(svc, case.booking_id)
        if not contact.email:
            raise MailError("the booking has no email address")
        if message.text_body is not None and message.subject is not None:
            subject, text = message.subject, message.text_body
            html = templates.edited_html(text, contact.language)
        else:
            draft = await draft_for(svc, message, settings, templates, contact)
            subject, text, html = draft.subject, draft.text, draft.html
    except MailError as exc:
        await _failed(svc, settings, message, str(exc))
        return False
    except Exception as exc:  # Checkfront or Stripe unreachable: try again later
        await _failed(svc, settings, message, f"drafting failed: {exc.__class__.__name__}")
        return False
    msg_id = message.message_id or make_msgid(domain=_domain(settings.mail_from))
    email = EmailMessage()
    email["Subject"] = subject
    email["From"] = settings.mail_from
    email["To"] = contact.email
    email["Message-ID"] = msg_id
    email.set_content(text)
    if html is not None:
        email.add_alternative(html, subtype="html")
    if msg_id != message.message_id:   # kept before SMTP: a resend after a crash reuses it
        async with svc.store.transaction() as tx:
            await outbox.mark_sending(tx, message.id, msg_id)
    try:
        await mailer.send(email)
    except MailError as exc:
        await _failed(svc, settings, message, str(exc))
        return False
    async with svc.store.transaction() as tx:   # at once: the resend window is this gap
        await outbox.mark_sent(tx, message.id)
        await audit.append(tx, actor="customer_messages", action="customer.message_sent",
                           case_id=message.case_id,
                           detail={"message_id": msg_id, "outcome": message.outcome,
                                   "edited_by": message.edited_by})
    log.info("customer message sent", extra={"case_id": message.case_id,
                                              "outcome": message.outcome})
    await svc.notifier.case_updated(case)   # the card says the customer was told
    return True


async def _failed(svc: Deps, settings: CustomerSettings, message: Message, error: str) -> None:
    attempts = message.attempts + 1
    give_up = attempts >= settings.max_attempts
    async with svc.store.transaction() as tx:
        await outbox.retry_later(tx, message.id, error, utcnow() + settings.wait(attempts),
                                 give_up=give_up)
        await audit.append(tx, actor="customer_messages", action="customer.message_failed",
                           case_id=message.case_id,
                           detail={"outcome": message.outcome, "error": error,
                                   "attempts": attempts, "given_up": give_up})
    log.warning("customer message not sent", extra={"case_id": message.case_id,
                                                    "attempts": attempts, "error": error})
    if give_up:
        await svc.notifier.customer_message_failed(
            await cases.get(svc.store, message.case_id), message.outcome, error)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip(" >") or "localhost"
