"""The demo's Teams part: the same bot in Microsoft Teams, through the Bot Connector stand-in.

A world of its own (the bot with Teams on, the token authority and the Connector stand-in on
127.0.0.1): the app is added to the team (its conversation references stored), a cancellation
that needs a person posts an approval card in the approvals channel, printed as the channel
shows it (its title, facts and buttons); Sam (not an approver) clicks Approve and alone sees
why not; Fiona (finance lead) clicks Approve (an `adaptiveCard/action` invoke with a signed
Bot Connector token, checked by the Agents SDK), the card is refreshed for everyone (printed
again: the outcome) and Stripe holds exactly one refund. `show` returns every card the
stand-in recorded (the tests validate them against the Adaptive Card schema).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from bot.cli.render import say
from bot.cli.world import T_FIONA, T_SAM, TEAMS_APPROVALS, Item, World
from services.refunds import cases


async def show(folder: Path | None = None) -> list[dict[str, Any]]:
    place = folder or Path(tempfile.mkdtemp(prefix="refund-demo-teams-"))
    place.mkdir(parents=True, exist_ok=True)
    world = await World.start(place, teams=True)
    try:
        await _story(world)
        assert world.teams is not None
        return world.teams.recorded_cards()
    finally:
        await world.stop()


_WHEN = re.compile(r"\{\{DATE\((\S+)T(\d\d:\d\d):\d\dZ, SHORT\)\}\} \{\{TIME\(\S+\)\}\}")


def _rendered(text: str) -> str:
    """A TextBlock as a Teams client shows it, roughly: bold marks gone, each date function
    as the time it names (a client shows it in the reader's timezone)."""
    return _WHEN.sub(r"\1 \2 UTC", text).replace("**", "")


def card_lines(card: dict[str, Any]) -> list[str]:
    """What a Teams reader sees of a card, as lines: its texts, its facts, then its buttons."""
    lines: list[str] = []
    for element in card.get("body", []):
        if element.get("type") == "TextBlock":
            lines.append(_rendered(str(element.get("text", ""))))
        elif element.get("type") == "FactSet":
            lines += [f"{f['title']}: {_rendered(f['value'])}" for f in element.get("facts", [])]
    buttons = [f"[{a['title']}]" for a in card.get("actions", [])]
    if buttons:
        lines.append(" ".join(buttons))
    return lines


def _print_card(card: dict[str, Any]) -> None:
    for line in card_lines(card):
        print(f"    │ {line}")


async def _story(world: World) -> None:
    teams = world.teams
    assert teams is not None
    say("Teams: the app is added to the team (approvals and digest channels)")
    world.paid_booking("HBR-3001", [Item("kayak-tour", "840.00", "40.00", 96,
                                         "Sunset kayak")])
    await world.cancel("HBR-3001")
    await world.settle()
    case = await cases.latest_for_booking(world.bot.svc.store, "HBR-3001")
    assert case is not None
    activity = teams.shown(TEAMS_APPROVALS)[-1]
    print("  the approvals channel shows:")
    _print_card(activity["attachments"][0]["content"])
    data = {"case_id": case.id, "version": case.quote_version}
    say("Sam (not an approver) clicks Approve: refused, only Sam sees why")
    status, body = await teams.invoke("approve", data, T_SAM, conversation=TEAMS_APPROVALS,
                                      activity_id=activity["id"], channel=TEAMS_APPROVALS)
    refused = [line for line in card_lines((body or {}).get("value") or {})
               if "cannot decide" in line]
    print(f"  invoke → {status}: {refused[0] if refused else body}")
    say("Fiona (finance lead) clicks Approve in Teams")
    status, _ = await teams.invoke("approve", data, T_FIONA, conversation=TEAMS_APPROVALS,
                                   activity_id=activity["id"], channel=TEAMS_APPROVALS)
    await world.settle()
    print(f"  invoke → {status}; the card, refreshed for everyone in the channel:")
    _print_card(teams.activity(TEAMS_APPROVALS, activity["id"])["attachments"][0]["content"])
    done = await cases.get(world.bot.svc.store, case.id)
    print(f"  case #{done.id} {done.status.value}; Stripe holds {len(world.stripe.refunds)} "
          f"refund(s) for it")
