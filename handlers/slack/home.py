"""The Home tab: drawn when someone opens it (`app_home_opened`), its filter, pages and search,
its Resume button; and the claim buttons and message shortcut registered beside it.

The event is acked at once; reading the store and `views.publish` run after, tracked by the
worker. The filter (a static select), Previous / Next and Clear search draw the tab again
for the person who clicked; **Search by booking** opens a modal whose submission closes it
and draws the booking's cases at the top of the tab. **Open card** is a link button: Slack
opens the card, the bot only acks. Resume is for approvers only (a refusal is audited) and
draws the tab again.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.ui import ids
from bot.slack.ui.home import (
    HOME_ROWS,
    OPEN_CARD,
    HomeFacts,
    home_view,
    page_of,
    search_modal,
    search_text,
)
from bot.slack.ui.kit import archive_link
from handlers.slack import claims, shortcuts
from handlers.slack.deps import SlackDeps
from handlers.slack.listeners import Body, button_listener, refuse, user_of, value_of
from services import outbox
from services.disputes import issues
from services.intake import events
from services.refunds import cases, ownership, worklist, writeback
from services.refunds.automation import automation_state, set_automation
from services.refunds.models import Case, Status
from services.refunds.permissions import NotAllowed
from services.store.db import now_iso


def register(app: AsyncApp, deps: SlackDeps) -> None:
    @app.event("app_home_opened")
    async def opened(event: Body) -> None:
        if event.get("tab") == "home":
            user = str(event["user"])
            deps.later(f"home:{user}", lambda: publish(deps, user))

    app.action(ids.HOME_RESUME)(button_listener(
        deps, ids.HOME_RESUME, _resume, refused=_refused_resume))
    app.action(ids.HOME_FILTER)(button_listener(deps, ids.HOME_FILTER, _filter,
                                                approvers_only=False))
    app.action(ids.HOME_PAGE)(button_listener(deps, ids.HOME_PAGE, _page,
                                              approvers_only=False))
    app.action(ids.HOME_SEARCH)(button_listener(deps, ids.HOME_SEARCH, _open_search,
                                                approvers_only=False))

    @app.action(re.compile(f"^{OPEN_CARD}:"))
    async def open_card(ack: Any) -> None:   # a link: Slack opens it, the bot acks
        await ack()

    @app.view(ids.SEARCH_VIEW)
    async def searched(ack: Any, body: Body, view: Body) -> None:
        typed = (((view.get("state") or {}).get("values") or {}).get(ids.SEARCH_BLOCK) or {}
                 ).get(ids.SEARCH_INPUT) or {}
        booking = search_text(str(typed.get("value") or ""))
        if not booking:
            await ack(response_action="errors",
                      errors={ids.SEARCH_BLOCK: "Type a booking code, like KMVQ-060314."})
            return
        await ack()
        user = user_of(body)
        deps.later(f"home-search:{user}", lambda: publish(deps, user, search=booking))

    claims.register(app, deps)
    shortcuts.register(app, deps)


async def publish(deps: SlackDeps, user: str, view: str = worklist.ALL, page: int = 0,
                  search: str | None = None) -> None:
    facts = await home_facts(deps, user, view, page, search)
    await deps.client.views_publish(user_id=user,
                                    view=home_view(facts, approver=deps.is_approver(user)))


async def home_facts(deps: SlackDeps, user: str | None = None, view: str = worklist.ALL,
                     page: int = 0, search: str | None = None) -> HomeFacts:
    store = deps.svc.store
    approver = user is not None and deps.is_approver(user)
    limit = None
    if approver and user is not None:
        try:
            limit = deps.rules.limit_for(user, deps.groups.members)
        except NotAllowed:
            approver = False
    waiting, total = await worklist.waiting(store, view, user=user or "", limit=limit,
                                            approver=approver, page=page, per_page=HOME_ROWS)
    if not waiting and page > 0 and total:   # a page emptied meanwhile: the last one
        page = (total - 1) // HOME_ROWS
        waiting, total = await worklist.waiting(store, view, user=user or "", limit=limit,
                                                approver=approver, page=page,
                                                per_page=HOME_ROWS)
    found = await worklist.for_booking(store, search) if search else []
    shown = [*waiting, *found]
    posted = await outbox.messages_of(store, [case.id for case in shown])
    links = {case_id: archive_link(m.channel, m.ts) for case_id, m in posted.items()}
    held = await ownership.holders(store, [c.id for c in shown
                                           if c.status == Status.PENDING_APPROVAL])
    kept = await writeback.all_pending(store)
    return HomeFacts(
        automation=await automation_state(store),
        waiting=_linked(waiting, links),
        waiting_total=total,
        disputes=await issues.open_disputes(store),
        writebacks=[(k, await cases.get(store, k.case_id)) for k in kept],
        drawn_at=now_iso(),
        failed_events=await events.failed(store, HOME_ROWS),
        failed_total=await events.count_failed(store),
        retrying_total=await events.count_retrying(store),
        view=view, page=page, claims=held,
        search=(search, _linked(found, links)) if search else None)


def _linked(found: list[Case], links: dict[int, str]) -> list[tuple[Case, str | None]]:
    return [(case, links.get(case.id)) for case in found]


async def _filter(deps: SlackDeps, body: Body, respond: Any) -> None:
    chosen = ((body.get("actions") or [{}])[0].get("selected_option") or {}).get("value")
    view, _ = page_of(f"{chosen}:0")
    await publish(deps, user_of(body), view)


async def _page(deps: SlackDeps, body: Body, respond: Any) -> None:
    view, page = page_of(value_of(body))
    await publish(deps, user_of(body), view, page)


async def _open_search(deps: SlackDeps, body: Body, respond: Any) -> None:
    await deps.client.views_open(trigger_id=body["trigger_id"], view=search_modal())


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
