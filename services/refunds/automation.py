"""The automation switch: whether the bot may refund on its own, and who paused it and why."""

from __future__ import annotations

from dataclasses import dataclass

from services.deps import Deps
from services.store import audit
from services.store.db import Store, now_iso, set_state

AUTOMATION_KEY = "automation"


@dataclass(frozen=True)
class Automation:
    paused: bool
    reason: str = ""
    by: str = ""
    at: str = ""


async def automation_state(store: Store) -> Automation:
    value = await store.get_state(AUTOMATION_KEY)
    return Automation(**value) if value else Automation(paused=False)


async def set_automation(svc: Deps, *, paused: bool, reason: str, by: str) -> Automation:
    state = Automation(paused=paused, reason=reason, by=by, at=now_iso())
    async with svc.store.transaction(durable=True) as tx:   # a person's (or the breaker's) switch
        await set_state(tx, AUTOMATION_KEY, state.__dict__)
        await audit.append(tx, actor=by, action="automation.paused" if paused
                           else "automation.resumed", detail={"reason": reason})
    await svc.notifier.automation_changed(paused, reason, by)
    return state
