"""Settlement-level reconciliation against the Stripe stand-in: balance transactions of charges,
refunds and refund failures, automatic payouts, a refund held out of every payout, the fees
lost to refunds per day, and the digest that shows them."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bot.cli.world import World
from bot.slack.ui.digest import digest_message, digest_text
from bot.teams.cards import digest_card
from sandbox.stripe_server import StripeSandbox
from services.finance.reconcile import reconcile_day
from services.finance.runs import (
    MISSING_FROM_PAYOUT,
    UNMATCHED_REFUND_FAILURE,
    load_run,
    open_discrepancies,
)
from services.finance.stats import day_stats
from services.refunds.automation import automation_state
from tests.test_reconcile import (
    TZ,
    bot_refund,
    insert_case,
    insert_execution,
    local,
    outside_refund,
    past_day,
)

pytestmark = pytest.mark.both_backends


def stripe_calls(world: World, *paths: str) -> int:
    return sum(1 for r in world.stripe.requests
               if r.method == "GET" and any(r.path.startswith(p) for p in paths))


async def test_a_refund_held_out_of_every_payout_is_flagged_then_resolved(
        world: World) -> None:
    svc = world.bot.svc
    day = past_day(10)
    paid = await bot_refund(world, "PAID-1", local(day, 12))
    held = await bot_refund(world, "HELD-1", local(day, 13))
    world.stripe.hold_from_payouts(held)
    refunded = {r.id: r.amount for r in world.stripe.refunds}

    before = datetime.now(UTC)
    run = await reconcile_day(svc, day, TZ, settle=True, check_checkfront=False)
    # whole days since the refund (13:00 ten days ago): 9 or 10 by the time of day of the run
    ages = {(moment - local(day, 13)).days for moment in (before, datetime.now(UTC))}

    missing = [d for d in run.discrepancies if d.kind == MISSING_FROM_PAYOUT]
    assert [(d.refund_id, d.booking_code, d.amount, d.error) for d in missing] == [
        (held, "HELD-1", refunded[held], True)]
    said = re.search(r"is in no Stripe payout after (\d+) days; payouts usually carry it "
                     r"within 7 days", missing[0].detail)
    assert said is not None and int(said.group(1)) in ages
    figures = run.settlement["USD"]
    assert (figures.refunds, figures.refunded) == (2, refunded[paid] + refunded[held])
    assert (figures.in_payout, figures.missing_from_payout, figures.missing_amount) == \
        (1, 1, refunded[held])
    stored = await svc.store.fetch_all(
        "SELECT refund_id, payout_id FROM settlement_refunds ORDER BY refund_id")
    payout_of = {r["refund_id"]: r["payout_id"] for r in stored}
    assert payout_of[held] is None and payout_of[paid] is not None
    again = await load_run(svc.store, day)
    assert again is not None and again.settlement == run.settlement

    world.stripe.release_to_payouts(held)   # the next automatic payout carries it
    later = await reconcile_day(svc, day + timedelta(days=1), TZ, settle=True,
                                check_checkfront=False)
    assert [d.refund_id for d in later.resolved if d.kind == MISSING_FROM_PAYOUT] == [held]
    assert not [d for d in await open_discrepancies(svc.store) if d.kind == MISSING_FROM_PAYOUT]


async def test_a_refund_within_the_payout_delay_is_not_flagged(world: World) -> None:
    svc = world.bot.svc
    day = past_day(3)
    held = await bot_refund(world, "RECENT-1", local(day, 12))
    world.stripe.hold_from_payouts(held)
    run = await reconcile_day(svc, day, TZ, settle=True, check_checkfront=False)
    assert not [d for d in run.discrepancies if d.kind == MISSING_FROM_PAYOUT]
    assert run.settlement["USD"].in_payout == 0
    shorter = await reconcile_day(svc, day, TZ, settle=True, check_checkfront=False,
                                  payout_delay=timedelta(days=2))
    assert [d.refund_id for d in shorter.discrepancies if d.kind == MISSING_FROM_PAYOUT] == \
        [held]


async def test_payouts_are_matched_with_fewer_calls_than_one_per_refund(world: World) -> None:
    svc = world.bot.svc
    day = past_day(9)
    refunds = [(await outside_refund(world, 1_000 + n, local(day, 9, n)))[0]
               for n in range(40)]
    before = stripe_calls(world, "/v1/balance_transactions", "/v1/payouts")
    run = await reconcile_day(svc, day, TZ, settle=True, check_checkfront=False)
    calls = stripe_calls(world, "/v1/balance_transactions", "/v1/payouts") - before
    assert run.settlement["USD"].in_payout == len(refunds) == 40
    assert not [d for d in run.discrepancies if d.kind == MISSING_FROM_PAYOUT]
    # one page of the day's refunds, one of its failures, one of payouts, one per payout
    assert calls <= 5 < len(refunds), calls


async def test_fees_lost_per_day_match_a_hand_count(world: World) -> None:
    svc = world.bot.svc
    day = past_day(4)
    before = day - timedelta(days=1)
    # 2.9 % + 30 cents: 100.00 -> 3.20, 250.00 -> 7.55, 33.33 -> 0.97 + 0.30 = 1.27
    first = world.stripe.add_payment(10_000, "USD").id
    second = world.stripe.add_payment(25_000, "USD").id
    third = world.stripe.add_payment(3_333, "USD").id
    earlier = world.stripe.add_payment(8_000, "USD").id   # 2.32 + 0.30 = 2.62
    await outside_refund(world, 2_000, local(before, 10), payment=earlier)
    await outside_refund(world, 10_000, local(day, 9), payment=first)
    await outside_refund(world, 5_000, local(day, 10), payment=second)
    await outside_refund(world, 7_000, local(day, 11), payment=second)  # same charge: once
    await outside_refund(world, 3_333, local(day, 12), payment=third)
    await outside_refund(world, 1_000, local(day, 13), payment=earlier)  # counted the day before
    await world.settle()

    first_run = await reconcile_day(svc, before, TZ, settle=True, check_checkfront=False)
    assert first_run.settlement["USD"].fees_lost == 262
    run = await reconcile_day(svc, day, TZ, settle=True, check_checkfront=False)
    f = run.settlement["USD"]
    assert (f.refunds, f.refunded) == (5, 10_000 + 5_000 + 7_000 + 3_333 + 1_000)
    assert f.fees_kept == 320 + 755 + 127
    assert f.refund_fees == 0     # Stripe takes no fee on a refund and returns none
    assert f.fees_lost == 1_202
    rerun = await reconcile_day(svc, day, TZ, settle=True, check_checkfront=False)
    assert rerun.settlement == run.settlement


async def test_refund_failure_reversals_are_matched_to_the_ledger(world: World) -> None:
    svc = world.bot.svc
    today = datetime.now(TZ).date()
    ours = await bot_refund(world, "FAIL-1", datetime.now(TZ) - timedelta(minutes=5))
    world.stripe.settle_refund(ours, "failed", "expired_or_canceled_card")
    outside, _ = await outside_refund(world, 2_500, datetime.now(TZ) - timedelta(minutes=4))
    world.stripe.settle_refund(outside, "failed", "lost_or_stolen_card")
    wrong, wrong_pi = await outside_refund(world, 1_700, datetime.now(TZ) - timedelta(minutes=3))
    world.stripe.settle_refund(wrong, "failed", "declined")
    await world.settle()
    case_id = await insert_case(svc, "WRONG-1")   # a ledger that missed the failure
    await insert_execution(svc, case_id, payment=wrong_pi, amount=1_700,
                           when=datetime.now(TZ) - timedelta(minutes=3), status="succeeded",
                           refund_id=wrong)
    status = await svc.store.fetch_one(
        "SELECT status FROM executions WHERE stripe_refund_id = ?", (ours,))
    assert status is not None and status["status"] == "failed"

    run = await reconcile_day(svc, today, TZ, settle=True, check_checkfront=False)
    refunded = {r.id: r.amount for r in world.stripe.refunds}
    f = run.settlement["USD"]
    assert (f.failures, f.failures_amount, f.unmatched_failures) == (
        3, refunded[ours] + 2_500 + 1_700, 2)
    unmatched = {d.refund_id: d for d in run.discrepancies
                 if d.kind == UNMATCHED_REFUND_FAILURE}
    assert set(unmatched) == {outside, wrong}
    assert unmatched[wrong].error and unmatched[wrong].booking_code == "WRONG-1"
    assert "our ledger records it as succeeded" in unmatched[wrong].detail
    assert not unmatched[outside].error    # made outside the bot: informational


async def test_the_digest_shows_fees_lost_and_refunds_missing_from_payouts(
        world: World) -> None:
    svc = world.bot.svc
    day = past_day(9)
    held = await bot_refund(world, "DIG-1", local(day, 12))
    world.stripe.hold_from_payouts(held)
    run = await reconcile_day(svc, day, TZ, settle=True, check_checkfront=False)
    amount = world.stripe.refund(held).amount
    stats = await day_stats(svc.store, day, TZ)
    automation = await automation_state(svc.store)
    message = digest_message(run, stats, [], automation, {})
    shown = "\n".join(str(b) for b in message.blocks)
    fee = run.settlement["USD"].fees_lost
    assert fee == world.stripe.balance.fee_of(world.stripe.charges[
        world.stripe.refund(held).charge].amount, "usd")
    assert f"Stripe fees lost to refunds USD: *{fee / 100:.2f} USD*" in shown
    assert f"refunds missing from payouts USD: 1 ({amount / 100:.2f} USD)" in shown
    assert "missing from payout" in shown and "DIG-1" in shown
    text = digest_text(run, stats, [], automation)
    assert f"Stripe fees lost to refunds {fee / 100:.2f} USD" in text
    assert "missing from payouts 1" in text
    assert run.to_dict()["settlement"]["USD"]["fees_lost"] == fee
    card = json.dumps(digest_card(run, stats, [], automation), ensure_ascii=False)   # Teams
    assert f"Stripe fees lost to refunds USD: **{fee / 100:.2f} USD**" in card
    assert f"refunds missing from payouts USD: 1 ({amount / 100:.2f} USD)" in card


async def test_a_run_without_settlement_is_unchanged(world: World) -> None:
    day = past_day(9)
    await bot_refund(world, "PLAIN-1", local(day, 12))
    run = await reconcile_day(world.bot.svc, day, TZ, check_checkfront=False, settle=False)
    assert run.settlement == {} and "settlement" not in run.to_dict()
    assert stripe_calls(world, "/v1/balance_transactions", "/v1/payouts") == 0
    plain = replace(world.bot.svc, config=replace(world.bot.svc.config, settlement=False))
    assert (await reconcile_day(plain, day, TZ, check_checkfront=False)).settlement == {}


async def test_the_deployment_settles_by_default_with_its_payout_delay(world: World) -> None:
    svc = world.bot.svc
    assert svc.config.settlement and svc.config.payout_delay == timedelta(days=7)
    day = past_day(5)
    held = await bot_refund(world, "DELAY-1", local(day, 12))
    world.stripe.hold_from_payouts(held)
    run = await reconcile_day(svc, day, TZ, check_checkfront=False)   # the daily run's way
    assert run.settlement["USD"].refunds == 1
    assert not [d for d in run.discrepancies if d.kind == MISSING_FROM_PAYOUT]
    quick = replace(svc, config=replace(svc.config, payout_delay=timedelta(days=3)))
    run = await reconcile_day(quick, day, TZ, check_checkfront=False)
    assert [d.refund_id for d in run.discrepancies if d.kind == MISSING_FROM_PAYOUT] == [held]


# ---- the stand-in's balance ------------------------------------------------------------------

def test_balance_transactions_follow_stripes_object() -> None:
    now = 1_760_000_000
    sandbox = StripeSandbox(clock=lambda: now)
    pi = sandbox.add_payment(10_000, "usd", created=now - 5 * 86_400)
    charge = sandbox.charges[str(pi.latest_charge)]
    charge_txn = sandbox.balance.transactions[str(charge.balance_transaction)]
    body = charge_txn.to_json(now)
    assert (body["type"], body["amount"], body["fee"], body["net"], body["status"]) == \
        ("charge", 10_000, 320, 9_680, "available")
    assert body["fee_details"] == [{"amount": 320, "application": None, "currency": "usd",
                                    "description": "Stripe processing fees",
                                    "type": "stripe_fee"}]
    assert body["reporting_category"] == "charge" and body["source"] == charge.id


def test_payouts_carry_what_is_available_and_leave_held_refunds_out() -> None:
    clock = [1_760_000_000.0]
    sandbox = StripeSandbox(clock=lambda: clock[0], automatic_payouts=False)
    start = int(clock[0])
    pi = sandbox.add_payment(5_000, "usd", created=start - 3 * 86_400)
    txn = sandbox.balance.transactions[str(sandbox.charges[str(pi.latest_charge)]
                                           .balance_transaction)]
    payouts = sandbox.run_payouts(start)
    assert [(p.amount, p.currency) for p in payouts] == [(txn.net, "usd")]
    assert txn.payout == payouts[0].id
    assert sandbox.run_payouts(start) == []   # nothing twice
    assert payouts[0].to_json(start)["status"] == "in_transit"
    assert payouts[0].to_json(start + 3 * 86_400)["status"] == "paid"
    own = sandbox.balance.transactions[payouts[0].balance_transaction]
    assert (own.type, own.amount, own.payout) == ("payout", -txn.net, payouts[0].id)


async def test_a_refund_transaction_returns_no_fee_and_a_failure_reverses_it(
        world: World) -> None:
    svc = world.bot.svc
    assert svc.stripe is not None
    refund_id, _ = await outside_refund(world, 4_000, datetime.now(TZ))
    world.stripe.settle_refund(refund_id, "failed", "declined")
    refund = world.stripe.refund(refund_id)
    items = [t async for t in svc.stripe.iter_balance_transactions(
        source=refund_id, expand=("data.source.charge.balance_transaction",))]
    by_type = {t.type: t for t in items}
    assert set(by_type) == {"refund", "refund_failure"}
    spent, back = by_type["refund"], by_type["refund_failure"]
    assert (spent.amount, spent.fee, spent.net, spent.reporting_category) == \
        (-4_000, 0, -4_000, "refund")
    assert spent.id == refund.balance_transaction
    assert (back.amount, back.fee, back.net) == (4_000, 0, 4_000)
    assert back.id == refund.failure_balance_transaction
    assert spent.charge == refund.charge and spent.charge_fee == 320   # 2.9 % of 100 + 30


async def test_the_stand_in_lists_by_payout_and_pages(world: World) -> None:
    svc = world.bot.svc
    assert svc.stripe is not None
    day = past_day(5)
    made = [(await outside_refund(world, 1_000 + n, local(day, 10, n)))[0] for n in range(5)]
    payouts = [p async for p in svc.stripe.iter_payouts()]
    assert payouts
    listed = []
    for payout in payouts:
        listed += [t async for t in svc.stripe.iter_balance_transactions(
            payout=payout.id, type="refund", page_size=2)]
    assert sorted(t.source or "" for t in listed) == sorted(made)
    assert all(t.status == "available" for t in listed)
    one = world.stripe.balance.run_payouts()
    assert one == []


def test_unknown_payout_filter_is_a_404() -> None:
    sandbox = StripeSandbox()
    try:
        sandbox.balance.list_transactions({"payout": "po_nope"}, lambda _: None)
    except Exception as exc:   # the stand-in's ApiError
        assert getattr(exc, "status", None) == 404
    else:
        raise AssertionError("expected a 404")


async def test_the_test_controls_answer_over_http(world: World) -> None:
    base = str(world.bot.settings.stripe_api_base)
    refund_id, _ = await outside_refund(world, 1_200, local(past_day(3), 10))
    headers = {"Authorization": "Bearer sk_test_sandbox"}
    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        held = await client.post(f"/v1/test_helpers/refunds/{refund_id}/hold_from_payouts")
        assert held.status_code == 200 and held.json()["id"] == refund_id
        made = await client.post("/v1/test_helpers/payouts/run")
        assert made.status_code == 200
        txn = world.stripe.refund(refund_id).balance_transaction
        one = await client.get(f"/v1/balance_transactions/{txn}",
                               params={"expand[]": "source"})
        body = one.json()
        assert body["source"]["id"] == refund_id
        assert (body["amount"], body["fee"], body["fee_details"]) == (-1_200, 0, [])
        payouts = (await client.get("/v1/payouts")).json()["data"]
        members = [t["source"] for p in payouts for t in (await client.get(
            "/v1/balance_transactions", params={"payout": p["id"]})).json()["data"]]
        assert refund_id not in members
        assert (await client.get("/v1/payouts/po_nope")).status_code == 404
