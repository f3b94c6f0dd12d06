"""The customer message on Slack: what a closed case's card shows of it, the modal with the
draft, and the alert when it could not be sent after its retries.

- On the card (`customer_buttons`, `customer_lines`): a **Customer message** button while the
  message waits for a person (review mode's draft) or failed; after sending, a context line
  "Customer told at <date> (message sent)"; a failure after its retries as a line on the card
  ("Customer message not sent: SMTP 550") with **Retry**.
- The modal (`customer_modal`): the draft's subject and text in plain_text inputs (Slack allows
  at most 3000 characters in one: a longer draft is shown read-only and sent as drafted), and
  **Send**. What it carries back is `CustomerForm` in private_metadata, with a digest of the
  draft so an unchanged draft goes out with its template's HTML part.

Pure functions of the case and the message's state; the booking code, the error and the draft
go through `kit.esc` in mrkdwn and never hold an address (services.customers.sending).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from bot.slack.ui import ids
from bot.slack.ui.kit import (
    SECTION_TEXT,
    Message,
    button,
    context,
    date_token,
    esc,
    header,
    plain_text,
    section,
    text_input,
)
from bot.slack.ui.kit import modal as make_modal
from bot.slack.ui.payloads import Id, Payload
from services.refunds.models import Case

OUTCOMES = {"refunded": "refund", "partly_refunded": "partial refund", "denied": "denial",
            "adjusted": "adjusted refund"}
INPUT_MAX = 3000      # Block Kit: a plain_text_input's max_length is 1..3000
SUBJECT_MAX = 250
WAITING = ("draft", "failed")      # the states a person can Send from (the button shows)
SENDABLE = ("new", "draft", "failed")


class CustomerRef(Payload):
    """The Customer message and Retry buttons: {"msg":3,"case":12}."""

    message_id: Id = Field(alias="msg")
    case_id: Id = Field(alias="case")


class CustomerForm(CustomerRef):
    """The modal's metadata: the message, its case, a digest of the draft as shown (`d`), and
    the card's channel for private answers."""

    digest: str = Field(alias="d", min_length=1, max_length=64)
    channel: str | None = Field(alias="ch", default=None)


@dataclass(frozen=True)
class CustomerNote:
    """What a card shows of its case's latest customer message."""

    message_id: int
    outcome: str
    state: str
    error: str | None = None
    sent_at: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> CustomerNote:
        return cls(int(row["id"]), str(row["outcome"]), str(row["state"]), row["error"],
                   row["sent_at"])


def digest(subject: str, text: str) -> str:
    """Whether a submitted draft is the one shown: line endings and outer blanks aside."""
    norm = subject.strip() + "\0" + text.replace("\r\n", "\n").strip()
    return hashlib.sha256(norm.encode()).hexdigest()[:24]


# --- the card ------------------------------------------------------------------------------

def customer_buttons(case: Case, note: CustomerNote | None) -> list[dict[str, Any]]:
    """Retry (a failed message), Customer message (a draft or failed one): before Details."""
    if note is None or note.state not in WAITING:
        return []
    value = CustomerRef(message_id=note.message_id, case_id=case.id).dumps()
    made = []
    if note.state == "failed":
        made.append(button("Retry customer message", ids.CUSTOMER_RETRY, value,
                           style="primary"))
    made.append(button("Customer message", ids.CUSTOMER_MESSAGE, value))
    return made


def customer_lines(note: CustomerNote | None) -> tuple[list[str], list[str]]:
    """(lines for the card's outcome section, lines for its context) about the message."""
    if note is None:
        return [], []
    if note.state == "sent":
        return [], [f":email: Customer told at {date_token(note.sent_at)} (message sent)"]
    if note.state == "failed":
        return [f":warning: *Customer message not sent:* {esc(note.error or 'unknown error', 200)}"
                " — Retry"], []
    if note.state in ("queued", "sending"):
        return [], [":outbox_tray: Customer message being sent…"]
    if note.state == "draft":
        return [], [":memo: A message to the customer is drafted: open it to review and Send."]
    return [], []


# --- the modal -----------------------------------------------------------------------------

def _notice(text: str) -> dict[str, Any]:
    return {"type": "modal", "callback_id": ids.CUSTOMER_VIEW,
            "title": plain_text("Customer message", 24), "close": plain_text("Close", 24),
            "blocks": [section(text)]}


def loading_modal() -> dict[str, Any]:
    """Opened at once (a trigger_id lives 3 seconds), then updated with the draft."""
    return _notice(":hourglass_flowing_sand: Drafting the message to the customer…")


def problem_modal(text: str) -> dict[str, Any]:
    """`text` is mrkdwn: the caller escapes what it quotes."""
    return _notice(f":warning: {text}")


def _read_only(text: str) -> list[dict[str, Any]]:
    lines = [esc(line, SECTION_TEXT) if line.strip() else "" for line in text.splitlines()]
    chunks, current = [], ""
    for line in lines:
        if current and len(current) + len(line) + 1 > SECTION_TEXT:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    chunks.append(current or " ")
    return [section(chunk) for chunk in chunks[:20]]


def customer_modal(case: Case, outcome: str, subject: str, text: str, language: str,
                   form: CustomerForm) -> dict[str, Any]:
    what = OUTCOMES.get(outcome, "outcome")
    blocks = [section(f"The message telling the customer of booking *{esc(case.booking_code, 60)}*"
                      f" (case #{case.id}) about its {what}. It goes to the email address in "
                      "Checkfront when you press Send."),
              context(f"Drafted from the `{esc(outcome, 40)}` template in "
                      f"`{esc(language, 20)}`. Edits are sent as plain text (and the same "
                      "text as HTML).")]
    if len(text) <= INPUT_MAX:
        blocks += [text_input(ids.SUBJECT_BLOCK, ids.SUBJECT_INPUT, "Subject",
                              initial=subject[:SUBJECT_MAX], max_length=SUBJECT_MAX),
                   text_input(ids.BODY_BLOCK, ids.BODY_INPUT, "Message", multiline=True,
                              initial=text, max_length=INPUT_MAX)]
    else:   # neither is editable: the message goes exactly as drafted
        blocks += [context(f"The text is longer than the {INPUT_MAX} characters Slack lets a "
                           "field hold, so it cannot be edited here: Send sends it as drafted."),
                   section(f"*Subject:* {esc(subject, SUBJECT_MAX)}"), *_read_only(text)]
    return make_modal(ids.CUSTOMER_VIEW, "Customer message", blocks, submit="Send",
                      close="Cancel", private_metadata=form.dumps())


# --- the alert -----------------------------------------------------------------------------

def failed_alert(case: Case, outcome: str, error: str) -> Message:
    code = esc(case.booking_code, 60)
    what = OUTCOMES.get(outcome, "outcome")
    text = f"Customer message not sent for booking {code}: {esc(error, 120)}"
    return Message(text, [
        header("Customer message not sent"),
        section(f":warning: The message telling the customer of booking `{code}` about its "
                f"{what} could not be sent: *{esc(error, 300)}*. Its retries are spent; "
                "nothing will be sent unless a person sends it (Retry on the case's card)."),
    ])
