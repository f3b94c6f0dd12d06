"""A Checkfront outage without its wall-clock back-off: the bot's Checkfront client keeps
every retry it makes against the stand-in's 503s (three, then CheckfrontUnavailable), with
pauses of milliseconds instead of its production 0.25 s-2 s. For the tests that take
Checkfront down to see what the bot keeps and retries later, not to time the client's
back-off (tests/test_checkfront_client.py does that)."""

from __future__ import annotations

from bot.cli.world import World
from services.clients.checkfront import CheckfrontClient


def quick_checkfront_retries(world: World) -> World:
    client = world.bot.svc.checkfront
    assert isinstance(client, CheckfrontClient)
    client._backoff_base, client._max_backoff = 0.001, 0.01
    return world
