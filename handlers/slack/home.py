"""The Home tab: drawn when someone opens it (`app_home_opened`), and its Resume button.

The event is acked at once; reading the store and `views.publish` run after, tracked by the
worker. Resume is for approvers only (a refusal is audited) and draws the tab again.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import ids
from bot.slack.ui.home import HOME_ROWS, HomeFacts, home_view
from bot.slack.ui.kit import archive_link
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import Body, button_listener, refuse, user_of
from services import outbox
from services.disputes import issues
from services.intake import events
from services.refunds import cases, writeback
from services.refunds.automation import automation_state, set_automation
from services.refunds.models import Status
from services.store.db import now_iso


def register(app: AsyncApp, deps: SlackDeps) -> None:
    @app.event("app_home_opened")
    async def opened(event: Body) -> None:
        if event.get("tab") == "home":
            user = str(event["user"])
            deps.later(f"home:{user}", lambda: publish(deps, user))

    app.action(ids.HOME_RESUME)(button_listener(
        deps, ids.HOME_RESUME, _resume, refused=_refused_resume))


async def publish(deps: SlackDeps, user: str) -> None:
    facts = await home_facts(deps)
    await deps.client.views_publish(user_id=user,
                                    view=home_view(facts, approver=deps.is_approver(user)))


async def home_facts(deps: SlackDeps) -> HomeFacts:
    store = deps.svc.store
    waiting = await cases.oldest(store, Status.PENDING_APPROVAL, HOME_ROWS)
    total = await cases.count(store, Status.PENDING_APPROVAL)
    posted = await outbox.messages_of(store, [case.id for case in waiting])
    links = {case_id: archive_link(m.channel, m.ts) for case_id, m in posted.items()}
    open_disputes = await issues.open_disputes(store)
    kept = await writeback.all_pending(store)
    return HomeFacts(
        automation=await automation_state(store),
        waiting=[(case, links.get(case.id)) for case in waiting],
        waiting_total=total,
        disputes=open_disputes,
        writebacks=[(k, await cases.get(store, k.case_id)) for k in kept],
        drawn_at=now_iso(),
        failed_events=await events.failed(store, HOME_ROWS),
        failed_total=await events.count_failed(store),
        retrying_total=await events.count_retrying(store))


async def _resume(deps: SlackDeps, body: Body, respond: Any) -> None:
    user = user_of(body)
    if (await automation_state(deps.svc.store)).paused:
        await set_automation(deps.svc, paused=False, reason="resumed from the Home tab",
                             by=user)
    await publish(deps, user)


async def _refused_resume(deps: SlackDeps, body: Body, respond: Any, action: str) -> None:
    """Audited, and the tab drawn again (without the button): no message of its own."""
    user = user_of(body)
    await refuse(deps, user, action, None)
    await publish(deps, user)
