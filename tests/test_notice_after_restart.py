"""A notice is never lost: a case closed just before the bot died (its outcome committed, its
Slack line not yet queued) is shown when the cancellation's webhook is applied again."""

from __future__ import annotations

from bot.cli.world import APPROVALS, Item, World
from services.intake import routing
from services.intake.events import StoredEvent, unprocessed
from services.refunds import cases


async def _forget_notice_and_unprocess(world: World, code: str) -> StoredEvent:
    """The state a kill between the final commit and the notifier leaves: the case refunded,
    no post queued for it, its webhook event still unprocessed."""
    store = world.bot.svc.store
    async with store.transaction() as tx:
        await tx.execute("DELETE FROM slack_outbox WHERE case_id IN "
                         "(SELECT id FROM cases WHERE booking_code = ?)", (code,))
        await tx.execute("DELETE FROM slack_messages WHERE case_id IN "
                         "(SELECT id FROM cases WHERE booking_code = ?)", (code,))
        await tx.execute("UPDATE webhook_events SET processed_at = NULL, outcome = NULL "
                         "WHERE source = 'checkfront'")
    [event] = await unprocessed(store)
    return event


async def test_a_closed_case_whose_line_was_never_queued_gets_it(sworld: World) -> None:
    sworld.paid_booking("GAP-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await sworld.cancel("GAP-1")
    await sworld.settle()
    event = await _forget_notice_and_unprocess(sworld, "GAP-1")

    outcome = await routing.process(sworld.bot.svc, event)
    await sworld.settle()

    assert outcome.startswith("ignored: booking already has case")
    assert sworld.slack is not None
    lines = [m for m in sworld.slack.messages_in(APPROVALS) if "GAP-1" in str(m)]
    assert len(lines) == 2   # the first line (still in the channel) and the one re-queued


async def test_a_line_still_queued_is_not_queued_twice(sworld: World) -> None:
    sworld.paid_booking("GAP-2", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await sworld.cancel("GAP-2")
    await sworld.settle()
    store = sworld.bot.svc.store
    notifier = sworld.bot.svc.notifier
    case_row = await store.fetch_one("SELECT id FROM cases WHERE booking_code = 'GAP-2'")
    assert case_row is not None
    async with store.transaction() as tx:   # the line is queued, not yet posted
        await tx.execute("DELETE FROM slack_messages WHERE case_id = ?", (case_row["id"],))
        await tx.execute("UPDATE slack_outbox SET sent_at = NULL WHERE case_id = ?",
                         (case_row["id"],))

    case = await cases.get(store, case_row["id"])
    await notifier.case_updated(case)
    await notifier.case_updated(case)
    rows = await store.fetch_all("SELECT id FROM slack_outbox WHERE case_id = ? AND kind = "
                                 "'compact' AND sent_at IS NULL", (case_row["id"],))
    assert len(rows) == 1
