"""Owns the Mark refunded modal: the amount refunded by hand, how, and its reference.

Opened from a card whose refund did not (all) go through Stripe. The amount starts at what is
left to refund and may not be above it (`check_amount` with that ceiling); the method is one of
`services.refunds.manual.METHODS`; the reference is optional and checked by
`manual.check_reference`. What the modal carries back is `ManualForm` in private_metadata.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_serializer, model_validator

from bot.slack.ui import ids
from bot.slack.ui.forms import decimals_hint
from bot.slack.ui.kit import (
    PLACEHOLDER,
    esc,
    modal,
    money,
    plain_text,
    section,
    text_input,
)
from bot.slack.ui.payloads import CaseRef, Currency, minor_from_wire
from services.money import format_minor
from services.refunds.manual import METHODS, REFERENCE_MAX
from services.refunds.models import Case


class ManualForm(CaseRef):
    """The Mark refunded modal's metadata: the case and what was left when it opened.

    On the wire: {"case":12,"v":"996a…","left":"48.00","cur":"USD","ch":"C0APPROVALS"}."""

    left_minor: int = Field(alias="left", ge=0)   # minor units of `currency`
    currency: Currency = Field(alias="cur")
    channel: str | None = Field(alias="ch", default=None)   # the card's, for private answers

    @model_validator(mode="before")
    @classmethod
    def _left_from_wire(cls, data: Any) -> Any:
        return minor_from_wire(data, "left")

    @field_serializer("left_minor")
    def _left_to_wire(self, left: int) -> str:
        return format_minor(left, self.currency)


def _method_select() -> dict[str, Any]:
    options = [{"text": plain_text(words.capitalize(), 75), "value": key}
               for key, words in METHODS.items()]
    return {"type": "input", "block_id": ids.METHOD_BLOCK, "optional": False,
            "label": plain_text("How was it refunded?", 2000),
            "element": {"type": "static_select", "action_id": ids.METHOD_INPUT,
                        "placeholder": plain_text("Choose", PLACEHOLDER),
                        "options": options}}


def manual_modal(case: Case, left: int, channel: str | None = None) -> dict[str, Any]:
    currency = case.currency
    decimals = decimals_hint(currency)
    reference = text_input(ids.REFERENCE_BLOCK, ids.REFERENCE_INPUT, "Reference",
                           placeholder="Transfer or receipt reference",
                           max_length=REFERENCE_MAX,
                           hint="What the bank or till printed. No names or card numbers.")
    reference["optional"] = True
    return modal(
        ids.MANUAL_VIEW, "Mark refunded",
        [
            section(f"Booking *{esc(case.booking_code, 60)}* (case #{case.id}): "
                    f"*{money(left, currency)}* is left to refund by hand. Record the refund "
                    "once it is made; the case then closes."),
            text_input(ids.AMOUNT_BLOCK, ids.AMOUNT_INPUT, f"Amount refunded ({currency})",
                       initial=format_minor(left, currency),
                       hint=f"In {currency}, {decimals}, at most {money(left, currency)}."),
            _method_select(),
            reference,
        ],
        submit="Mark refunded", close="Cancel",
        private_metadata=ManualForm(case_id=case.id, version=case.quote_version, left_minor=left,
                                    currency=currency, channel=channel).dumps(),
    )
