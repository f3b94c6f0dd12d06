"""Owns what every Slack listener does the same way: ack first, then refuse or hand over.

A listener acks before anything else; the only thing allowed between a request and its ack is
the in-memory approver check. A request from someone who may not act is refused: audited,
answered privately, nothing changed. Everything else, network included, runs after the ack
through `deps.later`, tracked by the worker. `button_listener` builds such a listener for a
button; `refuse` is the refusal itself, also for listeners that find a reason to refuse later
on (an amount over the approver's limit, a command only approvers may give). The readers take
the user, channel, message and button payload out of a request body, and the payload out of a
modal's private_metadata (both through `payloads.parse`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bot.slack.ui import payloads
from bot.slack.ui.kit import esc
from handlers.slack.deps import SlackDeps

Body = dict[str, Any]
Respond = Callable[..., Awaitable[Any]]
Tell = Callable[[str], Awaitable[Any]]
Work = Callable[[SlackDeps, Body, Respond], Awaitable[Any]]
# A refused click's refusal: given the deps, the body, `respond` and the action id, audit it
# and tell the person.
Refused = Callable[[SlackDeps, Body, Respond, str], Awaitable[Any]]
P = TypeVar("P")

NOT_APPROVER = "not an approver"  # the reason audited for a refused non-approver
ONLY_APPROVERS = "Only refund approvers can do that. Ask a manager or finance lead."
MALFORMED = "That button is malformed or out of date; nothing was changed."


# --- reading a request ---------------------------------------------------------------------

def user_of(body: Body) -> str:
    return str(body["user"]["id"])


def channel_of(body: Body) -> str | None:
    """The channel a click came from (a message's, or its container's); None from a modal."""
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id")


def message_ts_of(body: Body) -> str | None:
    """The timestamp of the message holding the clicked button."""
    return (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get(
        "ts")


def value_of(body: Body) -> str:
    """The value of the clicked button ("" when there is none)."""
    clicked = body.get("actions") or [{}]
    return str(clicked[0].get("value") or "")


def case_of(body: Body) -> int | None:
    """The refund case a clicked button names, if it names one."""
    try:
        return payloads.parse(payloads.CaseRef, value_of(body)).case_id
    except ValueError:
        return None


def metadata_of(view: Body, kind: type[P]) -> P | None:
    """A modal's private_metadata as the payload `kind`; None when it is not one."""
    try:
        return payloads.parse(kind, str(view.get("private_metadata") or ""))
    except ValueError:
        return None


def teller(deps: SlackDeps, body: Body, respond: Respond | None) -> Tell:
    """Say something privately to whoever sent `body`, where they sent it from."""
    return lambda text: deps.tell(user_of(body), channel_of(body), text, respond)


async def read_button(deps: SlackDeps, body: Body, respond: Respond | None, kind: type[P],
                      *, malformed: str = MALFORMED) -> P | None:
    """The clicked button's payload; None (after saying so privately) when it is not one."""
    try:
        return payloads.parse(kind, value_of(body))
    except ValueError:
        await teller(deps, body, respond)(malformed)
        return None


# --- refusing ------------------------------------------------------------------------------

async def refuse(deps: SlackDeps, user: str, action: str, case_id: int | None,
                 why: str = NOT_APPROVER, *, tell: Tell | None = None,
                 note: str | None = None) -> None:
    """Audit a refused request against its case (when known); then, given `tell`, say so to
    the person: `note` (mrkdwn of the caller's own), or else the reason itself, escaped."""
    await deps.audit_refusal(user, action, case_id, why)
    if tell is not None:
        await tell(note or esc(why, 1000))


async def refuse_click(deps: SlackDeps, body: Body, respond: Respond, action: str) -> None:
    """A non-approver's click on a refund card: audited against the case its button names."""
    await refuse(deps, user_of(body), action, case_of(body), tell=teller(deps, body, respond),
                 note=ONLY_APPROVERS)


# --- listening -----------------------------------------------------------------------------

def button_listener(deps: SlackDeps, action: str, work: Work, *, approvers_only: bool = True,
                    refused: Refused = refuse_click) -> Callable[..., Awaitable[None]]:
    """A listener for the button `action`: ack; then, when only approvers may click it and the
    clicker is not one, `refused` (by default: audited against the button's case and answered
    privately); else `work(deps, body, respond)`. Both run after the ack, through the worker."""
    async def listener(ack: Any, body: Body, respond: Respond) -> None:
        await ack()
        user = user_of(body)
        if approvers_only and not deps.is_approver(user):
            deps.later(f"refuse:{action}", lambda: refused(deps, body, respond, action))
            return
        deps.later(f"{action}:{user}", lambda: work(deps, body, respond))
    return listener
