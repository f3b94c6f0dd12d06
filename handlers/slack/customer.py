"""Owns the Customer message buttons on a closed case's card and the modal's Send.

- Customer message (anyone who sees the card may read the draft): after the ack, a "drafting"
  modal is opened at once with the click's trigger_id (it lives 3 seconds; drafting reads
  Checkfront and Stripe), then updated (`views.update`) with the draft
  (`services.customers.sending.draft_for`): subject and text, editable.
- Send (approvers only): checked on the ack path, with the answer inside the modal
  (`response_action: errors`): the fields, the approver (a refusal is audited after the ack),
  and the message's state (one read by id on the read-only connection), so a second Send of a
  message already sent or under way is answered there. After the ack the message is queued in
  the outbox row (`outbox.queue_edited` with the person's text, or `outbox.queue_draft` when
  they left the draft as it was: it then goes with its template's HTML), with an audit row
  saying who sent it and whether it was edited (no text, no address); the sending loop
  (`bot/mail.py`) sends it exactly once. The card is refreshed.
- Retry customer message (approvers only; a refusal is answered privately and audited): a
  failed message is queued again as it was.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import ids
from bot.slack.ui.customer import (
    SENDABLE,
    CustomerForm,
    CustomerRef,
    customer_modal,
    digest,
    loading_modal,
    problem_modal,
)
from bot.slack.ui.kit import esc
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import (
    ONLY_APPROVERS,
    Body,
    Respond,
    button_listener,
    channel_of,
    metadata_of,
    read_button,
    refuse,
    teller,
    user_of,
)
from services import outbox as posts
from services.customers import outbox
from services.customers.sending import draft_for
from services.refunds import cases
from services.store import audit

log = logging.getLogger(__name__)
STALE_FORM = "This form is out of date; close it and click the card again."
STATES = {"queued": "is already on its way to the customer", "sending": "is being sent now",
          "sent": "was already sent", "off": "is not to be sent (customer messages are off)"}


def register(app: AsyncApp, deps: SlackDeps) -> None:
    app.action(ids.CUSTOMER_MESSAGE)(button_listener(deps, ids.CUSTOMER_MESSAGE, open_message,
                                                     approvers_only=False))
    app.action(ids.CUSTOMER_RETRY)(button_listener(deps, ids.CUSTOMER_RETRY, retry,
                                                   refused=_refused))
    app.view(ids.CUSTOMER_VIEW)(_send_listener(deps))


async def _refused(deps: SlackDeps, body: Body, respond: Respond, action: str) -> None:
    """A non-approver's click: audited against the case the button names."""
    ref = await read_button(deps, body, respond, CustomerRef)
    await refuse(deps, user_of(body), action, ref.case_id if ref else None,
                 tell=teller(deps, body, respond), note=ONLY_APPROVERS)


def _already(message_id: int, state: str | None) -> str:
    return f"This customer message {STATES.get(state or '', 'is no longer waiting')}."


async def open_message(deps: SlackDeps, body: Body, respond: Respond) -> None:
    ref = await read_button(deps, body, respond, CustomerRef)
    if ref is None:
        return
    store = deps.svc.store
    message = await outbox.get(store, ref.message_id)
    if message is None or message.case_id != ref.case_id:
        await teller(deps, body, respond)("That button is out of date; nothing was changed.")
        return
    if message.state not in SENDABLE:
        await teller(deps, body, respond)(_already(message.id, message.state))
        return
    opened = await deps.client.views_open(trigger_id=body["trigger_id"], view=loading_modal())
    view = opened["view"]
    case = await cases.get(store, message.case_id)
    try:
        draft = await draft_for(deps.svc, message, deps.customers, deps.templates)
    except Exception as exc:   # Checkfront or Stripe unreachable, a template missing
        log.warning("could not draft a customer message: %s", exc.__class__.__name__)
        await deps.client.views_update(view_id=view["id"], view=problem_modal(
            f"The message could not be drafted now ({esc(exc.__class__.__name__, 80)}). "
            "Close this and try again in a minute."))
        return
    subject, text = message.subject or draft.subject, message.text_body or draft.text
    form = CustomerForm(message_id=message.id, case_id=case.id, digest=digest(subject, text),
                        channel=channel_of(body))
    await deps.client.views_update(view_id=view["id"], view=customer_modal(
        case, message.outcome, subject, text, draft.language, form))


