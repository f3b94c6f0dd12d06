"""Owns the weekly review's button: a finance lead answers an offered change of a product's
mode (promote to the next mode, or step back).

Only finance leads (`SLACK_FINANCE_LEADS`) may press it: anyone else is refused privately and
the refusal is audited. The click re-reads the review's figures for its week; an offer the
figures no longer make, or one already answered, changes nothing (the person is told who
answered it). Otherwise the mode change is written with who and why (the numbers) and audited
(`services.refunds.modes.change_mode`: two clicks, one change), and the review message is
redrawn with the change in place of its button.
"""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import ids
from bot.slack.ui.kit import esc
from bot.slack.ui.payloads import ModeOffer
from bot.slack.ui.review import review_message
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import (
    Body,
    Respond,
    button_listener,
    channel_of,
    message_ts_of,
    read_button,
    refuse,
    teller,
    user_of,
)
from services.finance import agreement
from services.refunds import modes

log = logging.getLogger(__name__)
ONLY_FINANCE_LEADS = "Only finance leads can change a product's mode."
NOT_FINANCE_LEAD = "not a finance lead"


def register(app: AsyncApp, deps: SlackDeps) -> None:
    app.action(ids.MODE_OFFER)(button_listener(deps, ids.MODE_OFFER, answer,
                                               approvers_only=False))


async def answer(deps: SlackDeps, body: Body, respond: Respond) -> None:
    user, tell = user_of(body), teller(deps, body, respond)
    if user not in deps.rules.finance_leads:
        await refuse(deps, user, ids.MODE_OFFER, None, NOT_FINANCE_LEAD, tell=tell,
                     note=ONLY_FINANCE_LEADS)
        return
    ref = await read_button(deps, body, respond, ModeOffer)
    if ref is None:
        return
    svc = deps.svc
    offer = await agreement.find_offer(svc.store, svc.book, svc.config.mode, deps.promotion,
                                       ref.week, deps.zone, ref.key)
    why = offer.why if offer is not None else ""
    if offer is None:
        done = [c for c in await modes.answered(svc.store, ref.week)
                if c["offer_key"] == ref.key]
        if not done:
            await tell(f"The figures no longer offer moving `{esc(ref.product, 80)}` to "
                       f"{ref.to_mode}; nothing was changed.")
            await _redraw(deps, body, ref.week)
            return
    change = await modes.change_mode(svc.store, svc.book, svc.config.mode, offer_key=ref.key,
                                     product=ref.product, from_mode=ref.from_mode,
                                     to_mode=ref.to_mode, by=user, why=why)
    if change.changed:
        log.info("mode changed: %s %s -> %s", ref.product, ref.from_mode, ref.to_mode)
        await tell(f"`{esc(ref.product, 80)}` is now in {ref.to_mode} mode.")
    else:
        await tell(f"Nothing was changed: {esc(change.message, 300)}.")
    await _redraw(deps, body, ref.week)


async def _redraw(deps: SlackDeps, body: Body, week: str) -> None:
    channel, ts = channel_of(body), message_ts_of(body)
    if not channel or not ts:
        return
    svc = deps.svc
    review = await agreement.build_review(svc.store, svc.book, svc.config.mode,
                                          deps.promotion, week, deps.zone)
    message = review_message(review, await modes.answered(svc.store, week))
    await deps.client.chat_update(channel=channel, ts=ts, text=message.text,
                                  blocks=message.blocks)
