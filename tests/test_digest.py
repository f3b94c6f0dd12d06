"""The digest channel: the scheduled job posts the day's refunds, the reconciliation,
anomalies and automation state, with a chart; a run missed while down happens at start-up."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_ERROR, JobEvent

from bot.cli.world import DIGEST, Item, World
from bot.scheduler import DAILY_STATE, build_scheduler, catch_up
from bot.slack.digest import DigestPoster
from services.finance.anomaly import Anomaly
from services.finance.runs import ReconRun
from services.refunds.automation import set_automation
from services.store.db import utcnow


async def test_digest_posts_sections_and_a_chart_to_the_digest_channel(tmp_path: Path) -> None:
    world = await World.start(tmp_path, slack=True)
    try:
        assert world.slack is not None and world.bot.slack is not None
        world.paid_booking("DIG-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
        world.paid_booking("DIG-2", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
        for code in ("DIG-1", "DIG-2"):
            await world.cancel(code)
        await world.settle()
        await set_automation(world.bot.svc, paused=True, reason="storm week", by="U0MARIA")
        charges = {pi.metadata["booking"]: pi.latest_charge
                   for pi in world.stripe.payment_intents.values()}
        open_one = world.stripe.create_dispute(charges["DIG-1"], reason="credit_not_processed")
        won = world.stripe.create_dispute(charges["DIG-2"])
        await world.settle()
        world.stripe.decide_dispute(won.id, "won")
        await world.settle()
        tz = ZoneInfo("UTC")
        poster = DigestPoster(world.bot.svc, tz, world.bot.slack.outbox,
                              world.bot.slack.notifier.channels)
        tomorrow = utcnow() + timedelta(days=1)

        run = await catch_up(world.bot.svc, tz=tz, daily_at="00:01", on_digest=poster,
                             now=tomorrow.replace(hour=8))
        await world.settle()

        assert run is not None and run.day == utcnow().date()
        digest = [m for m in world.slack.messages_in(DIGEST) if "digest" in m.get("text", "")]
        assert len(digest) == 1
        text = json.dumps(digest[0]["blocks"])
        for expected in ("Refunds", "95.00 USD", "1 automatic", "Reconciliation", "matched",
                         "Anomalies", "Automation paused", "storm week", "Open disputes",
                         open_one.id, "DIG-1", "105.00 USD",
                         "credit_not_processed", "https://slack.com/archives/"):
            assert expected in text, expected
        assert won.id not in text   # decided: no longer open
        files = [f for f in world.slack.files.values() if f.completed]
        assert len(files) == 1 and files[0].content is not None
        assert files[0].content.startswith(b"\x89PNG") and files[0].channel == DIGEST
    finally:
        await world.stop()


async def test_a_missed_daily_run_happens_once_at_start_up(tmp_path: Path) -> None:
    world = await World.start(tmp_path, slack=True, scheduler_enabled=True,
                              digest_at="00:00", digest_chart=False)
    try:
        assert world.slack is not None
        for _ in range(100):  # the job runs in the scheduler right after start-up
            if await world.bot.svc.store.get_state(DAILY_STATE):
                break
            await asyncio.sleep(0.05)
        await world.settle()
        state = await world.bot.svc.store.get_state(DAILY_STATE)
        assert state is not None
        digests = [m for m in world.slack.messages_in(DIGEST) if "digest" in m.get("text", "")]
        assert len(digests) == 1

        again = await catch_up(world.bot.svc, tz=ZoneInfo("UTC"), daily_at="00:00")
        assert again is None  # already done for that day: not twice
    finally:
        await world.stop()


async def test_the_digest_lists_failed_webhook_events(tmp_path: Path) -> None:
    from tests.test_intake_retries import ODD_EVENTS, send_stripe

    world = await World.start(tmp_path, slack=True)
    try:
        assert world.slack is not None and world.bot.slack is not None
        await send_stripe(world, 0, ODD_EVENTS[2])
        await world.settle()
        tz = ZoneInfo("UTC")
        poster = DigestPoster(world.bot.svc, tz, world.bot.slack.outbox,
                              world.bot.slack.notifier.channels, chart=False)

        await catch_up(world.bot.svc, tz=tz, daily_at="00:01", on_digest=poster,
                       now=(utcnow() + timedelta(days=1)).replace(hour=8))
        await world.settle()

        [digest] = [m for m in world.slack.messages_in(DIGEST) if "digest" in m.get("text", "")]
        text = json.dumps(digest["blocks"])
        assert "Webhook events not processed (1)" in text
        assert "event #1" in text and "refund.updated" in text and "AttributeError" in text
        assert "events retry" in text and "@example.test" not in text
        assert "1 webhook event failed" in digest["text"]
    finally:
        await world.stop()


@pytest.mark.both_backends
async def test_a_daily_run_repeated_after_its_leader_died_posts_one_digest(
        tmp_path: Path) -> None:
    """The leader queued the digest and died before recording the day reconciled; the
    instance that takes the run over reconciles again, and finance still sees one digest."""
    world = await World.start(tmp_path, slack=True)
    try:
        assert world.slack is not None and world.bot.slack is not None
        tz = ZoneInfo("UTC")
        poster = DigestPoster(world.bot.svc, tz, world.bot.slack.outbox,
                              world.bot.slack.notifier.channels)
        now = (utcnow() + timedelta(days=1)).replace(hour=8)

        async def dies_after_queuing(run: ReconRun, anomalies: list[Anomaly]) -> None:
            await poster(run, anomalies)
            raise ConnectionResetError("the leader is gone")

        with pytest.raises(ConnectionResetError):
            await catch_up(world.bot.svc, tz=tz, daily_at="00:01", on_digest=dies_after_queuing,
                           now=now)
        assert await world.bot.svc.store.get_state(DAILY_STATE) is None   # not recorded
        again = await catch_up(world.bot.svc, tz=tz, daily_at="00:01", on_digest=poster, now=now)
        await world.settle()

        assert again is not None and again.day == utcnow().date()   # the run did happen again
        digests = [m for m in world.slack.messages_in(DIGEST) if "digest" in m.get("text", "")]
        assert len(digests) == 1
        assert len([f for f in world.slack.files.values() if f.completed]) == 1   # one chart
    finally:
        await world.stop()


async def test_a_failed_daily_run_is_told_once_in_the_digest_channel_then_digested(
        tmp_path: Path) -> None:
    world = await World.start(tmp_path, slack=True)
    try:
        assert world.slack is not None and world.bot.slack is not None
        tz = ZoneInfo("America/New_York")
        poster = DigestPoster(world.bot.svc, tz, world.bot.slack.outbox,
                              world.bot.slack.notifier.channels, chart=False)
        world.stripe.inject("500", method="GET", path="/v1/refunds", times=10_000)
        scheduler = build_scheduler(world.bot.svc, tz=tz, on_digest=poster,
                                    on_daily_failed=poster.run_failed,
                                    retry_failed_after=timedelta(seconds=0.1))
        errors: list[JobEvent] = []
        scheduler.add_listener(errors.append, EVENT_JOB_ERROR)
        scheduler.start()   # the start-up run: Stripe answers 500 to every listing
        try:
            for _ in range(400):
                if len(errors) >= 2:   # failed, and failed again when tried again
                    break
                await asyncio.sleep(0.05)
            assert len(errors) >= 2
            await world.settle()
            said = [m["text"] for m in world.slack.messages_in(DIGEST)]
            assert len(said) == 1, said   # once, not at every failure
            assert "could not run (Stripe: unavailable)" in said[0]
            assert "tried again at" in said[0] and "(America/New_York)" in said[0]
            world.stripe.faults.clear()   # Stripe is back
            for _ in range(400):
                if await world.bot.svc.store.get_state(DAILY_STATE):
                    break
                await asyncio.sleep(0.05)
        finally:
            scheduler.shutdown(wait=False)
        await world.settle()
        said = [m["text"] for m in world.slack.messages_in(DIGEST)]
        assert len(said) == 2 and "digest" in said[1], said
    finally:
        await world.stop()
