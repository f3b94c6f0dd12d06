"""Owns the messages about webhook events not processed: the card of an event that Checkfront
or Stripe kept failing past the retry bound (with Retry), and the lines that list failed
events on the Home tab, in the digest and on the command line.

Pure functions; what an event is about is its booking code or Stripe object id, never the
customer, and errors are the safe text stored on the event.
"""

from __future__ import annotations

from bot.slack.ui import ids
from bot.slack.ui.kit import (
    Message,
    actions,
    button,
    confirm,
    context,
    date_token,
    esc,
    fallback,
    header,
    section,
    utc_text,
)
from bot.slack.ui.payloads import EventRef
from services.intake.events import EventRow
from services.notify import StuckEvent

SERVICE = {"checkfront": "Checkfront", "stripe": "Stripe"}
RETRY_COMMAND = "python -m bot events retry"


def stuck_card(stuck: StuckEvent) -> Message:
    """An event an outage kept from being processed: what it is about, why, and Retry."""
    about = esc(stuck.subject or "unknown", 64)
    error = esc(stuck.error, 400)
    if stuck.source == "checkfront":
        title = "Cancellation not processed" if stuck.kind == "booking" else \
            "Checkfront notice not processed"
        outcome = "This cancellation has no case yet; nothing was refunded." \
            if stuck.kind == "booking" else "Its Checkfront notice was not applied."
        what = f":warning: Booking `{about}` could not be fetched: *{error}*\n{outcome}"
        text = f"Booking {about} could not be fetched: {esc(stuck.error, 120)}"
    else:
        title = "Stripe event not processed"
        what = (f":warning: Stripe event `{esc(stuck.kind, 60)}` for `{about}` could not be "
                f"processed: *{error}*")
        text = f"Stripe event {esc(stuck.kind, 60)} for {about} could not be processed: " \
            f"{esc(stuck.error, 120)}"
    retry = button("Retry", ids.EVENT_RETRY, EventRef(stuck.row_id).dumps(), style="primary",
                   confirm_dialog=confirm(
                       "Process this event again?",
                       "The bot tries it once now; if it still fails it is retried "
                       "automatically again.", "Retry", "Cancel"))
    blocks = [
        header(title),
        section(f"{what}\nTried {stuck.attempts} times since {date_token(stuck.since)}; "
                "automatic retries have stopped."),
        context(f"Event #{stuck.row_id} · Retry tries it now (approvers), as does "
                f"`{RETRY_COMMAND} {stuck.row_id}`"),
        actions(retry),
    ]
    return Message(fallback(text), blocks)


def failed_line(row: EventRow) -> str:
    """One failed event as a mrkdwn list line (Home tab, digest)."""
    return (f"• event #{row.row_id} · {esc(SERVICE.get(row.source, row.source), 20)} "
            f"{esc(row.kind, 60)} `{esc(row.subject or '-', 64)}` · "
            f"{esc(row.last_error or 'no error recorded', 160)} · failed "
            f"{date_token(row.failed_at)}")


def failed_text(row: EventRow) -> str:
    """One failed or retrying event as plain text (the command line, the text digest)."""
    if row.state == "retrying":
        when = f"retrying, next try {utc_text(row.next_at)}"
    else:
        when = f"{row.state} {utc_text(row.failed_at or row.processed_at)}"
    return (f"#{row.row_id} {row.source} {row.kind} {row.subject or '-'} · {when} · "
            f"{row.attempts} attempt(s) · {row.last_error or row.outcome or ''}")
