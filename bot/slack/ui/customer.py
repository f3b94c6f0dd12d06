"""The customer message on Slack: the alert shown when a customer's message could not be sent
after its retries. Pure function of the case; the booking code and the error go through
`kit.esc`, and the error never holds an address or a body (services.customers.sending)."""

from __future__ import annotations

from bot.slack.ui.kit import Message, esc, header, section
from services.refunds.models import Case

OUTCOMES = {"refunded": "refund", "partly_refunded": "partial refund", "denied": "denial",
            "adjusted": "adjusted refund"}


def failed_alert(case: Case, outcome: str, error: str) -> Message:
    code = esc(case.booking_code, 60)
    what = OUTCOMES.get(outcome, "outcome")
    text = f"Customer message not sent for booking {code}: {esc(error, 120)}"
    return Message(text, [
        header("Customer message not sent"),
        section(f":warning: The message telling the customer of booking `{code}` about its "
                f"{what} could not be sent: *{esc(error, 300)}*. Its retries are spent; "
                "nothing will be sent unless a person sends it."),
    ])
