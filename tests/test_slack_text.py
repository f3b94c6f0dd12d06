"""Safe, consistent text on every Slack surface.

An injection test drives the real flows (cancellations, Deny and Adjust with their reasons,
`/refund pause`, `/refund quote|status`, unknown subcommands, the Home tab, a dispute and a
declined payment from Stripe) with mentions, a disguised link, forged formatting and `&` in
every field a person, a booking, Stripe or Checkfront controls, and reads every payload the
Slack stand-in recorded: nothing of theirs is live. The renderers a flow rarely reaches (the
digest, a failed refund's card and thread, a stuck webhook event, a Checkfront write-back still
waiting) get the same check directly. Then amounts, times and fallback text.
"""

from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from bot.cli.world import APPROVALS, MARIA, Item, World
from bot.slack.ui import answers, cards, ids
from bot.slack.ui.digest import digest_message
from bot.slack.ui.disputes import issue_card
from bot.slack.ui.intake import failed_line, stuck_card
from bot.slack.ui.kit import amounts_in, date_token, esc
from bot.slack.ui.thread import thread_reply
from services.disputes import issues
from services.disputes.issues import IssueState
from services.finance.anomaly import Anomaly
from services.finance.report import RangeReport, csv_cell
from services.finance.runs import ReconRun
from services.finance.stats import DayStats
from services.intake.events import EventRow
from services.notify import StuckEvent
from services.refunds import cases
from services.refunds.automation import Automation
from services.refunds.models import Status
from services.refunds.writeback import PendingWriteback
from services.store.audit import AuditEntry
from tests.slack_helpers import buttons, responses
from tests.slack_text_checks import EVIL, unsafe
from tests.test_blocks import make_case, make_quote
from tests.test_disputes import intent_of, make_issue

ESCAPED = "&lt;!channel&gt;"


def _values(amount: str | None, reason: str) -> dict[str, dict[str, str]]:
    values = {ids.REASON_BLOCK: {ids.REASON_INPUT: reason}}
    if amount is not None:
        values[ids.AMOUNT_BLOCK] = {ids.AMOUNT_INPUT: amount}
    return values


async def _pending(world: World, code: str) -> dict[str, Any]:
    """A high-value cancellation whose customer, product and SKU are all hostile."""
    world.paid_booking(code, [Item("kayak-tour", "840.00", "40.00", hours_ahead=96,
                                   name=f"Kayak {EVIL}"),
                              Item(f"sku-{EVIL}", "60.00", hours_ahead=96)],
                       customer=f"<@U123>&*Ana*{EVIL.replace(' ', '')} Silva")
    await world.cancel(code)
    await world.settle()
    assert world.slack is not None
    return world.slack.messages_in(APPROVALS)[-1]


async def test_no_user_string_is_live_anywhere_the_bot_posts(sworld: World) -> None:
    assert sworld.sender is not None and sworld.slack is not None
    store = sworld.bot.svc.store

    # Deny, with a hostile reason
    card = await _pending(sworld, "EVIL-1")
    await sworld.sender.click(ids.DENY, buttons(card)[ids.DENY]["value"], MARIA,
                              message_ts=card["ts"])
    await sworld.settle()
    view = sworld.slack.calls_to("views.open")[-1].params["view"]
    await sworld.sender.submit_view(ids.DENY_VIEW, _values(None, EVIL), MARIA,
                                    view["private_metadata"])
    # Adjust, with a hostile reason; the refund goes through Stripe
    card = await _pending(sworld, "EVIL-2")
    await sworld.sender.click(ids.ADJUST, buttons(card)[ids.ADJUST]["value"], MARIA,
                              message_ts=card["ts"])
    await sworld.settle()
    view = sworld.slack.calls_to("views.open")[-1].params["view"]
    await sworld.sender.submit_view(ids.ADJUST_VIEW, _values("500.00", EVIL), MARIA,
                                    view["private_metadata"])
    await sworld.settle()
    # pause with a hostile reason: the alert, the banner on the next card, the Home tab
    await sworld.sender.command(f"pause {EVIL}", MARIA)
    await sworld.settle()
    await _pending(sworld, "EVIL-3")
    await sworld.sender.home_opened(MARIA)
    # commands quoting what the person typed
    for text in ("status EVIL-3", "quote EVIL-3", f"quote {EVIL}", "<!channel>", "resume",
                 "report 2026-13-01 2026-13-02"):
        await sworld.sender.command(text, MARIA)
    await sworld.settle()
    # Stripe: a dispute and a declined payment with hostile reasons
    charge = intent_of(sworld, "EVIL-2").latest_charge
    assert charge is not None
    sworld.stripe.create_dispute(charge, reason=EVIL, due_by=int(time.time()) + 86400)
    sworld.paid_booking("EVIL-4", [Item("bike-tour", "250.00", hours_ahead=96)], payments=[])
    sworld.stripe.fail_payment(25000, "usd", metadata={"booking": "EVIL-4"},
                               decline_code=EVIL)
    await sworld.settle()

    decided = {c.booking_code: c for c in await cases.list_cases(store)}
    assert decided["EVIL-1"].status == Status.DENIED
    assert decided["EVIL-2"].status == Status.REFUNDED
    assert [r.amount for r in sworld.stripe.refunds] == [50000]
    calls = [c for c in sworld.slack.calls if c.method != "files.upload"]
    found = {f"{c.method} #{n}: {p}" for n, c in enumerate(calls) for p in unsafe(c.params)}
    assert not found, "\n".join(sorted(found))
    # and the hostile strings were shown (escaped), so the check had something to find
    posted = " ".join(str(c.params) for c in calls)
    assert posted.count(ESCAPED) >= 10
    for surface in ("chat.postMessage", "chat.update", "views.publish", "response_url"):
        assert any(ESCAPED in str(c.params) for c in sworld.slack.calls_to(surface)), surface
    assert any(ESCAPED in r for r in responses(sworld))


