"""The demo's Teams part: the same bot in Microsoft Teams, through the Bot Connector stand-in.

A world of its own (the bot with Teams on, the token authority and the Connector stand-in on
127.0.0.1): the app is added to the team (its conversation references stored), a cancellation
that needs a person posts an approval card in the approvals channel, Fiona (finance lead)
clicks Approve (an `adaptiveCard/action` invoke with a signed Bot Connector token, checked by
the Agents SDK), the card is refreshed for everyone and Stripe holds exactly one refund.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bot.cli.render import say
from bot.cli.world import T_FIONA, T_SAM, TEAMS_APPROVALS, Item, World
from services.refunds import cases


async def show(folder: Path | None = None) -> None:
    place = folder or Path(tempfile.mkdtemp(prefix="refund-demo-teams-"))
    place.mkdir(parents=True, exist_ok=True)
    world = await World.start(place, teams=True)
    try:
        await _story(world)
    finally:
        await world.stop()


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
    print("  the approvals channel shows:")
    for line in teams.transcript(TEAMS_APPROVALS):
        print(f"    {line}")
    card = teams.shown(TEAMS_APPROVALS)[-1]
    data = {"case_id": case.id, "version": case.quote_version}
    say("Sam (not an approver) clicks Approve: refused, only Sam sees why")
    status, body = await teams.invoke("approve", data, T_SAM, conversation=TEAMS_APPROVALS,
                                      activity_id=card["id"], channel=TEAMS_APPROVALS)
    texts = [b.get("text") for b in (body or {}).get("value", {}).get("body", [])]
    print(f"  invoke → {status}: {texts[-1] if texts else body}")
    say("Fiona (finance lead) clicks Approve in Teams")
    status, _ = await teams.invoke("approve", data, T_FIONA, conversation=TEAMS_APPROVALS,
                                   activity_id=card["id"], channel=TEAMS_APPROVALS)
    await world.settle()
    print(f"  invoke → {status}; the approvals channel now shows:")
    for line in teams.transcript(TEAMS_APPROVALS):
        print(f"    {line}")
    done = await cases.get(world.bot.svc.store, case.id)
    print(f"  case #{done.id} {done.status.value}; Stripe holds {len(world.stripe.refunds)} "
          f"refund(s) for it")
