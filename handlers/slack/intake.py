"""The Retry button on the card of a webhook event an outage kept from being processed.

Approvers only (a refusal is audited and answered privately); the listener acks at once and
the retry runs after, tracked by the worker: the event is claimed (so two clicks process it
once), processed now, and the person is told how it ended. What the channel sees after that
comes from the notifier (the case's card, or a new card if the outage lasts).
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import ids
from bot.slack.ui.kit import esc
from bot.slack.ui.payloads import EventRef
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import Body, Respond, button_listener, read_button, teller, user_of
from services.intake.events import EventError
from services.intake.routing import retry_failed


def register(app: AsyncApp, deps: SlackDeps) -> None:
    app.action(ids.EVENT_RETRY)(button_listener(deps, ids.EVENT_RETRY, retry))


async def retry(deps: SlackDeps, body: Body, respond: Respond) -> None:
    ref = await read_button(deps, body, respond, EventRef)
    if ref is None:
        return
    tell = teller(deps, body, respond)
    try:
        outcome = await retry_failed(deps.svc, ref.event_id, by=user_of(body))
    except EventError as exc:
        await tell(esc(exc, 1000))
        return
    if outcome.startswith("retrying:"):
        await tell(f"Event #{ref.event_id} still could not be processed "
                   f"({esc(outcome.removeprefix('retrying: '), 500)}). The bot keeps "
                   "retrying it and posts a new card if it keeps failing.")
    elif outcome.startswith("failed:"):
        await tell(f"Event #{ref.event_id} failed again: "
                   f"{esc(outcome.removeprefix('failed: '), 500)}")
    else:
        await tell(f"Event #{ref.event_id} processed: {esc(outcome, 500)}.")
