"""The Home tab over real HTTP: a signed `app_home_opened` event, `views.publish` at the Slack
stand-in, and its Resume button for approvers only."""

from __future__ import annotations

import json

from bot.cli.world import APPROVALS, MARIA, SAM, Item, World
from bot.slack.ui import ids
from services.refunds.automation import automation_state, set_automation
from tests.slack_helpers import buttons


async def test_an_approver_sees_waiting_cases_disputes_and_the_automation_state(
    sworld: World,
) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    for code, total, tax in (("HOME-1", "840.00", "40.00"), ("HOME-2", "630.00", "30.00")):
        sworld.paid_booking(code, [Item("kayak-tour", total, tax, hours_ahead=96)])
        await sworld.cancel(code)
    await sworld.settle()
    charge = next(pi.latest_charge for pi in sworld.stripe.payment_intents.values()
                  if pi.metadata.get("booking") == "HOME-2")
    assert charge is not None
    dispute = sworld.stripe.create_dispute(charge)
    await sworld.settle()

    answer = await sworld.sender.home_opened(MARIA)
    await sworld.settle()

    assert answer.status_code == 200
    view = sworld.slack.home_views[MARIA]
    text = json.dumps(view["blocks"])
    assert "Automation running" in text and "/refund pause" in text
    assert "Waiting for approval (2)" in text
    assert text.index("HOME-1") < text.index("HOME-2")         # oldest first
    card = next(m for m in sworld.slack.messages_in(APPROVALS) if "HOME-1" in json.dumps(m))
    assert f"/archives/{APPROVALS}/p{card['ts'].replace('.', '')}" in text   # linked
    assert "Open disputes (1)" in text and dispute.id in text
    assert "@example.test" not in text


async def test_resume_on_the_home_tab_is_for_approvers_only(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    await set_automation(sworld.bot.svc, paused=True, reason="storm week", by=MARIA)
    await sworld.sender.home_opened(SAM)
    await sworld.sender.home_opened(MARIA)
    await sworld.settle()
    assert ids.HOME_RESUME not in buttons(sworld.slack.home_views[SAM])
    assert "storm week" in json.dumps(sworld.slack.home_views[SAM]["blocks"])
    assert ids.HOME_RESUME in buttons(sworld.slack.home_views[MARIA])

    await sworld.sender.click(ids.HOME_RESUME, "resume", SAM)
    await sworld.settle()
    assert (await automation_state(sworld.bot.svc.store)).paused is True
    refused = await sworld.bot.svc.store.fetch_all(
        "SELECT detail FROM audit_log WHERE action = 'slack.refused' AND actor = ?", (SAM,))
    assert [json.loads(r["detail"])["action"] for r in refused] == [ids.HOME_RESUME]

    await sworld.sender.click(ids.HOME_RESUME, "resume", MARIA)
    await sworld.settle()
    state = await automation_state(sworld.bot.svc.store)
    assert state.paused is False and state.by == MARIA
    redrawn = json.dumps(sworld.slack.home_views[MARIA]["blocks"])
    assert "Automation running" in redrawn


async def test_the_home_tab_lists_failed_webhook_events(sworld: World) -> None:
    from tests.test_intake_retries import ODD_EVENTS, send_stripe

    assert sworld.sender is not None and sworld.slack is not None
    for n, event in enumerate(ODD_EVENTS[1:]):
        await send_stripe(sworld, n, event)
    await sworld.settle()

    await sworld.sender.home_opened(MARIA)
    await sworld.settle()

    text = json.dumps(sworld.slack.home_views[MARIA]["blocks"])
    assert "Webhook events not processed (2)" in text
    assert "event #1" in text and "event #2" in text and "AttributeError" in text
    assert "events retry" in text and "@example.test" not in text
