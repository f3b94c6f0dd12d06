"""The automation switch: whether the bot may refund on its own, and who paused it and why.

`set_automation` sets it whatever it was; `switch_automation` changes it only when it is not
already so (read and written in one transaction), so two Resume clicks make one change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from services.deps import Deps
from services.store import audit
from services.store.db import Store, now_iso, one, set_state

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


async def switch_automation(svc: Deps, *, paused: bool, reason: str,
                            by: str) -> tuple[Automation, bool]:
    """Pause or resume unless it already is so: (the state now, whether this call changed it).
    The notifier is told only of a change."""
    async with svc.store.transaction(durable=True) as tx:
        found = await one(tx, "SELECT value FROM state WHERE key = ?", (AUTOMATION_KEY,))
        current = Automation(**json.loads(found["value"])) if found else Automation(paused=False)
        if current.paused == paused:
            return current, False
        state = Automation(paused=paused, reason=reason, by=by, at=now_iso())
        await set_state(tx, AUTOMATION_KEY, state.__dict__)
        await audit.append(tx, actor=by, action="automation.paused" if paused
                           else "automation.resumed", detail={"reason": reason})
    await svc.notifier.automation_changed(paused, reason, by)
    return state, True
