"""**I'll take it** and **Release** on a waiting card (approvers only, like its other buttons).

A claim is the store's compare-and-set (services.refunds.ownership): the first claimer holds
the card, which is redrawn to say so; a later one is told privately who has it. Only the
holder releases it; anyone else is told who holds it. Both are audited by the service.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import ids
from bot.slack.ui.claims import taken_text
from bot.slack.ui.payloads import CaseRef
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import Body, Respond, button_listener, read_button, teller, user_of
from services.refunds import cases, ownership


def register(app: AsyncApp, deps: SlackDeps) -> None:
    app.action(ids.CLAIM)(button_listener(deps, ids.CLAIM, take))
    app.action(ids.RELEASE)(button_listener(deps, ids.RELEASE, release))


async def take(deps: SlackDeps, body: Body, respond: Respond) -> None:
    ref = await read_button(deps, body, respond, CaseRef)
    if ref is None:
        return
    tell, store = teller(deps, body, respond), deps.svc.store
    result = await ownership.claim(store, ref.case_id, user_of(body))
    if result.claimed and not result.already:
        await deps.notifier.case_updated(await cases.get(store, ref.case_id))
    elif result.already:
        await tell("It is already yours: the card says so.")
    elif result.holder is not None:
        await tell(taken_text(result.holder))
    else:
        await tell(f"Case #{ref.case_id} no longer waits for a person.")


async def release(deps: SlackDeps, body: Body, respond: Respond) -> None:
    ref = await read_button(deps, body, respond, CaseRef)
    if ref is None:
        return
    tell, store = teller(deps, body, respond), deps.svc.store
    if await ownership.release(store, ref.case_id, user_of(body)):
        await deps.notifier.case_updated(await cases.get(store, ref.case_id))
        return
    holder = await ownership.holder(store, ref.case_id)
    await tell(f"Only its holder can release it: {taken_text(holder)}" if holder
               else "Nobody holds this card now.")
