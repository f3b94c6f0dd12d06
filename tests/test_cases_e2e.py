"""Refund cases end to end: signed webhooks in, one Stripe refund out, Checkfront written
back, the audit chain intact. Real HTTP on 127.0.0.1, a real SQLite file."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bot.app import Bot
from bot.cli.world import Item, World
from sandbox.http import start
from services.refunds import cases
from services.refunds.execution import execute
from services.refunds.models import AlreadyDecided, Case, InvalidAmount, Status
from services.store import audit

pytestmark = pytest.mark.both_backends


async def only_case(world: World) -> Case:
    found = await cases.list_cases(world.bot.svc.store)
    assert len(found) == 1, found
    return found[0]


async def test_cancellation_is_auto_refunded_once_and_written_back(world: World) -> None:
    world.paid_booking("AUTO-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])

    response = await world.cancel("AUTO-1")
    await world.settle()

    assert response.status_code == 200
    case = await only_case(world)
    assert case.status == Status.REFUNDED
    # full refund (48h+ tier) of 105.00 minus the 10.00 cancellation fee
    assert [(r.amount, r.status) for r in world.stripe.refunds] == [(9500, "succeeded")]
    refund = world.stripe.refunds[0]
    assert refund.metadata["case_id"] == str(case.id)
    notes = world.checkfront.notes("AUTO-1")
    assert len(notes) == 1 and refund.id in notes[0].body and "standard-48h" in notes[0].body
    assert world.checkfront.status_of("AUTO-1") == "STOP"
    assert (await audit.verify(world.bot.svc.store)).ok
    actions = [e.action for e in await audit.history(world.bot.svc.store, case.id)]
    assert actions[:3] == ["case.opened", "quote.made", "case.auto_approved"]
    assert "stripe.refund" in actions and "checkfront.written" in actions


async def test_high_value_waits_then_adjusted_approval_refunds_exactly_that(world: World) -> None:
    world.paid_booking("BIG-1", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await world.cancel("BIG-1")
    await world.settle()
    case = await only_case(world)
    assert case.status == Status.PENDING_APPROVAL
    assert "escalation limit" in (case.status_reason or "")
    assert world.stripe.refunds == []

    with pytest.raises(InvalidAmount):  # an adjustment needs a reason
        await cases.approve(world.bot.svc.store, case.id, by="maria", amount=60000)
    await cases.approve(world.bot.svc.store, case.id, by="maria", amount=60000,
                        reason="goodwill: partial credit agreed by phone")
    case = await execute(world.bot.svc, case.id, actor="maria")

    assert case.status == Status.REFUNDED
    assert [r.amount for r in world.stripe.refunds] == [60000]


async def test_over_refund_approval_is_refused_and_changes_nothing(world: World) -> None:
    world.paid_booking("BIG-2", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await world.cancel("BIG-2")
    await world.settle()
    case = await only_case(world)

    with pytest.raises(InvalidAmount, match="more than"):
        await cases.approve(world.bot.svc.store, case.id, by="maria", amount=84001,
                            reason="typo")
    assert (await cases.get(world.bot.svc.store, case.id)).status == Status.PENDING_APPROVAL
    assert world.stripe.refunds == []


async def test_deny_records_the_reason_and_refunds_nothing(world: World) -> None:
    world.paid_booking("DENY-1", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await world.cancel("DENY-1")
    await world.settle()
    case = await only_case(world)

    denied = await cases.deny(world.bot.svc.store, case.id, by="maria",
                              reason="guest no-showed last season; manager call")

    assert denied.status == Status.DENIED
    assert denied.status_reason == "guest no-showed last season; manager call"
    assert world.stripe.refunds == []
    with pytest.raises(AlreadyDecided, match="already denied by maria"):
        await cases.approve(world.bot.svc.store, case.id, by="joe")


async def test_same_webhook_ten_times_concurrently_opens_one_case_one_refund(
    world: World,
) -> None:
    world.paid_booking("DUP-1", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)])
    world.checkfront.booking("DUP-1").status = "STOP"
    body = world.checkfront.webhook_body("DUP-1")
    async with httpx.AsyncClient() as client:
        answers = await asyncio.gather(
            *(client.post(world.webhook_url(), json=body) for _ in range(10)))
    await world.settle()

    assert all(a.status_code == 200 for a in answers)
    assert sum(1 for a in answers if a.json().get("duplicate")) == 9
    case = await only_case(world)
    assert case.status == Status.REFUNDED
    assert len(world.stripe.refunds) == 1


async def test_two_concurrent_approvals_make_one_refund(world: World) -> None:
    world.paid_booking("RACE-1", [Item("kayak-tour", "630.00", "30.00", hours_ahead=96)])
    await world.cancel("RACE-1")
    await world.settle()
    case = await only_case(world)

    async def approve_and_run(who: str) -> str:
        try:
            await cases.approve(world.bot.svc.store, case.id, by=who)
        except AlreadyDecided as exc:
            return f"refused: {exc}"
        await execute(world.bot.svc, case.id, actor=who)
        return "approved"

    results = await asyncio.gather(approve_and_run("maria"), approve_and_run("joe"))

    assert sorted(r.split(":")[0] for r in results) == ["approved", "refused"]
    assert "already approved by" in next(r for r in results if r.startswith("refused"))
    assert len(world.stripe.refunds) == 1


async def test_crash_between_execution_row_and_stripe_answer_resumes_with_one_refund(
    world: World,
) -> None:
    world.paid_booking("CRASH-1", [Item("kayak-tour", "630.00", "30.00", hours_ahead=96)])
    await world.cancel("CRASH-1")
    await world.settle()
    case = await only_case(world)
    await cases.approve(world.bot.svc.store, case.id, by="maria")
    # Stripe makes the refund, then holds its answer: the process dies while waiting (and
    # Stripe's refund events are not delivered either, so only the replay can tell us)
    world.stripe.configure_webhook(f"{world.bot_url}/webhooks/stripe", "whsec_sandbox_secret",
                                   events=["charge.dispute.created"])
    world.stripe.inject("timeout", delay=1.5)   # longer than the client's 1 s timeout
    run = asyncio.create_task(execute(world.bot.svc, case.id, actor="maria"))
    for _ in range(100):
        if world.stripe.refunds:
            break
        await asyncio.sleep(0.02)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert (await cases.get(world.bot.svc.store, case.id)).status == Status.EXECUTING
    assert len(world.stripe.refunds) == 1
    await world.bot.close()

    restarted = await Bot.create(world.bot.settings)  # same database file
    server = await start(restarted.web)  # start-up resumes cases left executing
    try:
        await restarted.worker.drain()
        case = await cases.get(restarted.svc.store, case.id)
        assert case.status == Status.REFUNDED
        assert len(world.stripe.refunds) == 1
        replays = [r for r in world.stripe.requests
                   if r.path == "/v1/refunds" and r.method == "POST"]
        # the lost call is still held by the stand-in; the resumed call was a replay
        assert [r.replayed for r in replays] == [True]
        assert replays[0].idempotency_key.startswith(f"refund-bot:case-{case.id}:")
    finally:
        await server.stop()


@pytest.mark.parametrize("fault", ["500", "429", "timeout", "reset"])
async def test_stripe_faults_are_retried_with_the_same_key(world: World, fault: str) -> None:
    world.paid_booking("FAULT-1", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)])
    options = {"retry_after": 0.1} if fault == "429" else {}
    if fault == "timeout":
        options = {"delay": 3.0}
    world.stripe.inject(fault, **options)

    await world.cancel("FAULT-1")
    await world.settle()

    case = await only_case(world)
    assert case.status == Status.REFUNDED, case.status_reason
    assert len(world.stripe.refunds) == 1
    posts = [r for r in world.stripe.requests if r.path == "/v1/refunds" and r.method == "POST"]
    assert len({r.idempotency_key for r in posts}) == 1
    if fault == "timeout":  # the first call is still held by the stand-in; the retry replayed
        assert posts[-1].replayed
    else:
        assert len(posts) >= 2


async def test_refund_that_later_fails_moves_the_case_to_failed(world: World) -> None:
    world.stripe.set_refund_mode("pending")
    world.paid_booking("LATE-1", [Item("bike-tour", "52.50", "2.50", hours_ahead=60)])
    await world.cancel("LATE-1")
    await world.settle()
    case = await only_case(world)
    assert case.status == Status.REFUNDED

    world.stripe.settle_refund(world.stripe.refunds[0].id, "failed",
                               failure_reason="expired_or_canceled_card")
    await world.settle()

    case = await cases.get(world.bot.svc.store, case.id)
    assert case.status == Status.FAILED
    assert "expired_or_canceled_card" in (case.status_reason or "")


async def test_money_refunded_elsewhere_blocks_over_refund_and_asks_a_person(
    world: World,
) -> None:
    world.paid_booking("ELSE-1", [Item("kayak-tour", "630.00", "30.00", hours_ahead=96)])
    await world.cancel("ELSE-1")
    await world.settle()
    case = await only_case(world)
    await cases.approve(world.bot.svc.store, case.id, by="maria")
    # someone refunds part of the payment in the Stripe dashboard meanwhile
    payment = world.checkfront.booking("ELSE-1").transactions[0].transaction_id
    async with httpx.AsyncClient(base_url=world.servers[1].url) as client:
        made = await client.post("/v1/refunds", data={"payment_intent": payment, "amount": 10000},
                                 headers={"Authorization": "Bearer sk_test_sandbox"})
    assert made.status_code == 200

    case = await execute(world.bot.svc, case.id, actor="maria")

    assert case.status == Status.PENDING_APPROVAL
    assert "unrefunded" in (case.status_reason or "")
    assert len(world.stripe.refunds) == 1  # only the dashboard one


async def test_booking_changed_since_quote_is_requoted_before_execution(world: World) -> None:
    world.paid_booking("CHG-1", [Item("kayak-tour", "630.00", "30.00", hours_ahead=96)])
    await world.cancel("CHG-1")
    await world.settle()
    case = await only_case(world)
    await cases.approve(world.bot.svc.store, case.id, by="maria")
    world.checkfront.add_transaction("CHG-1", amount="100.00", status="REFUND",
                                     transaction_id="cash-refund-1", gateway_id="Cash")

    case = await execute(world.bot.svc, case.id, actor="maria")

    assert case.status == Status.PENDING_APPROVAL
    assert "changed" in (case.status_reason or "")
    # entitlement 620.00 (630.00 less the 10.00 fee); paid 630.00 less 100.00 refunded in cash
    # = 530.00 net; retained 10.00; so 520.00 is left to refund
    assert case.refund_amount == 52000
    assert world.stripe.refunds == []


async def test_later_notices_for_a_refunded_booking_open_no_second_case(world: World) -> None:
    world.paid_booking("AGAIN-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await world.cancel("AGAIN-1")
    await world.settle()
    # Checkfront notifies again (our note changed the booking); then it is voided as well
    await world.cancel("AGAIN-1", status="STOP")
    answer = await world.cancel("AGAIN-1", status="VOID")
    await world.settle()

    assert answer.status_code == 200
    assert len(await cases.list_cases(world.bot.svc.store)) == 1
    assert len(world.stripe.refunds) == 1
    outcomes = await world.bot.svc.store.fetch_all(
        "SELECT outcome FROM webhook_events WHERE source = 'checkfront' ORDER BY id")
    assert "ignored: booking already has case 1 (refunded)" in [r["outcome"] for r in outcomes]


async def test_a_new_case_nets_the_refunds_this_bot_already_made(world: World) -> None:
    from services.refunds.opening import open_case
    from services.refunds.snapshots import assemble_snapshot
    from services.store.db import utcnow

    world.paid_booking("NET-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=30)])
    await world.cancel("NET-1")
    await world.settle()
    assert [r.amount for r in world.stripe.refunds] == [4250]  # 50 % tier less the fee
    booking_id = str(world.checkfront.booking("NET-1").booking_id)

    raw = await assemble_snapshot(world.bot.svc, booking_id)
    opened = await open_case(world.bot.svc, raw, cancelled_at=utcnow(), source="slack",
                             requested_by="U0SAM")

    assert opened.quote.already_refunded == 4250
    assert opened.quote.total_refund == 0
    assert opened.case.status == Status.DENIED
    assert len(world.stripe.refunds) == 1


async def test_retry_after_a_failed_refund_refunds_only_what_is_missing(world: World) -> None:
    world.stripe.set_refund_mode("pending")
    world.paid_booking("RETRY-1", [Item("kayak-tour", "630.00", "30.00", hours_ahead=96)],
                       payments=["200.00", "430.00"])
    await world.cancel("RETRY-1")
    await world.settle()
    case = await only_case(world)
    await cases.approve(world.bot.svc.store, case.id, by="maria")
    case = await execute(world.bot.svc, case.id, actor="maria")
    assert case.status == Status.REFUNDED
    assert sorted(r.amount for r in world.stripe.refunds) == [19000, 43000]
    failed = next(r for r in world.stripe.refunds if r.amount == 43000)
    world.stripe.settle_refund(failed.id, "failed", failure_reason="lost_or_stolen_card")
    await world.settle()
    assert (await cases.get(world.bot.svc.store, case.id)).status == Status.FAILED

    case = await execute(world.bot.svc, case.id, actor="maria")  # the Retry button

    assert case.status == Status.REFUNDED
    live = [r for r in world.stripe.refunds if r.status != "failed"]
    assert sum(r.amount for r in live) == 62000 and len(world.stripe.refunds) == 3
    newest = world.stripe.refunds[-1]
    assert newest.payment_intent == failed.payment_intent and newest.amount == 43000
    keys = [r.idempotency_key for r in world.stripe.requests
            if r.path == "/v1/refunds" and r.method == "POST"]
    assert keys[-1].endswith(":plan-2")


async def test_a_line_that_lost_its_total_stops_execution_and_names_it(
    world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    world.paid_booking("NOTOTAL-1", [Item("kayak-tour", "420.00", hours_ahead=96),
                                     Item("bike-tour", "420.00", "20.00", hours_ahead=96)])
    await world.cancel("NOTOTAL-1")
    await world.settle()
    case = await only_case(world)
    assert case.status == Status.PENDING_APPROVAL
    served = world.checkfront._booking_body

    def without_a_line_total(b):  # type: ignore[no-untyped-def]
        body = served(b)
        del next(iter(body["items"].values()))["total"]
        return body

    monkeypatch.setattr(world.checkfront, "_booking_body", without_a_line_total)
    await cases.approve(world.bot.svc.store, case.id, by="maria")

    case = await execute(world.bot.svc, case.id, actor="maria")

    # not quoted as if the line were free: the case goes back to a person with the reason
    assert case.status == Status.FAILED
    assert "booking.order.items[0].total is missing" in (case.status_reason or "")
    assert world.stripe.refunds == []