# --- renderers the flows above rarely reach ----------------------------------------------

def test_digest_failed_refunds_stuck_events_and_threads_are_escaped() -> None:
    quote = make_quote()
    case = make_case(quote, status=Status.FAILED, status_reason=f"Stripe said {EVIL}",
                     booking_code=f"BK-{EVIL}")
    pending = PendingWriteback(case_id=case.id, attempts=2, last_error=EVIL,
                               next_at="2026-11-20T15:00:00+00:00")
    run = ReconRun(day=date(2026, 11, 20), tz="UTC", window_start=datetime(2026, 11, 20),
                   window_end=datetime(2026, 11, 21), ran_at="2026-11-21T06:00:00+00:00",
                   stripe_count=1, counts={"matched": 1}, totals={}, discrepancies=[],
                   resolved=[], notes=[])
    stats = DayStats(day=date(2026, 11, 20), refunds={"USD": (2, 152500)}, decisions={"approve": 1},
                     median_minutes_to_refund=90,
                     waiting=[(case.id, f"BK-{EVIL}", "2026-11-19T10:00:00+00:00")])
    stuck = StuckEvent(row_id=4, source="checkfront", kind="booking", subject=EVIL,
                       error=EVIL, attempts=5, since="2026-11-20T10:00:00+00:00")
    entries = [
        AuditEntry(1, "2026-11-20T10:05:00+00:00", "U0MARIA", "case.approved", case.id,
                   {"reason": EVIL}),
        AuditEntry(2, "2026-11-20T10:06:00+00:00", "stripe", "stripe.refund_error", case.id,
                   {"payment": "pi_1", "error": EVIL, "idempotency_key": "refund-bot:k"}),
        AuditEntry(3, "2026-11-20T10:07:00+00:00", "stripe", "stripe.refund", case.id,
                   {"payment": "pi_1", "amount": "1525.00", "refund_id": "re_1",
                    "status": "succeeded", "idempotency_key": "refund-bot:case-12:k"}),
        AuditEntry(4, "2026-11-20T10:08:00+00:00", "checkfront", "checkfront.writeback_failed",
                   case.id, {"error": EVIL}),
    ]
    messages: list[cards.Message] = [
        cards.outcome_card(case, quote, customer_first_name=EVIL, decided_by="U0MARIA",
                           decided_at="2026-11-20T10:05:00+00:00", refunds=[],
                           automation=Automation(True, EVIL, EVIL),
                           decision_reason=EVIL, checkfront_pending=pending),
        cards.writeback_alert(case, pending),
        answers.status_message(case, [EVIL]),
        cards.compact_lines([(replace(case, status=Status.DENIED), quote)] * 2),
        stuck_card(stuck),
        stuck_card(replace(stuck, source="stripe", kind=EVIL)),
        digest_message(run, stats, [Anomaly("refund_rate", "k", True, EVIL)],
                       Automation(True, EVIL, EVIL), {}),
        issue_card(make_issue(issues.DISPUTE, IssueState.OPEN, reason=EVIL,
                              outcome=f"submit failed: {EVIL}", acted_by=EVIL,
                              acted_at="2026-11-20T10:00:00+00:00", booking_code=EVIL)),
        issue_card(make_issue(issues.PAYMENT_FAILED, IssueState.OPEN, reason=EVIL,
                              booking_code=EVIL, link_url="https://buy.stripe.com/test_x")),
    ]
    found = [p for m in messages for p in unsafe({"text": m.text, "blocks": m.blocks})]
    thread = thread_reply(case, entries)
    found += unsafe({"text": thread})
    found += unsafe({"text": failed_line(_failed_row())})
    assert not found, "\n".join(found)
    assert "idempotency" not in thread and "refund-bot:" not in thread
    assert "re_1" in thread and "1,525.00 USD" in thread


