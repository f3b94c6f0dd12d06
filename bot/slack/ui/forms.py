"""Owns the refund modals: Deny (a reason) and Adjust (an amount and a reason), and the check
of an adjusted amount. What the modals carry in private_metadata is in `payloads`; the
modals are re-exported by `cards`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from bot.slack.ui import ids
from bot.slack.ui.kit import esc, modal, money, section, text_input
from bot.slack.ui.payloads import AdjustForm, CaseRef
from services.money import MoneyError, exponent, format_minor, normalize_currency, to_minor
from services.quoting.quote import Quote
from services.refunds.models import Case

_AMOUNT = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)")
REASON_MAX = 1000


def deny_modal(case: Case) -> dict[str, Any]:
    amount = money(case.refund_amount, case.currency)
    return modal(
        ids.DENY_VIEW, "Deny refund",
        [
            section(f"Deny the {amount} refund for booking *{esc(case.booking_code, 60)}* "
                    f"(case #{case.id})? The reason is kept with the case and its audit trail."),
            text_input(ids.REASON_BLOCK, ids.REASON_INPUT, "Reason", multiline=True,
                       placeholder="Why is this refund denied?", max_length=REASON_MAX),
        ],
        submit="Deny refund", close="Cancel",
        private_metadata=CaseRef(case_id=case.id, version=case.quote_version).dumps(),
    )


def decimals_hint(currency: str) -> str:
    """How many decimals an amount in `currency` may have, for an amount field's hint."""
    places = exponent(currency)
    return "no decimals" if places == 0 else f"up to {places} decimals"


def adjust_modal(case: Case, quote: Quote) -> dict[str, Any]:
    currency = case.currency
    quoted = format_minor(quote.total_refund, currency)
    ceiling = money(quote.net_paid, currency)
    decimals = decimals_hint(currency)
    return modal(
        ids.ADJUST_VIEW, "Adjust refund",
        [
            section(f"Booking *{esc(case.booking_code, 60)}* (case #{case.id}): the policy "
                    f"quotes *{money(quote.total_refund, currency)}*. Approve a "
                    "different amount and say why."),
            text_input(ids.AMOUNT_BLOCK, ids.AMOUNT_INPUT, f"Refund amount ({currency})",
                       initial=quoted,
                       hint=f"In {currency}, {decimals}, more than zero and at most {ceiling} "
                            "(paid, less earlier refunds)."),
            text_input(ids.REASON_BLOCK, ids.REASON_INPUT, "Reason for the change",
                       multiline=True, placeholder="Why this amount?", max_length=REASON_MAX),
        ],
        submit="Approve amount", close="Cancel",
        private_metadata=AdjustForm(case_id=case.id, version=case.quote_version,
                                    ceiling=quote.net_paid, currency=currency).dumps(),
    )


def validate_adjustment(amount_text: str, max_text: str,
                        currency: str) -> tuple[int | None, str | None]:
    """`check_amount` against a ceiling written as a decimal string (as on the wire)."""
    try:
        code = normalize_currency(currency)
        ceiling = to_minor(max_text, code)
    except MoneyError:
        return None, "This form is out of date: close it and press Adjust again."
    return check_amount(amount_text, ceiling, code)


def check_amount(amount_text: str, ceiling: int,
                 currency: str) -> tuple[int | None, str | None]:
    """(minor units, None) for an acceptable amount typed into the Adjust modal, else
    (None, a message for the modal). `ceiling` is in minor units of `currency`."""
    code = normalize_currency(currency)
    places = exponent(code)
    example = "12000" if places == 0 else "120." + "5" + "0" * (places - 1)
    text = (amount_text or "").strip().replace(",", "")
    if text.upper().endswith(code):
        text = text[: -len(code)].strip()
    if not text:
        return None, "Enter an amount."
    match = _AMOUNT.fullmatch(text)
    if match is None:
        return None, f"Enter a number, like {example}."
    if match.group(1) == "-" or Decimal(match.group(2)) == 0:
        return None, "The refund must be more than zero."
    try:
        minor = to_minor(match.group(2), code)
    except MoneyError:
        if places == 0:
            return None, f"{code} has no decimals."
        return None, f"{code} takes at most {places} decimals."
    if minor > ceiling:
        return None, (f"That is more than the {money(ceiling, code)} paid on this booking "
                      "(less earlier refunds).")
    return minor, None
