"""Owns the Details modal behind a refund card's Details button: the whole quote.

The card says what a decision needs (amount, booking, why, a few facts); this modal shows the
rest: every product and start time, the itemisation, the totals, where the refund goes and the
policy clauses (`quote.detail_blocks`, which cuts the item list before anything else and never
the totals). It has no inputs, so no submit button: only Close. Text is escaped as everywhere
(`kit.esc`, `kit.plain`).
"""

from __future__ import annotations

from typing import Any

from bot.slack.ui import ids
from bot.slack.ui.kit import (
    MODAL_BLOCKS,
    MODAL_BUTTON,
    MODAL_TITLE,
    context,
    date_token,
    esc,
    money,
    plain_text,
    section,
)
from bot.slack.ui.payloads import CaseRef
from bot.slack.ui.quote import detail_blocks, reason_lines
from bot.text import final_amount
from services.quoting.quote import Quote
from services.refunds.models import Case, Status


def details_modal(case: Case, quote: Quote) -> dict[str, Any]:
    amount = final_amount(case)
    status = case.status.value.replace("_", " ")
    head = [section(f"*{money(amount, case.currency)}* for booking "
                    f"`{esc(case.booking_code, 60)}` · case #{case.id} · {esc(status, 40)}"),
            context(f"Quoted as cancelled at {date_token(quote.cancelled_at)}"
                    + (f" · waiver {esc(quote.waiver, 40)}" if quote.waiver else ""))]
    pending = case.status == Status.PENDING_APPROVAL
    body = detail_blocks(quote, reasons=reason_lines(case if pending else None, quote))
    blocks = (head + body)[:MODAL_BLOCKS]
    return {"type": "modal", "callback_id": ids.DETAILS_VIEW,
            "title": plain_text("Refund details", MODAL_TITLE),
            "close": plain_text("Close", MODAL_BUTTON),
            "private_metadata": CaseRef(case_id=case.id, version=case.quote_version).dumps(),
            "blocks": blocks}