def _failed_row() -> EventRow:
    row: dict[str, Any] = dict.fromkeys(EventRow.__dataclass_fields__)
    row.update(row_id=3, source="stripe", event_id="evt_1", kind=EVIL, subject=EVIL,
               last_error=EVIL, attempts=4, received_at="2026-11-20T09:00:00",
               failed_at="2026-11-20T10:00:00+00:00")
    return EventRow(**row)


# --- the helper itself -----------------------------------------------------------------------

def test_esc_kills_mentions_links_quotes_and_forged_formatting_but_keeps_skus() -> None:
    assert esc("<!channel> & <@U123>") == "&lt;!channel&gt; &amp; &lt;@U123&gt;"
    assert esc("> not a quote").startswith("&gt;")
    assert esc("<https://evil.example|verify>") == "&lt;https://evil.example|verify&gt;"
    assert "*" not in esc("*URGENT* approve now") and "URGENT" in esc("*URGENT* approve now")
    assert "`" not in esc("`code`")
    assert esc("kayak_tour_2") == "kayak_tour_2"   # a SKU forms no formatting run
    assert esc("3 * 4 = 12") == "3 * 4 = 12"
    assert esc("line one\n> line two") == "line one &gt; line two"


def test_amounts_in_service_texts_read_like_every_other_amount() -> None:
    text = "refund 1525.00 is over the escalation limit 1500.00"
    assert amounts_in(text, "USD") == \
        "refund 1,525.00 USD is over the escalation limit 1,500.00 USD"
    assert amounts_in("already 1,525.00 USD and 48h+ notice, 100% of 2.5", "USD") == \
        "already 1,525.00 USD and 48h+ notice, 100% of 2.5"
    assert amounts_in("refund 12000 over 10000", "JPY") == "refund 12000 over 10000"


def test_card_fallback_text_carries_amount_booking_customer_and_why() -> None:
    quote = make_quote()
    case = make_case(quote, status_reason="refund 1525.00 is over the escalation limit "
                     "1500.00; " + "x" * 400)
    card = cards.approval_card(case, quote, customer_first_name="Ana Silva",
                               automation=Automation(False))
    assert card.text.startswith("Refund needs approval: 200.00 USD for booking KMVQ-261124, "
                                "customer Ana: refund 1,525.00 USD is over the escalation")
    assert 150 <= len(card.text) <= 230 and "Silva" not in card.text


def test_every_time_on_a_card_is_a_slack_date_with_a_readable_fallback() -> None:
    quote = make_quote()
    case = make_case(quote, status=Status.DENIED, status_reason="no")
    message = cards.outcome_card(case, quote, customer_first_name="Ana", decided_by="U0MARIA",
                                 decided_at="2026-11-20T14:05:09+00:00", refunds=[],
                                 automation=Automation(False))
    everything = message.text + str(message.blocks)
    assert "UTC" not in re.sub(r"<!date\^[^>]+>", "", everything)
    assert date_token("2026-11-20T14:05:09+00:00") == \
        "<!date^1795183509^{date_short_pretty} {time}|2026-11-20 14:05 UTC>"
    assert date_token(None) == "unknown" and "quote 996a" not in everything
    assert "checkfront_webhook" not in everything


def test_report_csv_cells_cannot_start_a_formula() -> None:
    row = {c: "x" for c in ("refunded_at", "booking", "case", "currency", "quoted", "refunded",
                            "policies", "decision", "decided_by", "stripe_refund_id",
                            "payment", "status")}
    row.update(booking="=HYPERLINK(\"https://evil.example\",\"x\")", decided_by="@SUM(A1)",
               policies="+1", payment="-2", stripe_refund_id="\tx", status="\rx",
               quoted="1525.00")
    report = RangeReport(date(2026, 11, 1), date(2026, 11, 2), [row])
    read = next(csv.DictReader(io.StringIO(report.csv())))
    assert read["booking"] == "'=HYPERLINK(\"https://evil.example\",\"x\")"
    assert read["decided_by"] == "'@SUM(A1)" and read["policies"] == "'+1"
    assert read["payment"] == "'-2" and read["stripe_refund_id"] == "'\tx"
    assert read["status"] == "' x"
    assert read["quoted"] == "1525.00" and csv_cell("KMVQ-1") == "KMVQ-1"
