"""Disputes and failed payments over real HTTP: Stripe stand-in events reach the bot, cards go
to the Slack stand-in, signed clicks act through Stripe and Checkfront stand-ins."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from bot.cli.world import APPROVALS, FIONA, JOE, MARIA, SAM, Item, World
from bot.slack.ui.ids import (
    ACCEPT_DISPUTE,
    CANCEL_BOOKING,
    PAYMENT_LINK,
    RETRY_PAYMENT,
    SUBMIT_EVIDENCE,
)
from sandbox.http import serving
from sandbox.stripe_objects import Dispute, PaymentIntent
from sandbox.stripe_server import StripeSandbox
from services.clients.stripe_errors import StripeGatewayError
from services.clients.stripe_gateway import StripeGateway
from services.disputes import issues, stripe_events
from services.disputes.issues import IssueState
from services.refunds import cases
from services.refunds.execution import execute
from services.refunds.models import Status
from services.store import audit
from tests.slack_helpers import all_text, buttons, responses

pytestmark = pytest.mark.both_backends


def intent_of(world: World, code: str) -> PaymentIntent:
    return next(pi for pi in world.stripe.payment_intents.values()
                if pi.metadata.get("booking") == code)


async def refunded_then_disputed(world: World, code: str) -> tuple[Dispute, dict[str, Any]]:
    """A booking refunded by the bot (95.00 of 105.00), then a dispute on its charge."""
    world.paid_booking(code, [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await world.cancel(code)
    await world.settle()
    case = (await cases.list_cases(world.bot.svc.store))[0]
    assert case.status == Status.REFUNDED
    charge = intent_of(world, code).latest_charge
    assert charge is not None
    dispute = world.stripe.create_dispute(charge, reason="credit_not_processed",
                                          due_by=int(time.time()) + 7 * 86400)
    await world.settle()
    assert world.slack is not None
    card = world.slack.messages_in(APPROVALS)[-1]
    return dispute, card


async def failed_payment(world: World, code: str, amount: int = 25000) -> tuple[
        PaymentIntent, dict[str, Any]]:
    """A booking in Checkfront whose Stripe payment was declined."""
    world.paid_booking(code, [Item("bike-tour", "250.00", hours_ahead=96)], payments=[])
    intent = world.stripe.fail_payment(amount, "usd", metadata={"booking": code})
    await world.settle()
    assert world.slack is not None
    card = world.slack.messages_in(APPROVALS)[-1]
    return intent, card


async def test_dispute_on_a_refunded_booking_posts_a_card_with_the_evidence_preview(
    sworld: World,
) -> None:
    dispute, card = await refunded_then_disputed(sworld, "DSP-1")
    refund = sworld.stripe.refunds[0]

    text = all_text(card)
    assert "Dispute" in card["text"] and "105.00 USD" in text
    assert "DSP-1" in text and "Credit not processed" in text
    assert refund.id in text  # refund history, with the Stripe refund id
    assert "cancellation_rebuttal" in text and "Full refund 48+ hours" in text
    assert "@example.test" not in text and "Ana" not in text  # no customer details
    assert str(int(dispute.due_by)) in text  # the deadline, as a Slack date
    found = buttons(card)
    assert set(found) == {SUBMIT_EVIDENCE, ACCEPT_DISPUTE}
    assert found[ACCEPT_DISPUTE]["style"] == "danger" and "confirm" in found[ACCEPT_DISPUTE]
    issue = await issues.find_issue(sworld.bot.svc.store, issues.DISPUTE, dispute.id)
    assert issue is not None and issue.booking_code == "DSP-1" and issue.case_id is not None
    opened = [e for e in await audit.history(sworld.bot.svc.store, issue.case_id)
              if e.action == "dispute.opened"]
    assert opened and opened[0].detail["stripe_id"] == dispute.id

    # the same event delivered again, and the stored event processed again: still one card
    event = next(e for e in sworld.stripe.events if e.type == "charge.dispute.created")
    sworld.stripe.resend_event(event.id)
    await sworld.settle()
    assert sworld.slack is not None
    assert sum("Dispute" in m["text"] for m in sworld.slack.messages_in(APPROVALS)) == 1
    again = await stripe_events.dispute_created(sworld.bot.svc, event.data["object"], "evt_other")
    assert "already known" in again


async def test_a_verdict_from_stripe_updates_the_card_nobody_clicked(sworld: World) -> None:
    dispute, card = await refunded_then_disputed(sworld, "DSP-W")
    assert sworld.slack is not None
    issue = await issues.find_issue(sworld.bot.svc.store, issues.DISPUTE, dispute.id)
    assert issue is not None and (issue.slack_channel, issue.slack_ts) == (APPROVALS, card["ts"])

    sworld.stripe.decide_dispute(dispute.id, "won")
    await sworld.settle()

    updated = sworld.slack.message(APPROVALS, card["ts"])
    assert "won" in all_text(updated) and "needs_response" not in all_text(updated)
    assert sum("Dispute" in m["text"] for m in sworld.slack.messages_in(APPROVALS)) == 1


async def test_submit_evidence_sends_the_pack_to_stripe_and_updates_the_card(
    sworld: World,
) -> None:
    dispute, card = await refunded_then_disputed(sworld, "DSP-2")
    refund = sworld.stripe.refunds[0]
    assert sworld.sender is not None and sworld.slack is not None

    answer = await sworld.sender.click(SUBMIT_EVIDENCE, buttons(card)[SUBMIT_EVIDENCE]["value"],
                                       MARIA, message_ts=card["ts"])
    await sworld.settle()

    assert answer.status_code == 200
    evidence = sworld.stripe.dispute_evidence[dispute.id]
    assert "DSP-2" in evidence["cancellation_rebuttal"]
    assert refund.id in evidence["cancellation_rebuttal"] and "95.00 USD" in evidence[
        "cancellation_rebuttal"]
    assert "Full refund 48+ hours" in evidence["cancellation_policy_disclosure"]
    assert "10.00 USD was retained" in evidence["refund_refusal_explanation"]
    assert "cancellation fee of 10.00 USD" in evidence["refund_refusal_explanation"]
    assert "standard-48h" in evidence["refund_policy_disclosure"]
    assert len(evidence["service_date"]) == 10
    assert "case.refunded" in evidence["uncategorized_text"]
    assert "@example.test" not in json.dumps(evidence)
    assert sworld.stripe.disputes[dispute.id].status == "under_review"
    assert sworld.stripe.dispute_submissions[dispute.id] == 1

    updated = sworld.slack.message(APPROVALS, card["ts"])
    assert buttons(updated) == {}
    assert "Evidence submitted" in all_text(updated) and MARIA in all_text(updated)
    issue = await issues.find_issue(sworld.bot.svc.store, issues.DISPUTE, dispute.id)
    assert issue is not None and issue.state == IssueState.SUBMITTED
    assert issue.stripe_status == "under_review"
    assert issue.case_id is not None
    done = [e for e in await audit.history(sworld.bot.svc.store, issue.case_id)
            if e.action == "dispute.evidence_submitted"]
    assert len(done) == 1 and done[0].actor == MARIA

    # a second click on the old card changes nothing at Stripe
    await sworld.sender.click(SUBMIT_EVIDENCE, str(issue.id), MARIA, message_ts=card["ts"])
    await sworld.settle()
    assert sworld.stripe.dispute_submissions[dispute.id] == 1
    assert any("already handled" in t for t in responses(sworld))


async def test_non_approver_is_refused_audited_and_the_dispute_is_untouched(
    sworld: World,
) -> None:
    dispute, card = await refunded_then_disputed(sworld, "DSP-3")
    assert sworld.sender is not None and sworld.slack is not None

    answer = await sworld.sender.click(ACCEPT_DISPUTE, buttons(card)[ACCEPT_DISPUTE]["value"],
                                       SAM, message_ts=card["ts"])
    await sworld.settle()

    assert answer.status_code == 200
    assert any("Only refund approvers" in t for t in responses(sworld))
    assert sworld.stripe.disputes[dispute.id].status == "needs_response"
    assert sworld.slack.calls_to("chat.update") == []
    issue = await issues.find_issue(sworld.bot.svc.store, issues.DISPUTE, dispute.id)
    assert issue is not None and issue.state == IssueState.OPEN and issue.case_id is not None
    refusals = [e for e in await audit.history(sworld.bot.svc.store, issue.case_id)
                if e.action == "slack.refused"]
    assert [r.actor for r in refusals] == [SAM]
    assert refusals[0].detail["issue"] == issue.id and refusals[0].detail["stripe_id"] == \
        dispute.id


async def test_accept_closes_the_dispute_at_stripe(sworld: World) -> None:
    dispute, card = await refunded_then_disputed(sworld, "DSP-4")
    assert sworld.sender is not None and sworld.slack is not None

    await sworld.sender.click(ACCEPT_DISPUTE, buttons(card)[ACCEPT_DISPUTE]["value"], MARIA,
                              message_ts=card["ts"])
    await sworld.settle()

    assert sworld.stripe.disputes[dispute.id].status == "lost"
    assert dispute.id not in sworld.stripe.dispute_evidence
    updated = sworld.slack.message(APPROVALS, card["ts"])
    assert buttons(updated) == {}
    assert "Dispute accepted" in all_text(updated) and MARIA in all_text(updated)
    issue = await issues.find_issue(sworld.bot.svc.store, issues.DISPUTE, dispute.id)
    assert issue is not None and issue.state == IssueState.ACCEPTED
    assert issue.stripe_status == "lost"
    accepted = await sworld.bot.svc.store.fetch_all(
        "SELECT actor FROM audit_log WHERE action = 'dispute.accepted'")
    assert [r["actor"] for r in accepted] == [MARIA]
    closed = await sworld.bot.svc.store.fetch_one(
        "SELECT outcome FROM webhook_events WHERE kind = 'charge.dispute.closed'")
    assert closed is not None and closed["outcome"] == f"dispute {dispute.id} still lost"


async def test_failed_payment_card_and_cancel_booking_voids_it_in_checkfront(
    sworld: World,
) -> None:
    intent, card = await failed_payment(sworld, "PAYF-1")
    assert sworld.sender is not None and sworld.slack is not None

    text = all_text(card)
    assert "Payment failed" in card["text"] and "250.00 USD" in text and "PAYF-1" in text
    assert "Your card was declined. (insufficient_funds)" in text
    assert set(buttons(card)) == {RETRY_PAYMENT, PAYMENT_LINK, CANCEL_BOOKING}

    # joe (limit 300.00) may decide on 250.00
    await sworld.sender.click(CANCEL_BOOKING, buttons(card)[CANCEL_BOOKING]["value"], JOE,
                              message_ts=card["ts"])
    await sworld.settle()

    booking = sworld.checkfront.booking("PAYF-1")
    assert booking.status == "VOID"
    assert booking.history[-1].notify is False
    updated = sworld.slack.message(APPROVALS, card["ts"])
    assert buttons(updated) == {} and "VOID" in all_text(updated) and JOE in all_text(updated)
    issue = await issues.find_issue(sworld.bot.svc.store, issues.PAYMENT_FAILED, intent.id)
    assert issue is not None and issue.state == IssueState.CANCELLED
    voided = await sworld.bot.svc.store.fetch_all(
        "SELECT actor FROM audit_log WHERE action = 'booking.voided'")
    assert [r["actor"] for r in voided] == [JOE]


async def test_send_payment_link_shows_the_link_on_the_card(sworld: World) -> None:
    intent, card = await failed_payment(sworld, "PAYF-2")
    assert sworld.sender is not None and sworld.slack is not None

    await sworld.sender.click(PAYMENT_LINK, buttons(card)[PAYMENT_LINK]["value"], MARIA,
                              message_ts=card["ts"])
    await sworld.settle()

    assert len(sworld.stripe.payment_links) == 1
    link = next(iter(sworld.stripe.payment_links.values()))
    item = link["line_items_sandbox"][0]
    assert item["price_data"]["unit_amount"] == "25000" and item["quantity"] == "1"
    assert link["metadata"] == {"booking_code": "PAYF-2", "failed_payment_intent": intent.id}
    assert link["restrictions"]["completed_sessions"]["limit"] == 1
    updated = sworld.slack.message(APPROVALS, card["ts"])
    assert link["url"] in all_text(updated)
    assert set(buttons(updated)) == {RETRY_PAYMENT, CANCEL_BOOKING}  # one link per payment


async def test_retry_declined_again_updates_the_same_card_then_succeeds(sworld: World) -> None:
    intent, card = await failed_payment(sworld, "PAYF-3")
    assert sworld.sender is not None and sworld.slack is not None
    value = buttons(card)[RETRY_PAYMENT]["value"]

    await sworld.sender.click(RETRY_PAYMENT, value, MARIA, message_ts=card["ts"])
    await sworld.settle()

    assert intent.status == "requires_payment_method"
    assert sum("Payment failed" in m["text"] for m in sworld.slack.messages_in(APPROVALS)) == 1
    again = sworld.slack.message(APPROVALS, card["ts"])
    assert "Retry failed" in all_text(again) and RETRY_PAYMENT in buttons(again)
    issue = await issues.find_issue(sworld.bot.svc.store, issues.PAYMENT_FAILED, intent.id)
    assert issue is not None and issue.detail["failures"] == 2

    intent.payment_method = "pm_card_visa"  # the customer put a working card on file
    await sworld.sender.click(RETRY_PAYMENT, value, MARIA, message_ts=card["ts"])
    await sworld.settle()

    assert intent.status == "succeeded"
    paid = sworld.slack.message(APPROVALS, card["ts"])
    assert buttons(paid) == {} and "Payment succeeded on retry" in all_text(paid)
    keys = [r.idempotency_key for r in sworld.stripe.requests if r.path.endswith("/confirm")]
    assert len(keys) == 2 and len(set(keys)) == 2


async def test_two_approvers_at_once_submit_once_and_limits_apply(sworld: World) -> None:
    dispute, card = await refunded_then_disputed(sworld, "DSP-5")
    assert sworld.sender is not None and sworld.slack is not None
    value = buttons(card)[SUBMIT_EVIDENCE]["value"]

    await asyncio.gather(
        sworld.sender.click(SUBMIT_EVIDENCE, value, MARIA, message_ts=card["ts"]),
        sworld.sender.click(SUBMIT_EVIDENCE, value, FIONA, message_ts=card["ts"]))
    await sworld.settle()

    assert sworld.stripe.dispute_submissions[dispute.id] == 1
    updates = [r for r in sworld.stripe.requests if r.path == f"/v1/disputes/{dispute.id}"
               and r.method == "POST"]
    assert len(updates) == 1
    assert sum("being handled" in t or "already handled" in t for t in responses(sworld)) == 1

    # 400.00 is above joe's 300.00 limit: refused, audited, nothing done
    intent, failed = await failed_payment(sworld, "PAYF-4", amount=40000)
    await sworld.sender.click(CANCEL_BOOKING, buttons(failed)[CANCEL_BOOKING]["value"], JOE,
                              message_ts=failed["ts"])
    await sworld.settle()
    assert any("can't approve refunds over 300.00 USD" in t for t in responses(sworld))
    assert sworld.checkfront.booking("PAYF-4").status == "PAID"
    refused = await sworld.bot.svc.store.fetch_all(
        "SELECT detail FROM audit_log WHERE action = 'slack.refused' AND actor = ?", (JOE,))
    assert len(refused) == 1 and intent.id in refused[0]["detail"]


async def test_gateway_evidence_rules_and_the_stand_in_refuses_a_second_submission() -> None:
    sandbox = StripeSandbox()
    async with serving(sandbox.app()) as server:
        gateway = StripeGateway("sk_test_sandbox", api_base=server.url, max_network_retries=0)
        try:
            pi = sandbox.add_payment(5000, "eur")
            assert pi.latest_charge is not None
            dispute = sandbox.create_dispute(pi.latest_charge, reason="fraudulent", due_by=99)
            fetched = await gateway.get_dispute(dispute.id)
            assert (fetched.amount, fetched.currency, fetched.due_by) == (5000, "EUR", 99)
            assert fetched.status == "needs_response" and fetched.payment_intent == pi.id

            with pytest.raises(StripeGatewayError, match="not text evidence"):
                await gateway.submit_dispute_evidence(dispute.id, {"receipt": "x"},
                                                      idempotency_key="k-0")
            with pytest.raises(StripeGatewayError, match="150000"):
                await gateway.submit_dispute_evidence(
                    dispute.id, {"uncategorized_text": "x" * 150_001}, idempotency_key="k-0")
            staged = await gateway.submit_dispute_evidence(
                dispute.id, {"service_date": "2026-12-01"}, idempotency_key="k-1", submit=False)
            assert staged.status == "needs_response" and staged.evidence == {
                "service_date": "2026-12-01"}
            sent = await gateway.submit_dispute_evidence(
                dispute.id, {"uncategorized_text": "refunded"}, idempotency_key="k-2")
            assert sent.status == "under_review" and sent.submission_count == 1
            assert sent.evidence == {"service_date": "2026-12-01",
                                     "uncategorized_text": "refunded"}
            replay = await gateway.submit_dispute_evidence(
                dispute.id, {"uncategorized_text": "refunded"}, idempotency_key="k-2")
            assert replay == sent and sandbox.dispute_submissions[dispute.id] == 1
            with pytest.raises(StripeGatewayError) as late:
                await gateway.submit_dispute_evidence(
                    dispute.id, {"uncategorized_text": "more"}, idempotency_key="k-3")
            assert late.value.code == "dispute_already_submitted"
            closed = await gateway.close_dispute(dispute.id, idempotency_key="k-4")
            assert closed.status == "lost"
            assert [e.type for e in sandbox.events][-3:] == [
                "charge.dispute.updated", "charge.dispute.updated", "charge.dispute.closed"]
        finally:
            await gateway.close()


async def test_failed_payment_not_linked_to_a_booking_posts_no_card(sworld: World) -> None:
    sworld.stripe.fail_payment(5000, "usd")
    await sworld.settle()
    assert sworld.slack is not None
    assert sworld.slack.messages_in(APPROVALS) == []
    rows = await sworld.bot.svc.store.fetch_all("SELECT * FROM payment_issues")
    assert rows == []


# --- the cards as Block Kit, every state ---------------------------------------------------

def make_issue(kind: str, state: IssueState, **changes: Any) -> issues.PaymentIssue:
    evidence = {"cancellation_rebuttal": "Refunded re_1 on time. " * 400,
                "uncategorized_text": "Customer wrote from ana.silva@example.test, +1 555 0100 200"}
    values: dict[str, Any] = dict(
        id=7, kind=kind, stripe_id="dp_1" if kind == issues.DISPUTE else "pi_1",
        event_id="evt_1", payment_intent="pi_1", charge="ch_1", booking_code="BK-<7>&",
        booking_id="7", case_id=3, amount=123456, currency="JPY", reason="fraudulent",
        due_by="2026-12-01T00:00:00+00:00",
        detail={"evidence": evidence, "facts": ["Booking BK-7 (linked by refund executions)."],
                "failures": 3},
        state=state, stripe_status="needs_response", outcome=None, acted_by=None,
        acted_at=None, attempts=0, link_url=None, slack_channel=None, slack_ts=None,
        created_at="2026-11-20T10:00:00+00:00", updated_at="2026-11-20T10:00:00+00:00")
    values.update(changes)
    return issues.PaymentIssue(**values)


@pytest.mark.parametrize("kind", [issues.DISPUTE, issues.PAYMENT_FAILED])
@pytest.mark.parametrize("state", list(IssueState))
def test_cards_are_valid_block_kit_in_every_state(kind: str, state: IssueState) -> None:
    from slack_sdk.models.blocks import Block

    from bot.slack.ui.disputes import issue_card

    acted = {} if state == IssueState.OPEN else {
        "acted_by": MARIA, "acted_at": "2026-11-20T11:05:00+00:00", "outcome": "done"}
    message = issue_card(make_issue(kind, state, link_url="https://buy.stripe.com/test_x",
                                    **acted))

    assert 0 < len(message.blocks) <= 50 and len(message.text) <= 300
    for block in message.blocks:
        assert Block.parse(block).to_dict() == block
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
    text = all_text(message.__dict__)
    assert "example.test" not in text and "555 0100" not in text
    assert "BK-&lt;7&gt;&amp;" in text and "123,456 JPY" in text
    assert bool(buttons(message.__dict__)) == (state == IssueState.OPEN)
    if state != IssueState.OPEN:
        assert MARIA in text and "11:05 UTC" in text


# --- a dispute holds the refund of its payment ---------------------------------------------

async def disputed_booking(world: World, code: str, total: str, tax: str, *,
                           charge_refundable: bool = False) -> Dispute:
    """A paid booking whose charge is disputed before anyone cancels it."""
    world.paid_booking(code, [Item("kayak-tour", total, tax, hours_ahead=96)])
    charge = intent_of(world, code).latest_charge
    assert charge is not None
    dispute = world.stripe.create_dispute(charge, reason="product_not_received",
                                          charge_refundable=charge_refundable)
    await world.settle()
    return dispute


async def test_a_disputed_payment_is_never_refunded_automatically(world: World) -> None:
    dispute = await disputed_booking(world, "HOLD-1", "105.00", "5.00")  # 95.00: auto-sized

    await world.cancel("HOLD-1")
    await world.settle()

    [case] = await cases.list_cases(world.bot.svc.store)
    assert case.status == Status.PENDING_APPROVAL
    quote = (await cases.current_quote(world.bot.svc.store, case)).quote
    assert [flag.code for flag in quote.risk_flags] == ["payment_disputed"]
    assert dispute.id in quote.risk_flags[0].reason
    assert world.stripe.refunds == []


async def test_a_dispute_after_approval_stops_the_refund_before_stripe(world: World) -> None:
    world.paid_booking("HOLD-2", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await world.cancel("HOLD-2")
    await world.settle()
    [case] = await cases.list_cases(world.bot.svc.store)
    await cases.approve(world.bot.svc.store, case.id, by="maria")
    charge = intent_of(world, "HOLD-2").latest_charge
    assert charge is not None
    dispute = world.stripe.create_dispute(charge)
    await world.settle()
    calls_before = len(world.stripe.requests)

    held = await execute(world.bot.svc, case.id, actor="maria")

    assert held.status == Status.PENDING_APPROVAL and held.approved_amount is None
    assert dispute.id in (held.status_reason or "")
    assert "will not refund it until the dispute is answered" in (held.status_reason or "")
    assert world.stripe.refunds == []
    assert not any(r.path == "/v1/refunds" and r.method == "POST"
                   for r in world.stripe.requests[calls_before:])
    rows = await world.bot.svc.store.fetch_all(
        "SELECT status FROM executions WHERE case_id = ?", (case.id,))
    assert [r["status"] for r in rows] == ["rejected"]
    actions = [e.action for e in await audit.history(world.bot.svc.store, case.id)]
    assert "execution.dispute_blocked" in actions


@pytest.mark.parametrize(("verdict", "refunded"), [("won", True), ("lost", False)])
async def test_the_verdict_decides_whether_the_payment_can_be_refunded(
    world: World, verdict: str, refunded: bool,
) -> None:
    dispute = await disputed_booking(world, f"HOLD-{verdict}", "105.00", "5.00")
    world.stripe.decide_dispute(dispute.id, "won" if verdict == "won" else "lost")
    await world.settle()
    await world.cancel(f"HOLD-{verdict}")
    await world.settle()
    [case] = await cases.list_cases(world.bot.svc.store)

    if refunded:   # a won dispute holds nothing: the ordinary automatic refund goes out
        assert case.status == Status.REFUNDED
        assert [r.amount for r in world.stripe.refunds] == [9500]
        return
    assert case.status == Status.PENDING_APPROVAL
    await cases.approve(world.bot.svc.store, case.id, by="maria")
    held = await execute(world.bot.svc, case.id, actor="maria")
    assert held.status == Status.PENDING_APPROVAL
    assert "already has 105.00 USD back" in (held.status_reason or "")
    assert world.stripe.refunds == []


async def test_a_refundable_inquiry_asks_a_person_but_lets_the_refund_go(world: World) -> None:
    await disputed_booking(world, "HOLD-3", "105.00", "5.00", charge_refundable=True)
    await world.cancel("HOLD-3")
    await world.settle()
    [case] = await cases.list_cases(world.bot.svc.store)
    assert case.status == Status.PENDING_APPROVAL
    quote = (await cases.current_quote(world.bot.svc.store, case)).quote
    assert "a refund would settle the dispute" in quote.risk_flags[0].reason

    await cases.approve(world.bot.svc.store, case.id, by="maria")
    done = await execute(world.bot.svc, case.id, actor="maria")

    assert done.status == Status.REFUNDED
    assert [r.amount for r in world.stripe.refunds] == [9500]


async def test_a_dispute_on_a_waiting_case_shows_on_its_card(sworld: World) -> None:
    assert sworld.slack is not None
    sworld.paid_booking("HOLD-4", [Item("kayak-tour", "840.00", "40.00", hours_ahead=96)])
    await sworld.cancel("HOLD-4")
    await sworld.settle()
    [card] = [m for m in sworld.slack.messages_in(APPROVALS) if "HOLD-4" in all_text(m)]
    assert "payment_disputed" not in all_text(card)
    charge = intent_of(sworld, "HOLD-4").latest_charge
    assert charge is not None

    dispute = sworld.stripe.create_dispute(charge)
    await sworld.settle()

    redrawn = sworld.slack.message(APPROVALS, card["ts"])
    assert "payment_disputed" in all_text(redrawn) and dispute.id in all_text(redrawn)
    assert set(buttons(redrawn)) == set(buttons(card))   # still a person's decision
