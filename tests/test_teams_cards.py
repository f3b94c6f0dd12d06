"""The Teams Adaptive Cards: every card in every state valid against the Adaptive Card 1.5
schema (vendored in tests/data), the action contract with the runtime, amounts as Slack shows
them, and hostile text inert."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft6Validator

from bot.card_links import CardLinks
from bot.teams import cards
from bot.teams.cards.text import md, when
from services.disputes.issues import DISPUTE, PAYMENT_FAILED, IssueState, PaymentIssue
from services.finance.anomaly import Anomaly
from services.finance.runs import Discrepancy, ReconRun
from services.finance.stats import DayStats
from services.intake.events import EventRow
from services.money import display
from services.refunds.automation import Automation
from services.refunds.models import Status
from tests.test_blocks import EMAIL, PAUSED, RUNNING, make_case, make_quote

SCHEMA = json.loads((Path(__file__).parent / "data" / "adaptive-card-1.5.schema.json")
                    .read_text(encoding="utf-8"))
VALIDATOR = Draft6Validator(SCHEMA)
LINKS = CardLinks.of("https://acme.checkfront.com", "sk_test_x")
EVIL = ("**bold** _it_ [click](https://evil.example) ![img](https://evil.example/x.png) "
        "`code` <at>everyone</at> # Head \\*x\\* ~~s~~ javascript://x ana@example.test")
APPROVER = "00000000-0000-0000-0000-0000000000a1"


def valid(card: dict[str, Any]) -> dict[str, Any]:
    errors = sorted(VALIDATOR.iter_errors(card), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message[:200]}" for e in errors[:5])
    assert card["version"] == "1.5" and card["type"] == "AdaptiveCard"
    assert 0 < len(card["fallbackText"]) <= 300
    return card


def texts(node: Any) -> list[str]:
    """Every string a reader can see: text, fact titles and values, titles, labels, fallback."""
    seen = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("text", "title", "value", "label", "placeholder", "fallbackText",
                       "errorMessage", "altText") and isinstance(value, str):
                seen.append(value)
            else:
                seen += texts(value)
    elif isinstance(node, list):
        for item in node:
            seen += texts(item)
    return seen


def actions(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if str(node.get("type", "")).startswith("Action."):
            found.append(node)
        for key, value in node.items():
            if key != "refresh":
                found += actions(value)
    elif isinstance(node, list):
        for item in node:
            found += actions(item)
    return found


def inputs(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if str(node.get("type", "")).startswith("Input."):
            found.append(node)
        for value in node.values():
            found += inputs(value)
    elif isinstance(node, list):
        for item in node:
            found += inputs(item)
    return found


# --- the escaping rule ------------------------------------------------------------------------

MARKUP = re.compile(r"\*\*|(?<!\w)_\S.*?_(?!\w)|\[[^\]]*\]\(|`|<|>|\\|://|^\s*(#|[-+] |\d+\. )")


@pytest.mark.parametrize("hostile", [
    EVIL, "- list item", "1. numbered", "# heading", "> quote", "+ plus",
    "[Approve](https://evil.example)", "**Refund approved** by finance", "_a_ and _b_",
    "line one\n\n- line two\n[x](y)", "trailing backslash \\", "http://evil.example/pay",
    "<https://evil.example|click>", "&lt;b&gt;", "```block```",
])
def test_md_leaves_no_markup_of_its_own(hostile: str) -> None:
    made = md(hostile)
    assert "\n" not in made
    assert not MARKUP.search(made), made
    # readable: the words are still there
    for word in re.findall(r"[a-z]{4,}", hostile):
        if word not in ("https", "http", "javascript", "example", "test"):
            assert word in made


def test_md_keeps_a_sku_and_masks_contact_data() -> None:
    assert md("kayak_tour_2") == "kayak_tour_2"
    assert md("HBR-1001") == "HBR-1001"
    shown = md(f"write to {EMAIL} or +1 555 0100 200, card 4242 4242 4242 4242")
    assert EMAIL not in shown and "555 0100" not in shown and "4242 4242" not in shown
    assert len(md("x" * 5000, 100)) == 100


def test_when_uses_the_card_date_functions() -> None:
    assert when("2026-11-24T14:05:00+00:00") == \
        "{{DATE(2026-11-24T14:05:00Z, SHORT)}} {{TIME(2026-11-24T14:05:00Z)}}"
    assert when(None) == "unknown" and when("garbage**") == md("garbage**", 40)


# --- the approval card and its contract --------------------------------------------------------

def test_approval_card_carries_the_contract() -> None:
    quote = make_quote()
    case = make_case(quote)
    card = valid(cards.approval_card(case, quote, customer_first_name="Ana Silva",
                                     automation=RUNNING, links=LINKS, approver_ids=[APPROVER]))
    shown = actions(card)
    executes = [a for a in shown if a["type"] == "Action.Execute"]
    assert {a["verb"] for a in executes} == {cards.APPROVE, cards.DENY, cards.ADJUST}
    for action in executes:
        assert action["data"] == {"case_id": case.id, "version": case.quote_version}
        assert action["verb"] in cards.VERBS
    approve = next(a for a in executes if a["verb"] == cards.APPROVE)
    assert approve["associatedInputs"] == "none"
    assert [a["title"] for a in card["actions"]][:3] == ["Approve", "Deny", "Adjust"]
    urls = [a["url"] for a in shown if a["type"] == "Action.OpenUrl"]
    assert urls[0] == f"https://acme.checkfront.com/booking/{quote.booking_code}"
    assert urls[1].startswith("https://dashboard.stripe.com/test/payments/")
    ids = {i["id"]: i for i in inputs(card)}
    assert set(ids) == {cards.REASON, cards.AMOUNT, cards.ADJUST_REASON}
    assert all(i["isRequired"] for i in ids.values())
    assert ids[cards.AMOUNT]["value"] == f"{quote.total_refund / 100:.2f}"
    assert "e.g. 120.50 (USD, up to 2 decimals)" in ids[cards.AMOUNT]["placeholder"]
    assert re.fullmatch(ids[cards.AMOUNT]["regex"], "1,120.50")
    assert not re.fullmatch(ids[cards.AMOUNT]["regex"], "12.505")
    assert card["refresh"]["userIds"] == [APPROVER]
    assert card["refresh"]["action"]["verb"] == cards.REFRESH
    # the amount as Slack shows it, the facts (4-6), the first name only
    amount = display(case.refund_amount, case.currency)
    assert amount in card["body"][0]["text"] and quote.booking_code in card["body"][0]["text"]
    fact_sets = [b for b in card["body"] if b["type"] == "FactSet"]
    assert len(fact_sets) == 1 and 4 <= len(fact_sets[0]["facts"]) <= 6
    seen = " ".join(texts(card))
    assert "Ana" in seen and "Silva" not in seen and EMAIL not in seen
    assert "Why a person is needed" in seen


def test_decision_inputs_read_what_each_form_sent() -> None:
    data = {"case_id": 3, "version": "v", cards.AMOUNT: " 120.50 ",
            cards.ADJUST_REASON: "goodwill", cards.REASON: "stale"}
    assert cards.decision_inputs(cards.ADJUST, data) == ("120.50", "goodwill")
    assert cards.decision_inputs(cards.DENY, data) == ("", "stale")
    assert cards.decision_inputs(cards.DENY, {}) == ("", "")


@pytest.mark.parametrize("form", ["adjust", "deny"])
def test_a_refused_form_is_drawn_open_with_the_error_by_its_field(form: str) -> None:
    quote = make_quote()
    case = make_case(quote)
    field = cards.AMOUNT if form == "adjust" else cards.REASON
    card = valid(cards.approval_card(
        case, quote, customer_first_name="Ana", form=form,
        values={field: "12.505" if form == "adjust" else ""},
        errors={field: "USD takes at most 2 decimals. [x](https://evil.example)"}))
    body = card["body"]
    index = next(i for i, b in enumerate(body) if b.get("id") == field)
    error = body[index + 1]
    assert error["type"] == "TextBlock" and error["color"] == "Attention"
    assert "at most 2 decimals" in error["text"] and "](" not in error["text"]
    verbs = [a.get("verb") for a in card["actions"] if a["type"] == "Action.Execute"]
    assert verbs == [form, cards.REFRESH]
    if form == "adjust":
        assert body[index]["value"] == "12.505"


def test_jpy_amounts_have_no_decimals() -> None:
    quote = make_quote()
    case = replace(make_case(quote), currency="JPY", refund_amount=12000)
    card = valid(cards.approval_card(case, replace(quote, currency="JPY"),
                                     customer_first_name="Ana"))
    amount = next(i for i in inputs(card) if i["id"] == cards.AMOUNT)
    assert "no decimals" in amount["placeholder"]
    assert "12,000 JPY" in card["body"][0]["text"]


def test_the_refused_clicker_sees_why_and_no_decision_buttons() -> None:
    quote = make_quote()
    case = make_case(quote)
    card = valid(cards.refused_card(case, quote, customer_first_name="Ana",
                                    user_id=APPROVER, why="over your limit of 500.00 USD",
                                    links=LINKS))
    assert not [a for a in actions(card) if a["type"] == "Action.Execute"]
    assert not inputs(card)
    assert card["refresh"]["userIds"] == [APPROVER]
    assert "over your limit" in " ".join(texts(card))


def test_hostile_text_on_the_approval_card_is_inert() -> None:
    quote = make_quote()
    case = make_case(quote, booking_code="[HBR](https://evil.example)", waiver=EVIL,
                     status_reason=EVIL, requested_by=EVIL, involuntary=True,
                     waiver_source=EVIL, source="evil_**source**")
    card = valid(cards.approval_card(case, quote, customer_first_name=EVIL,
                                     automation=replace(PAUSED, by=EVIL, reason=EVIL)))
    for shown in texts(card):
        assert "](" not in shown and "://evil" not in shown
        assert "ana@example.test" not in shown
        assert "**bold**" not in shown and "`code`" not in shown


# --- after a decision ---------------------------------------------------------------------------

REFUND = {"stripe_refund_id": "re_1", "amount": 0, "status": "succeeded"}


@pytest.mark.parametrize("status", list(Status))
def test_outcome_card_in_every_state_says_each_amount_once(status: Status) -> None:
    quote = make_quote()
    case = make_case(quote, status=status, approved_amount=quote.total_refund - 100,
                     status_reason="goodwill [x](https://evil.example)")
    refunds = [dict(REFUND, amount=case.approved_amount)] if status in (
        Status.REFUNDED, Status.REFUNDED_BY_HAND) else []
    card = valid(cards.outcome_card(case, quote, customer_first_name="Ana", decided_by="Maria",
                                    decided_at="2026-11-20T11:05:00+00:00", refunds=refunds,
                                    decision_reason="goodwill", links=LINKS))
    assert not [a for a in actions(card) if a["type"] == "Action.Execute"]
    assert "refresh" not in card
    seen = " ".join(t for t in texts(card) if t is not card["fallbackText"])
    final = display(case.approved_amount, case.currency)
    if status in (Status.APPROVED, Status.REFUNDED, Status.FAILED, Status.EXECUTING):
        assert seen.count(final) == 1, seen
    if status == Status.DENIED:
        assert "Denied by Maria" in seen
    assert "](https" not in seen


def test_compact_card_one_line_each() -> None:
    quote = make_quote()
    done = make_case(quote, status=Status.REFUNDED)
    skipped = make_case(quote, id=13, status=Status.SKIPPED, status_reason="nothing paid")
    card = valid(cards.compact_card([(done, quote), (skipped, quote)]))
    assert card["body"][0]["text"] == "2 automatic decisions"
    assert "✓ Auto-refunded" in card["body"][1]["text"]
    assert valid(cards.compact_card([(done, quote)]))["body"][0]["text"] == "1 automatic refund"
    valid(cards.compact_card([]))


# --- alerts, issues, digest ---------------------------------------------------------------------

def test_automation_card_resume_has_no_case() -> None:
    paused = valid(cards.automation_card(True, EVIL, "Maria", ["Stripe error rate 40%", EVIL]))
    (resume,) = actions(paused)
    assert resume["verb"] == cards.RESUME and resume["data"] == {}
    for state in (cards.automation_card(False, "fixed", "Maria", []),
                  cards.automation_card(True, "x", "Maria", [], resumed_by="Lee",
                                        resumed_at="2026-11-20T11:05:00+00:00")):
        assert not actions(valid(state))
    assert "**bold**" not in " ".join(texts(paused))


def make_issue(kind: str, state: IssueState, **changes: Any) -> PaymentIssue:
    values: dict[str, Any] = dict(
        id=7, kind=kind, stripe_id="dp_1" if kind == DISPUTE else "pi_1", event_id="evt_1",
        payment_intent="pi_1", charge="ch_1", booking_code="BK-[7](https://evil.example)",
        booking_id="7", case_id=3, amount=123456, currency="JPY", reason="fraudulent",
        due_by="2026-12-01T00:00:00+00:00",
        detail={"evidence": {"cancellation_rebuttal": "Refunded re_1 on time. " * 100,
                             "uncategorized_text": f"Customer wrote from {EMAIL}"},
                "facts": ["Booking BK-7 (linked by refund executions)."], "failures": 3},
        state=state, stripe_status="needs_response", outcome=None, acted_by=None,
        acted_at=None, attempts=0, link_url=None, slack_channel=None, slack_ts=None,
        created_at="2026-11-20T10:00:00+00:00", updated_at="2026-11-20T10:00:00+00:00")
    values.update(changes)
    return PaymentIssue(**values)


@pytest.mark.parametrize("kind", [DISPUTE, PAYMENT_FAILED])
@pytest.mark.parametrize("state", list(IssueState))
def test_issue_cards_in_every_state(kind: str, state: IssueState) -> None:
    acted = {} if state == IssueState.OPEN else {
        "acted_by": "Maria", "acted_at": "2026-11-20T11:05:00+00:00", "outcome": "done"}
    card = valid(cards.issue_card(make_issue(kind, state, link_url="https://buy.stripe.com/t",
                                             **acted), LINKS))
    seen = " ".join(texts(card))
    assert "123,456 JPY" in seen and EMAIL not in seen and "](https" not in seen
    urls = [a["url"] for a in actions(card)]
    assert urls[0] == ("https://dashboard.stripe.com/test/disputes/dp_1" if kind == DISPUTE
                       else "https://dashboard.stripe.com/test/payments/pi_1")
    if state != IssueState.OPEN:
        assert "Maria" in seen


def _png(width: int, height: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure = pyplot.figure(figsize=(width / 100, height / 100), dpi=100)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return buffer.getvalue()


def digest_inputs() -> tuple[ReconRun, DayStats, list[Anomaly]]:
    run = ReconRun(
        day=date(2026, 11, 20), tz="Europe/Lisbon", window_start=datetime(2026, 11, 20),
        window_end=datetime(2026, 11, 21), ran_at="2026-11-21T07:00:00+00:00",
        stripe_count=4, counts={"matched": 3, "amount_mismatch": 1},
        totals={"USD": {"stripe_refunded": 152500}},
        discrepancies=[Discrepancy("amount_mismatch", "k", EVIL, booking_code="HBR-1",
                                   amount=1000, currency="USD")])
    stats = DayStats(day=run.day, refunds={"USD": (3, 152500)},
                     decisions={"auto_approve": 2, "approve": 1}, median_minutes_to_refund=75,
                     waiting=[(9, "HBR-9", "2026-11-19T06:00:00+00:00")])
    return run, stats, [Anomaly("refund_rate", "k", True, EVIL)]


def test_digest_card_with_its_chart_as_a_data_uri() -> None:
    run, stats, anomalies = digest_inputs()
    png = _png(600, 240)
    failed = EventRow(1, "stripe", "evt_1", "charge.refunded", "2026-11-20T10:00:00+00:00",
                      None, 5, EVIL, None, None, None, None, None)
    card = valid(cards.digest_card(run, stats, anomalies, PAUSED,
                                   [make_issue(DISPUTE, IssueState.OPEN)], [failed],
                                   chart_png=png))
    images = [b for b in card["body"] if b["type"] == "Image"]
    assert len(images) == 1 and images[0]["url"].startswith("data:image/png;base64,")
    seen = " ".join(texts(card))
    assert "1,525.00 USD" in seen and "Automation paused" in seen and "case #9" in seen
    assert "**bold**" not in seen and "](https" not in seen


def test_a_chart_teams_would_not_show_is_left_out() -> None:
    run, stats, anomalies = digest_inputs()
    big = valid(cards.digest_card(run, stats, anomalies, RUNNING, chart_png=_png(1100, 200)))
    assert not [b for b in big["body"] if b["type"] == "Image"]
    assert "too large" in " ".join(texts(big))
    none = valid(cards.digest_card(run, stats, anomalies, RUNNING))
    assert not [b for b in none["body"] if b["type"] == "Image"]
    assert cards.chart_image(b"not a png") is None
    url = cards.chart_image(url="https://bot.example/chart.png")
    assert url is not None and url["url"] == "https://bot.example/chart.png"


def test_answer_card_escapes_unless_trusted() -> None:
    card = valid(cards.answer_card("Status", [EVIL, "ok"], note="from **Teams**"))
    assert "**bold**" not in " ".join(texts(card))
    trusted = valid(cards.answer_card("Help", ["**quote** HBR-1001"], trusted=True))
    assert trusted["body"][1]["text"] == "**quote** HBR-1001"


def test_the_schema_refuses_what_teams_refuses() -> None:
    """The validator is strict: an unknown property or a wrong verb type fails."""
    quote = make_quote()
    card = cards.approval_card(make_case(quote), quote, customer_first_name="Ana")
    card["body"][0]["markdown"] = False
    assert list(VALIDATOR.iter_errors(card))
    card = cards.approval_card(make_case(quote), quote, customer_first_name="Ana")
    card["actions"][0]["verb"] = 3
    assert list(VALIDATOR.iter_errors(card))
    assert Automation(paused=False) == RUNNING
