"""Owns the answers to `/refund` commands: the quote, a case's status, help and errors.

Pure functions to `Message`s, under the same rules as the cards (`cards`): every string from a
person, a booking, Stripe or Checkfront through `kit.esc`, times as `kit.date_token`s, amounts
as `kit.money`.
"""

from __future__ import annotations

from typing import Any

from bot.slack.ui import ids
from bot.slack.ui.cards import source_text
from bot.slack.ui.kit import (
    BUTTON_VALUE,
    Message,
    actions,
    amounts_in,
    button,
    clip,
    context,
    date_token,
    esc,
    fallback,
    fields,
    fit,
    header,
    line_sections,
    money,
    plain,
    scrub,
    section,
)
from bot.slack.ui.payloads import QuoteRequest
from bot.slack.ui.quote import DECISIONS, quote_blocks, quote_money, reason_lines
from bot.text import final_amount
from services.quoting.quote import Quote
from services.refunds.models import Case

__all__ = ["HELP_COMMANDS", "error_message", "help_message", "quote_message", "status_message"]

HELP_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("/refund quote <booking> [at <time>] [waiver CODE]",
     "Quote a refund as if the booking were cancelled now, or at the time given (only you see "
     "it), with a button to request it.", "/refund quote KMVQ-261124 waiver WEATHER"),
    ("/refund departure <product or sku> <start> [waiver CODE]",
     "Every booking of one departure on one card, to cancel and refund them all at once.",
     "/refund departure kayak-tour 2026-11-24T09:00 waiver WEATHER"),
    ("/refund status <booking>",
     "Where the booking's latest refund case stands, with its history.",
     "/refund status KMVQ-261124"),
    ("/refund pause <reason>",
     "Stop automatic refunds; every new case waits for a person.",
     "/refund pause Stripe dispute spike"),
    ("/refund resume", "Let automatic refunds run again.", "/refund resume"),
    ("/refund report <from> <to>",
     "Refund figures for a date range (only you see them), and a CSV of every refund posted "
     "to this channel.", "/refund report 2026-11-01 2026-11-30"),
    ("/refund help", "This list.", "/refund help"),
)


def quote_message(quote: Quote, *, booking_ref: str, waiver: str | None,
                  open_case: dict[str, Any] | None) -> Message:
    """The ephemeral answer to `/refund quote`."""
    code = quote.booking_code or booking_ref
    decision = quote.decision.value
    pairs = [("Booking", f"`{esc(code, 60)}`"),
             ("Refund", f"*{quote_money(quote, quote.total_refund)}*"),
             ("Decision", esc(DECISIONS.get(decision, decision), 80)),
             ("Cancelled", date_token(quote.cancelled_at))]
    if quote.waiver:
        pairs.append(("Waiver", esc(quote.waiver, 40)))
    blocks = [header(f"Refund quote · {plain(code, 60)}"), fields(pairs),
              *quote_blocks(quote, reasons_title="Why", reasons=reason_lines(None, quote))]
    if open_case:
        state = str(open_case.get("status", "open")).replace("_", " ")
        tail = section(f":information_source: Case #{esc(open_case.get('id'), 20)} for this "
                       f"booking is already open ({esc(state, 40)}); no new request is needed.")
    elif len(value := QuoteRequest(booking=booking_ref, waiver=waiver).dumps()) > BUTTON_VALUE:
        tail = section(":warning: That booking reference is too long to request from here.")
    else:
        tail = actions(button("Request refund", ids.REQUEST, value, style="primary"))
    blocks += [context("Only you can see this · quoted as if cancelled at "
                       f"{date_token(quote.cancelled_at)}"), tail]
    text = f"Refund quote for {esc(code, 60)}: {quote_money(quote, quote.total_refund)}"
    return Message(fallback(text), fit(blocks, 2))


def status_message(case: Case | None, history_lines: list[str]) -> Message:
    """The answer to `/refund status`."""
    if case is None:
        return Message("No refund case found", [section(
            ":mag: No refund case found for that booking. `/refund quote &lt;booking&gt;` shows "
            "what a refund would be.")])
    c = case.currency
    pairs = [("Status", f"*{esc(case.status.value.replace('_', ' '), 40)}*"),
             ("Refund", money(final_amount(case), c)),
             ("Booking", f"`{esc(case.booking_code, 60)}`"),
             ("Cancelled", date_token(case.cancelled_at)),
             ("Opened", f"{date_token(case.created_at)} from {source_text(case.source)}"),
             ("Updated", date_token(case.updated_at))]
    if case.approved_amount is not None and case.approved_amount != case.refund_amount:
        pairs.append(("Quoted", money(case.refund_amount, c)))
    blocks = [header(f"Refund case #{case.id} · {plain(case.booking_code, 60)}"), fields(pairs)]
    if case.status_reason:
        blocks.append(section(f"_{esc(amounts_in(case.status_reason, c), 1000)}_"))
    blocks += line_sections([f"• {esc(h, 400)}" for h in history_lines], title="History",
                            max_sections=4)
    return Message(fallback(f"Refund case #{case.id} for {esc(case.booking_code, 60)}: "
                            f"{case.status.value.replace('_', ' ')}"), blocks)


def help_message() -> Message:
    lines = [f"`{esc(usage)}` — {esc(what)}\n      e.g. `{esc(example)}`"
             for usage, what, example in HELP_COMMANDS]
    return Message("Refund bot commands", [
        header("Refund bot commands"), *line_sections(lines),
        context("Approve, Deny and Adjust are buttons on the approval cards; only approvers can "
                "use them."),
    ])


def error_message(text: str) -> Message:
    """An answer saying what went wrong. `text` is mrkdwn: the caller `esc`apes what it quotes
    from people, bookings, Stripe or Checkfront, and keeps its own `code` formatting."""
    text = scrub(text)
    return Message(fallback(f"Sorry: {clip(text, 200)}"),
                   [section(f":warning: {clip(text, 2000)}")])
