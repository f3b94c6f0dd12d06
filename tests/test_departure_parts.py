"""The parts a departure is made of: Checkfront's `booking/index` through the client (its
filters and its pages, against the stand-in) and the anomaly check's sku spike naming the
departure its cancellations are for."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from bot.cli.world import APPROVALS, EXAMPLE_POLICIES, SAM, World
from sandbox.checkfront_index import IndexQueryError, parse_day
from sandbox.checkfront_server import CheckfrontSandbox
from sandbox.http import start
from services.clients.checkfront import CheckfrontClient
from services.deps import Deps
from services.finance.anomaly import SKU_SPIKE, check
from services.quoting.policy import load_policies
from services.store.db import open_store

pytestmark = pytest.mark.both_backends

DAY = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def add(sandbox: CheckfrontSandbox, code: str, starts: datetime, item_id: str = "12",
        status: str = "PAID") -> None:
    at = int(starts.timestamp())
    sandbox.add_booking(code=code, status=status, items=[{
        "sku": "kayak-tour", "item_id": item_id, "start": at, "end": at + 3600,
        "total": "50.00"}])


async def test_list_bookings_filters_by_day_item_and_status_and_reads_every_page() -> None:
    sandbox = CheckfrontSandbox()
    for n in range(23):
        add(sandbox, f"D-{n}", DAY)
    add(sandbox, "OTHER-ITEM", DAY, item_id="40")
    add(sandbox, "NEXT-DAY", DAY + timedelta(days=1))
    add(sandbox, "VOIDED", DAY, status="VOID")
    server = await start(sandbox.app())
    try:
        async with CheckfrontClient(server.url, sandbox.api_key, sandbox.api_secret) as client:
            rows = await client.list_bookings(start_date="2026-11-24", item_id="12", limit=10)
            paid = await client.list_bookings(start_date="2026-11-24", status_id="PAID")
            after = await client.list_bookings(start_date=">2026-11-24")
    finally:
        await server.stop()
    assert sorted(r["code"] for r in rows) == sorted([f"D-{n}" for n in range(23)] + ["VOIDED"])
    pages = [r.query.get("page") for r in sandbox.requests_to("booking/index")][:3]
    assert pages == ["1", "2", "3"]                    # 24 rows, 10 a page
    assert "VOIDED" not in {r["code"] for r in paid} and len(paid) == 24
    assert [r["code"] for r in after] == ["NEXT-DAY"]


def test_index_dates_read_as_checkfront_writes_them() -> None:
    assert parse_day("2026-11-24") == ("=", DAY.date())
    assert parse_day("20261124") == ("=", DAY.date())
    assert parse_day(f"<{int(DAY.timestamp())}") == ("<", DAY.date())
    with pytest.raises(IndexQueryError):
        parse_day("next tuesday")


@pytest.fixture
async def svc(store_url: str) -> AsyncIterator[Deps]:
    store = await open_store(store_url).open()
    try:
        yield Deps(store=store, book=load_policies(EXAMPLE_POLICIES))
    finally:
        await store.close()


async def add_case(svc: Deps, n: int, when: datetime, starts: int | None) -> None:
    at = when.astimezone(UTC).isoformat(timespec="microseconds")
    async with svc.store.transaction() as tx:
        cursor = await tx.execute(
            "INSERT INTO cases (booking_id, booking_code, status, currency, cancelled_at, "
            "source, quote_version, created_at, updated_at) "
            "VALUES (?, ?, 'pending_approval', 'USD', ?, 'checkfront_webhook', ?, ?, ?) "
            "RETURNING id", (f"B{n}", f"BK-{n}", at, f"v{n}", at, at))
        case_id = int((await cursor.fetchone())["id"])
        item = {"sku": "kayak-tour", "total": "10.00"}
        if starts is not None:
            item["start_date"] = str(starts)
        snapshot = {"booking": {"order": {"items": {"item": [item]}}}}
        await tx.execute("INSERT INTO quotes (case_id, version, created_at, snapshot, quote) "
                         "VALUES (?, ?, ?, ?, '{}')",
                         (case_id, f"v{n}", at, json.dumps(snapshot)))


async def test_a_spike_for_one_departure_offers_its_card(svc: Deps) -> None:
    now = datetime.now(UTC)
    departure = int(time.time()) // 3600 * 3600 + 2 * 86400
    for n in range(7):
        await add_case(svc, n, now - timedelta(hours=n + 1), departure)
    await add_case(svc, 8, now - timedelta(hours=2), departure + 86400)

    [spike] = [a for a in await check(svc, now) if a.kind == SKU_SPIKE]
    when = datetime.fromtimestamp(departure, UTC).strftime("%Y-%m-%dT%H:%M+00:00")
    assert spike.numbers["departure"] == {
        "starts_at": when, "cases": 7, "command": f"/refund departure kayak-tour {when}"}
    assert f"`/refund departure kayak-tour {when}`" in spike.reason


async def test_a_spike_spread_over_departures_offers_none(svc: Deps) -> None:
    now = datetime.now(UTC)
    base = int(time.time()) // 3600 * 3600 + 2 * 86400
    for n in range(8):
        await add_case(svc, n, now - timedelta(hours=n + 1), base + 3600 * n)
    [spike] = [a for a in await check(svc, now) if a.kind == SKU_SPIKE]
    assert "departure" not in spike.numbers and "/refund departure" not in spike.reason


async def test_the_digest_offers_a_spiking_departure_s_card_and_its_button_posts_it(
        sworld: World) -> None:
    """A product's cancellation spike mostly for one departure: the digest's anomaly carries a
    button, and anyone's click posts that departure's card (what `/refund departure` posts)."""
    from bot.slack.ui import departure as departure_ui
    from bot.slack.ui.digest import digest_message
    from services.finance.anomaly import Anomaly
    from tests.slack_helpers import buttons as buttons_of
    from tests.test_departure import SKU, book, departure_time

    assert sworld.sender is not None and sworld.slack is not None
    starts = departure_time()
    for n in range(1, 3):
        book(sworld, f"SPIKE-{n}", starts)
    when = starts.strftime("%Y-%m-%dT%H:%M+00:00")
    spike = Anomaly("sku_spike", f"sku_spike:{SKU}:day", False, f"7 cancellations of {SKU}",
                    {"sku": SKU, "departure": {"starts_at": when, "cases": 5,
                                               "command": f"/refund departure {SKU} {when}"}})
    calm = Anomaly("sku_spike", "sku_spike:other:day", False, "3 cancellations of bike-tour",
                   {"sku": "bike-tour"})
    run = SimpleNamespace(day=starts.date(), counts={}, totals={}, open_errors=[], resolved=[],
                          tz="UTC", stripe_count=0, ran_at=starts.isoformat())
    stats = SimpleNamespace(refunds={}, decisions={}, median_minutes_to_refund=None, waiting=[])
    automation = SimpleNamespace(paused=False, by="", reason="")
    message = digest_message(run, stats, [spike, calm], automation, {})  # type: ignore[arg-type]
    offers = [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]
              if e["action_id"] == departure_ui.OFFER]
    assert len(offers) == 1 and "departure card" in offers[0]["text"]["text"]

    await sworld.sender.click(departure_ui.OFFER, offers[0]["value"], SAM)
    await sworld.settle()
    card = sworld.slack.messages_in(APPROVALS)[-1]
    assert departure_ui.CANCEL_ALL in buttons_of(card)
    from services.refunds import departure
    run_id = json.loads(buttons_of(card)[departure_ui.CANCEL_ALL]["value"])["run"]
    run = await departure.get_run(sworld.bot.svc, run_id)
    assert [b.booking_code for b in run.bookings] == ["SPIKE-1", "SPIKE-2"]
    assert run.state == "planned" and sworld.stripe.refunds == []   # a card, nothing done yet
