"""`/metrics` during an end-to-end run: the numbers it shows are what happened (webhooks in and
refused, cases and their moves, the refund and its amount, every call to Stripe and Checkfront
as the stand-ins logged them, 429s among them), the optional bearer token, the queries a scrape
runs (index look-ups), and the observer's outcome kinds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.cli.world import Item, World
from bot.metrics import BotMetrics, _path_shape, _stripe_operation
from services.telemetry import event_outcome
from tests.test_query_plans import full_scans, plans_of, recorder

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def scrape(world: World, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as client:
        return await client.get(f"{world.bot_url}/metrics", headers=headers)


async def test_a_scrape_shows_what_happened_in_the_run(world: World) -> None:
    world.paid_booking("AUTO-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    world.paid_booking("BIG-1", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    world.stripe.inject("429", retry_after=0.05)   # the first Stripe call is refused once
    assert (await world.cancel("AUTO-1")).status_code == 200
    assert (await world.cancel("BIG-1")).status_code == 200
    async with httpx.AsyncClient() as client:
        forged = await client.post(f"{world.bot_url}/webhooks/stripe", content=b"{}",
                                   headers={"Stripe-Signature": "t=1,v1=forged"})
    assert forged.status_code == 400
    await world.settle()

    answer = await scrape(world)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    got = parse(answer.text)

    delivered = [d for d in world.stripe.deliveries if d.status == 200]
    assert delivered, "the stand-in delivered Stripe's refund events"
    assert value(got, "refund_bot_webhooks_received_total", source="checkfront",
                 status="200") == 2
    assert value(got, "refund_bot_webhooks_received_total", source="stripe",
                 status="400") == 1
    assert value(got, "refund_bot_webhooks_received_total", source="stripe",
                 status="200") == len(delivered)
    assert value(got, "refund_bot_webhooks_rejected_total", source="stripe",
                 reason="bad_signature") == 1
    assert total(got, "refund_bot_webhooks_rejected_total") == 1

    assert value(got, "refund_bot_events_total", source="checkfront", outcome="processed") == 2
    assert value(got, "refund_bot_events_total", source="stripe",
                 outcome="processed") == len(delivered)
    assert total(got, "refund_bot_events_total", outcome="failed") == 0

    assert value(got, "refund_bot_cases_opened_total") == 2
    assert value(got, "refund_bot_cases", state="refunded") == 1
    assert value(got, "refund_bot_cases", state="pending_approval") == 1
    assert total(got, "refund_bot_cases") == 2
    moves = {(dict(ls)["from"], dict(ls)["to"]): v for (n, ls), v in got.items()
             if n == "refund_bot_case_transitions_total"}
    assert moves == {("quoted", "auto_approved"): 1, ("auto_approved", "executing"): 1,
                     ("executing", "refunded"): 1, ("quoted", "pending_approval"): 1}

    assert [(r.amount, r.currency.upper()) for r in world.stripe.refunds] == [(9500, "USD")]
    assert value(got, "refund_bot_refunds_total", currency="USD") == 1
    assert value(got, "refund_bot_refunded_minor_units_total", currency="USD") == 9500

    stripe_calls = world.stripe.requests
    assert total(got, "refund_bot_api_call_duration_seconds_count",
                 service="stripe") == len(stripe_calls)
    assert value(got, "refund_bot_api_call_duration_seconds_count", service="stripe",
                 operation="POST /v1/refunds") == \
        len([r for r in stripe_calls if r.method == "POST" and r.path == "/v1/refunds"])
    limited = [r for r in stripe_calls if r.status == 429]
    assert len(limited) == 1
    assert value(got, "refund_bot_api_errors_total", service="stripe",
                 kind="rate_limited") == 1
    assert total(got, "refund_bot_api_call_duration_seconds_count",
                 service="checkfront") == len(world.checkfront.requests)

    assert value(got, "refund_bot_store_up") == 1
    # the webhooks waited for the log's syncs: the longest is shown (a disk that stalls)
    assert 0 < value(got, "refund_bot_intake_log_sync_longest_seconds") < 5
    assert value(got, "refund_bot_ready", check="store") == 1
    assert value(got, "refund_bot_ready", check="worker") == 1
    assert value(got, "refund_bot_worker_queue_depth") == 0
    assert value(got, "refund_bot_worker_in_flight") == 0
    assert value(got, "refund_bot_automation_paused") == 0
    assert value(got, "refund_bot_reconciliation_discrepancies_open") == 0
    assert value(got, "refund_bot_events_waiting", state="queued") == 0

    # a second scrape counts nothing twice
    again = parse((await scrape(world)).text)
    assert value(again, "refund_bot_case_transitions_total", **{
        "from": "quoted", "to": "auto_approved"}) == 1
    assert value(again, "refund_bot_refunded_minor_units_total", currency="USD") == 9500


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[World]:
    w = await World.start(tmp_path, metrics_token="scrape-token-123")
    try:
        yield w
    finally:
        await w.stop()


async def test_with_a_token_metrics_answer_only_its_bearer(guarded: World) -> None:
    assert (await scrape(guarded)).status_code == 401
    assert (await scrape(guarded, "scrape-token-12")).status_code == 401
    assert (await scrape(guarded, "scrape-token-1234")).status_code == 401
    answer = await scrape(guarded, "scrape-token-123")
    assert answer.status_code == 200 and "refund_bot_store_up 1.0" in answer.text
    async with httpx.AsyncClient() as client:   # /healthz stays open
        assert (await client.get(f"{guarded.bot_url}/healthz")).status_code == 200


async def test_a_scrape_reads_the_store_by_index_only(world: World) -> None:
    world.paid_booking("PLAN-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await world.cancel("PLAN-1")
    await world.settle()
    store = world.bot.svc.store
    statements: list[str] = []
    await store.db.set_trace_callback(recorder(statements))
    reader = getattr(store, "_reader", None)
    if reader is not None:
        await reader.set_trace_callback(recorder(statements))
    assert (await scrape(world)).status_code == 200
    await store.db.set_trace_callback(None)
    if reader is not None:
        await reader.set_trace_callback(None)
    plans = await plans_of(store, statements)
    assert any("audit_log" in sql for sql in plans), plans   # the new audit rows were read
    scans = {sql: found for sql, plan in plans.items() if (found := full_scans(plan, sql))}
    assert not scans, "\n\n".join(f"{sql}\n  -> {found}" for sql, found in scans.items())


async def test_a_scrape_with_the_store_closed_says_so_and_does_not_fail(world: World) -> None:
    await world.bot.svc.store.close()
    try:
        got = parse((await scrape(world)).text)
        assert value(got, "refund_bot_store_up") == 0
        assert not total(got, "refund_bot_cases")
    finally:
        await world.bot.svc.store.open()


def test_outcome_kinds_and_label_shapes() -> None:
    assert [event_outcome(t) for t in (
        "opened case 3", "error: no such booking", "retrying: CheckfrontUnavailable (attempt 1)",
        "failed: StripeGatewayError", "already processed", "failed earlier: not run again",
        "not processed")] == ["processed", "processed", "retrying", "failed", "skipped",
                              "skipped", "store_error"]
    assert _stripe_operation("post", "http://x/v1/refunds") == "POST /v1/refunds"
    assert _stripe_operation("get", "http://x/v1/charges/ch_3Abc?expand=x") == \
        "GET /v1/charges/{id}"
    assert _path_shape("/api/3.0/booking/AUTO-1/note") == "/api/3.0/booking/{id}/note"
    assert _path_shape("/api/3.0/booking/1042") == "/api/3.0/booking/{id}"


def test_each_bot_counts_in_a_registry_of_its_own() -> None:
    first, second = BotMetrics(), BotMetrics()
    first.event_done("stripe", "payment recorded")
    assert first.registry.get_sample_value(
        "refund_bot_events_total", {"source": "stripe", "outcome": "processed"}) == 1
    assert second.registry.get_sample_value(
        "refund_bot_events_total", {"source": "stripe", "outcome": "processed"}) is None


async def test_a_checkfront_call_that_gets_no_answer_counts_as_a_network_error() -> None:
    import socket

    from bot.checkfront_transport import CheckfrontTransport
    from bot.metrics import CHECKFRONT
    from services.clients.checkfront import CheckfrontClient
    from services.clients.checkfront_errors import CheckfrontError

    with socket.socket() as s:   # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = BotMetrics()
    client = CheckfrontClient(f"http://127.0.0.1:{port}", "key", "secret", retries=1,
                              backoff_base=0.0, event_hooks=metrics.httpx_hooks(CHECKFRONT),
                              transport=CheckfrontTransport(
                                  on_lost=metrics.httpx_lost(CHECKFRONT)))
    try:
        with pytest.raises(CheckfrontError):
            await client.ping()
    finally:
        await client.aclose()
    assert metrics.registry.get_sample_value(
        "refund_bot_api_errors_total", {"service": "checkfront", "kind": "network"}) == 2
    assert metrics.registry.get_sample_value(
        "refund_bot_api_call_duration_seconds_count",
        {"service": "checkfront", "operation": "GET /api/3.0/ping"}) == 2


def test_stripe_operation_labels_are_those_of_the_decoded_path() -> None:
    """The label reads the path with the stdlib's split, decoded as httpx.URL decodes it."""
    assert _stripe_operation("post", "https://api.stripe.com/v1/refunds") == "POST /v1/refunds"
    assert _stripe_operation("get", "http://127.0.0.1:9/v1/charges/ch_1Ab/refunds/re_2?x=1") \
        == "GET /v1/charges/{id}/refunds/{id}"
    assert _stripe_operation("get", "https://api.stripe.com/v1/refunds%2Fre_1") \
        == "GET /v1/refunds/{id}"
