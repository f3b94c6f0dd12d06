"""Owns `/refund departure <product or sku> <start time> [waiver CODE]` and the departure
card's buttons (**Cancel and refund all**, Retry on a failed booking), and the digest's offer
of a spiking departure's card.

The command plans the run (`services.refunds.departure_plan.plan`) and queues its card for the
approvals channel; the person is answered privately. The click: approvers only (a refusal is
audited and answered privately); the clicker's limit must cover the run's total, else a
finance lead must click (`permissions.check_approve`); the run is claimed once (a second click
is told who started it, nothing changes), then run after the ack, tracked by the worker. The
card is redrawn through the paced outbox after every booking's step (`progress`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from slack_bolt.async_app import AsyncApp

from bot.slack.ui.departure import (
    CANCEL_ALL,
    OFFER,
    RETRY,
    DepartureBooking,
    DepartureOffer,
    DepartureRef,
)
from bot.slack.ui.kit import esc, money
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import (
    Body,
    Respond,
    button_listener,
    read_button,
    refuse,
    teller,
    user_of,
)
from services.refunds import departure, departure_plan
from services.refunds.departure import DepartureError, OnChange
from services.refunds.models import AlreadyDecided
from services.refunds.permissions import NotAllowed

log = logging.getLogger(__name__)
KIND = "departure"   # the outbox rows that draw a departure's card
USAGE = ("Usage: `/refund departure &lt;product or sku&gt; &lt;start, e.g. 2026-11-24T09:00&gt; "
         "[waiver CODE]`")


class CardPosts(Protocol):
    """What the departure card needs of the outbox: a row drawn when it is sent."""

    async def add(self, channel: str, kind: str, case_id: int | None,
                  payload: dict[str, Any] | None = None) -> None: ...


def register(app: AsyncApp, deps: SlackDeps) -> None:
    app.action(CANCEL_ALL)(button_listener(deps, CANCEL_ALL, cancel_all, refused=_refused))
    app.action(RETRY)(button_listener(deps, RETRY, retry, refused=_refused))
    # anyone may ask for the card, as with the command; its one button is for approvers
    app.action(OFFER)(button_listener(deps, OFFER, offered, approvers_only=False))


def approvals_channel(deps: SlackDeps, fallback: str) -> str:
    channels = getattr(deps.notifier, "channels", None)
    return str(getattr(channels, "approvals", "") or fallback)


def progress(deps: SlackDeps, channel: str) -> OnChange:
    """Queue a redraw of a run's card (the outbox draws it from the run as it is then, and one
    send answers every redraw queued before it)."""
    posts = cast(CardPosts, deps.outbox)

    async def changed(run_id: int) -> None:
        await posts.add(channel, KIND, None, {"run": run_id})
    return changed


def parse_start(words: list[str], zone: ZoneInfo) -> tuple[datetime, int]:
    """The start time from the words after the product: `2026-11-24T09:00` or `2026-11-24
    09:00` (the business's time zone unless an offset is given); it and how many words it
    took. ValueError when it is not one."""
    if not words:
        raise ValueError("no start time")
    taken = 1
    text = words[0]
    if len(words) > 1 and ":" in words[1] and "T" not in text.upper():
        text, taken = f"{text}T{words[1]}", 2
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return when, taken


async def command(deps: SlackDeps, args: list[str], user: str, channel: str,
                  respond: Any) -> None:
    """Plan the departure and post its card in the approvals channel."""
    if len(args) < 2:
        await _say(respond, USAGE)
        return
    item = args[0]
    try:
        starts_at, taken = parse_start(args[1:], deps.zone)
    except ValueError:
        await _say(respond, f"I can't read the start time `{esc(args[1], 40)}`. {USAGE}")
        return
    rest = args[1 + taken:]
    waiver = None
    if len(rest) == 2 and rest[0].lower() == "waiver":
        waiver = rest[1].upper()
    elif rest:
        await _say(respond, USAGE)
        return
    try:
        run = await departure_plan.plan(deps.svc, item, starts_at, waiver=waiver,
                                        requested_by=user,
                                        day=starts_at.astimezone(deps.zone).date())
    except DepartureError as exc:
        await _say(respond, esc(exc, 500))
        return
    target = approvals_channel(deps, channel)
    await progress(deps, target)(run.id)
    await _say(respond, f"Departure `{esc(item, 64)}`: {len(run.bookings)} bookings, "
                        f"{money(run.total, run.currency)} to refund. Its card is posted in "
                        "the approvals channel.")


async def offered(deps: SlackDeps, body: Body, respond: Respond) -> None:
    """The digest's button on a cancellation spike mostly for one departure: its card, as
    `/refund departure <sku> <start>` would post it."""
    offer = await read_button(deps, body, respond, DepartureOffer)
    if offer is None:
        return
    channel = str((body.get("channel") or {}).get("id") or "")
    await command(deps, [offer.sku, offer.start], user_of(body), channel, respond)


async def _say(respond: Any, text: str) -> None:
    await respond(text=text, response_type="ephemeral")


async def _refused(deps: SlackDeps, body: Body, respond: Respond, action: str) -> None:
    await refuse(deps, user_of(body), action, None, tell=teller(deps, body, respond),
                 note="Only refund approvers can do that. Ask a manager or finance lead.")


async def cancel_all(deps: SlackDeps, body: Body, respond: Respond) -> None:
    """The click: check the clicker's limit against the total, claim the run, run it."""
    ref = await read_button(deps, body, respond, DepartureRef)
    if ref is None:
        return
    user, tell = user_of(body), teller(deps, body, respond)
    try:
        run = await departure.get_run(deps.svc, ref.run_id)
        deps.rules.check_approve(user, run.total, run.currency,
                                 group_members=deps.groups.members)
        run = await departure.start(deps.svc, ref.run_id, by=user)
    except NotAllowed as exc:
        await refuse(deps, user, CANCEL_ALL, None, str(exc), tell=tell, note=esc(exc, 500))
        return
    except AlreadyDecided as exc:
        await tell(f"This departure was {esc(exc, 200)}; nothing was changed.")
        return
    except DepartureError as exc:
        await tell(esc(exc, 500))
        return
    changed = progress(deps, run.channel or approvals_channel(deps, ""))
    await changed(run.id)
    ended = await departure.run(deps.svc, run.id, changed)
    await tell(f"Departure `{esc(ended.item, 64)}`: {ended.count('done')} done, "
               f"{ended.count('failed')} failed, {ended.count('person')} need a person, "
               f"{ended.count('skipped')} skipped.")


async def retry(deps: SlackDeps, body: Body, respond: Respond) -> None:
    ref = await read_button(deps, body, respond, DepartureBooking)
    if ref is None:
        return
    tell = teller(deps, body, respond)
    try:
        run = await departure.get_run(deps.svc, ref.run_id)
        changed = progress(deps, run.channel or approvals_channel(deps, ""))
        booking = await departure.retry(deps.svc, ref.run_id, ref.booking, by=user_of(body),
                                        on_change=changed)
    except DepartureError as exc:
        await tell(esc(exc, 500))
        return
    await tell(f"Booking `{esc(booking.booking_code, 64)}`: {esc(booking.step, 20)}"
               + (f" ({esc(booking.error, 300)})" if booking.error else "") + ".")


async def resume(deps: SlackDeps) -> list[int]:
    """At start-up: continue the runs a stop or a crash left running, their cards redrawn."""
    fallback = approvals_channel(deps, "")

    async def changed(run_id: int) -> None:
        run = await departure.get_run(deps.svc, run_id)
        await progress(deps, run.channel or fallback)(run_id)
    return await departure.resume(deps.svc, changed)
