"""Owns the departure card (`/refund departure`): pure Block Kit from a stored run.

Before the click: the departure, how many bookings, the total to refund with and without the
waiver, the bookings that need a person anyway, and **Cancel and refund all**. After it: the
progress (done, failed, waiting, needing a person), redrawn as the run goes, then its outcome;
each failed booking is listed with its own Retry. The button values are `DepartureRef`
(`{"run":3}`) and `DepartureBooking` (`{"run":3,"b":"KMVQ-1"}`). Every string a booking,
a person or a service brought in goes through `esc`; amounts through `money`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from bot.slack.ui.kit import (
    MESSAGE_BLOCKS,
    Message,
    actions,
    button,
    confirm,
    context,
    date_token,
    esc,
    fallback,
    fields,
    header,
    money,
    plain,
    section,
    who,
)
from bot.slack.ui.payloads import Id, Payload
from services.refunds.departure import Run, RunBooking

CANCEL_ALL = "departure_cancel_all"
RETRY = "departure_retry"
OFFER = "departure_offer"   # on an anomaly: post the spiking departure's card
MAX_LISTED = 15          # bookings named in one list before "and N more"
MAX_RETRY_BUTTONS = 10   # failed bookings offered Retry on the card (the rest after those)

STEP_WORDS = {"waiting": "waiting", "cancelled": "cancelled, refunding", "done": "done",
              "failed": "failed", "person": "needs a person", "skipped": "skipped"}


class DepartureRef(Payload):
    """A departure run: the value of **Cancel and refund all**."""

    run_id: Id = Field(alias="run")


class DepartureOffer(Payload):
    """A departure a cancellation spike is mostly for: the value of its digest button."""

    sku: str = Field(min_length=1, max_length=200)
    start: str = Field(min_length=1, max_length=40)   # ISO 8601, as `/refund departure` reads


class DepartureBooking(Payload):
    """One booking of a departure run: the value of its Retry."""

    run_id: Id = Field(alias="run")
    booking: str = Field(alias="b", min_length=1, max_length=64)


def _title(run: Run) -> str:
    when = datetime.fromisoformat(run.starts_at)
    return f"Departure {run.item} {when:%Y-%m-%d %H:%M} UTC"


def _line(booking: RunBooking, currency: str, why: str | None = None) -> str:
    text = f"• `{esc(booking.booking_code, 64)}` {money(booking.amount, currency)}"
    if booking.case_id is not None:
        text += f" · case #{booking.case_id}"
    reason = why if why is not None else booking.attention
    return text + (f" · {esc(reason, 240)}" if reason else "")


def _listed(rows: list[RunBooking], currency: str, *, errors: bool = False) -> str:
    lines = [_line(b, currency, b.error if errors else None) for b in rows[:MAX_LISTED]]
    if len(rows) > MAX_LISTED:
        lines.append(f"… and {len(rows) - MAX_LISTED} more")
    return "\n".join(lines)


def departure_card(run: Run) -> Message:
    """The card as the run stands: the plan with its button, or the progress and outcome."""
    cur = run.currency
    title = _title(run)
    count = len(run.bookings)
    totals = [("Bookings", str(count)),
              ("To refund" + (f" (waiver {esc(run.waiver, 20)})" if run.waiver else ""),
               money(run.total, cur))]
    if run.waiver:
        totals.append(("Without the waiver", money(run.total_without_waiver, cur)))
    blocks = [header(plain(title, 150)), fields(totals)]
    if run.state == "planned":
        attention = run.attention
        if attention:
            blocks.append(section(f"*Needs a person anyway ({len(attention)})*\n"
                                  + _listed(attention, cur)))
        blocks.append(context(f"Asked by {who(run.requested_by)} · each booking is cancelled "
                              "in Checkfront (customer not notified), its case opened"
                              + (f" with waiver {esc(run.waiver, 20)}" if run.waiver else "")
                              + " and refunded once through Stripe"))
        blocks.append(actions(button(
            "Cancel and refund all", CANCEL_ALL, DepartureRef(run_id=run.id).dumps(),
            style="danger", confirm_dialog=confirm(
                "Cancel the whole departure?",
                f"{count} bookings are cancelled in Checkfront and "
                f"{money(run.total, cur)} refunded. This cannot be undone.",
                "Cancel and refund", "Back"))))
        text = f"{title}: {count} bookings, {money(run.total, cur)} to refund"
        return Message(fallback(esc(text, 300)), blocks)
    counts = {step: run.count(step) for step in STEP_WORDS}
    waiting = counts["waiting"] + counts["cancelled"]
    state = "finished" if run.state == "done" else "in progress"
    blocks.append(section(
        f"*{state.capitalize()}* · started by {who(run.started_by)}"
        + (f" {date_token(run.cancelled_at)}" if run.cancelled_at else "") + "\n"
        f":white_check_mark: done {counts['done']} · :x: failed {counts['failed']} · "
        f":hourglass: waiting {waiting} · :bust_in_silhouette: needs a person "
        f"{counts['person']} · skipped {counts['skipped']}"))
    person = [b for b in run.bookings if b.step in ("person", "skipped")]
    if person:
        blocks.append(section("*Needs a person*\n" + _listed(person, cur)))
    failed = [b for b in run.bookings if b.step == "failed"]
    if failed:
        blocks.append(section("*Failed*\n" + _listed(failed, cur, errors=True)))
        if run.state == "done":
            blocks.append(actions(*[
                button(plain(f"Retry {b.booking_code}", 75), RETRY,
                       DepartureBooking(run_id=run.id, booking=b.booking_code).dumps())
                for b in failed[:MAX_RETRY_BUTTONS]]))
    blocks = blocks[:MESSAGE_BLOCKS]
    text = (f"{title}: {state}, {counts['done']} done, {counts['failed']} failed, "
            f"{waiting} waiting, {counts['person']} need a person")
    return Message(fallback(esc(text, 300)), blocks)


def offer_button(numbers: dict[str, Any]) -> dict[str, Any] | None:
    """For a cancellation spike mostly for one departure (`numbers["departure"]`, from the
    anomaly check): a button that posts that departure's card; None for any other anomaly."""
    offered = numbers.get("departure")
    sku = numbers.get("sku")
    if not isinstance(offered, dict) or not sku or not offered.get("starts_at"):
        return None
    value = DepartureOffer(sku=str(sku)[:200], start=str(offered["starts_at"])[:40]).dumps()
    return button(plain(f"Show the departure card ({sku})", 75), OFFER, value)
