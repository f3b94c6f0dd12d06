"""Shared fixtures: a whole local world (Checkfront and Stripe stand-ins and the bot)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli.world import World


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.start(tmp_path)
    try:
        yield w
    finally:
        await w.stop()


@pytest.fixture
async def sworld(tmp_path: Path) -> AsyncIterator[World]:
    """The world with Slack: the bot's Bolt app and the Slack stand-in."""
    w = await World.start(tmp_path, slack=True)
    try:
        yield w
    finally:
        await w.stop()
