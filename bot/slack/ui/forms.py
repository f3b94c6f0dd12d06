"""What a click carries (button values, modal metadata), the Deny and Adjust modals, and the
check of an adjusted amount. Re-exported by `bot.blocks`.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from bot.slack.ui import ids
from bot.slack.ui.kit import esc, modal, money, section, text_input
from services.money import MoneyError, exponent, format_minor, normalize_currency, to_minor
from services.quoting.quote import Quote
from services.refunds.cases import Case

_AMOUNT = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)")
REASON_MAX = 1000


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def button_value(case_id: int, version: str | None) -> str:
    """Compact JSON naming the case and the quote version the card showed."""
    return _dumps({"case": case_id, "v": version})


def _case_and_version(data: Any) -> tuple[int, str | None]:
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    case_id, version = data.get("case"), data.get("v", ...)
    if isinstance(case_id, bool) or not isinstance(case_id, int) or case_id <= 0:
        raise ValueError("missing or invalid case id")
    if version is ... or not (version is None or (isinstance(version, str) and version)):
        raise ValueError("missing or invalid quote version")
    return case_id, version


def parse_button_value(value: str) -> tuple[int, str | None]:
    """(case id, quote version) from `button_value`; ValueError on anything else."""
    if not isinstance(value, str):
        raise ValueError("button value must be a string")
    data = json.loads(value)  # JSONDecodeError is a ValueError
    if isinstance(data, dict) and set(data) != {"case", "v"}:
        raise ValueError("unexpected keys in button value")
    return _case_and_version(data)


def parse_metadata(value: str) -> dict[str, Any]:
    """A modal's private_metadata: {"case", "v"} and, from the Adjust modal, "max" and "cur"."""
    if not isinstance(value, str):
        raise ValueError("private_metadata must be a string")
    data = json.loads(value)
    case_id, version = _case_and_version(data)
    out: dict[str, Any] = {"case": case_id, "v": version}
    if "max" in data or "cur" in data:
        out["cur"] = normalize_currency(str(data.get("cur", "")))
        out["max"] = str(data.get("max", ""))
        to_minor(out["max"], out["cur"])  # MoneyError is a ValueError
    return out


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
        private_metadata=_dumps({"case": case.id, "v": case.quote_version}),
    )


def adjust_modal(case: Case, quote: Quote) -> dict[str, Any]:
    currency = case.currency
    max_text = format_minor(quote.net_paid, currency)
    quoted = format_minor(quote.total_refund, currency)
    ceiling = money(quote.net_paid, currency)
    places = exponent(currency)
    decimals = "no decimals" if places == 0 else f"up to {places} decimals"
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
        private_metadata=_dumps({"case": case.id, "v": case.quote_version, "max": max_text,
                                 "cur": currency}),
    )


def validate_adjustment(amount_text: str, max_text: str,
                        currency: str) -> tuple[int | None, str | None]:
    """(minor units, None) for an acceptable amount, else (None, a message for the modal)."""
    try:
        code = normalize_currency(currency)
        ceiling = to_minor(max_text, code)
    except MoneyError:
        return None, "This form is out of date: close it and press Adjust again."
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