def _value(view: Body, block: str, action: str) -> str | None:
    values = view["state"]["values"]
    if block not in values:
        return None
    return str(values[block].get(action, {}).get("value") or "")


def _send_listener(deps: SlackDeps) -> Any:
    async def listener(ack: Any, body: Body, view: Body) -> None:
        form = metadata_of(view, CustomerForm)
        if form is None:
            await ack(response_action="errors", errors={ids.SUBJECT_BLOCK: STALE_FORM})
            return
        user = user_of(body)
        if not deps.is_approver(user):
            await _answer(ack, view, {
                ids.SUBJECT_BLOCK: "Only refund approvers can send customer messages."})
            deps.later("refuse:customer", lambda: refuse(deps, user, ids.CUSTOMER_VIEW,
                                                         form.case_id))
            return
        subject = _value(view, ids.SUBJECT_BLOCK, ids.SUBJECT_INPUT)
        text = _value(view, ids.BODY_BLOCK, ids.BODY_INPUT)
        errors = {}
        if subject is None or text is None:   # too long to edit: goes as drafted
            subject = text = None
        elif not subject.strip():
            errors[ids.SUBJECT_BLOCK] = "The message needs a subject."
        elif not text.strip():
            errors[ids.BODY_BLOCK] = "The message is empty."
        if not errors:   # one read by id: a message sent meanwhile is answered here
            state = await outbox.state_of(deps.svc.store, form.message_id)
            if state not in SENDABLE:
                errors[ids.SUBJECT_BLOCK] = _already(form.message_id, state) + \
                    " Nothing more was sent."
        if errors:
            await _answer(ack, view, errors)
            return
        await ack()
        edited = subject is not None and text is not None and \
            digest(subject, text) != form.digest
        deps.later(f"customer:{form.message_id}",
                   lambda: _send(deps, user, form, (subject or "").strip(),
                                 text if edited else None))
    return listener


async def _answer(ack: Any, view: Body, errors: dict[str, str]) -> None:
    """Errors on the modal's fields; a modal without fields (a draft too long to edit) is
    replaced by one saying so, since Slack shows errors only on input blocks."""
    if ids.SUBJECT_BLOCK in view["state"]["values"]:
        await ack(response_action="errors", errors=errors)
    else:
        await ack(response_action="update",
                  view=problem_modal(esc(" ".join(errors.values()), 1000)))


async def _send(deps: SlackDeps, user: str, form: CustomerForm, subject: str,
                text: str | None) -> None:
    store = deps.svc.store
    async with store.transaction() as tx:
        if text is not None:
            moved = await outbox.queue_edited(tx, form.message_id, subject=subject,
                                              text_body=text, by=user)
        else:
            moved = await outbox.queue_draft(tx, form.message_id)
        if moved:
            await audit.append(tx, actor=user, action="customer.send_requested",
                               case_id=form.case_id, detail={"edited": text is not None})
    if not moved:
        state = await outbox.state_of(store, form.message_id)
        card = await posts.message_of(store, form.case_id)
        await deps.tell(user, form.channel or (card.channel if card else None),
                        _already(form.message_id, state))
        return
    with deps.outbox.urgent():
        await deps.notifier.case_updated(await cases.get(store, form.case_id))


async def retry(deps: SlackDeps, body: Body, respond: Respond) -> None:
    ref = await read_button(deps, body, respond, CustomerRef)
    if ref is None:
        return
    store = deps.svc.store
    async with store.transaction() as tx:
        moved = await outbox.queue_draft(tx, ref.message_id)
        if moved:
            await audit.append(tx, actor=user_of(body), action="customer.retry_requested",
                               case_id=ref.case_id, detail={})
    if not moved:
        await teller(deps, body, respond)(
            _already(ref.message_id, await outbox.state_of(store, ref.message_id)))
        return
    await teller(deps, body, respond)("The customer message is queued to be sent again.")
    with deps.outbox.urgent():
        await deps.notifier.case_updated(await cases.get(store, ref.case_id))
