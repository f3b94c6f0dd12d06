"""Involuntary cancellations get their waiver from the policy file's waiver rules.

End to end against the stand-ins: a Checkfront webhook for a booking cancelled with a custom
status, with a booking form field's value, or with a cancellation reason opens its case with the
waiver, is refunded at the waiver's percentage, is marked involuntary with where the waiver came
from (case, audit, card badge, report column), and no form field text is stored. A rule naming a
waiver no policy offers is refused at load.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.cli.world import APPROVALS, EXAMPLE_POLICIES, Item, World
from bot.slack.ui import cards
from services.deps import Deps
from services.finance.report import range_report
from services.intake import events, routing
from services.quoting import waiver_rules
from services.quoting.policy import PolicyError, load_policies, parse_policies
from services.refunds import cases
from services.refunds.automation import Automation
from services.refunds.models import Case, Status
from services.store import audit
from tests.outage import quick_checkfront_retries
from tests.slack_text_checks import EVIL, unsafe
from tests.test_blocks import make_case, make_quote

# the example policies, their waivers at percentages no notice tier gives (80% and 60%), so
# an amount shows which waiver was applied; inside 24 hours the tiers refund nothing
RULES = [
    {"status": "WTHR", "waiver": "WEATHER"},
    {"field": "cancelled_by", "value": ["operator", "staff"], "waiver": "OPERATOR"},
    {"field": "cancel_reason", "reason": r"storm|high winds?", "waiver": "WEATHER"},
]
CONTACT = "Storm warning, call Ana on +1 555 0100 or ana.silva@example.com"


def policy_file(folder: Path, rules: list[dict[str, Any]] = RULES) -> Path:
    data = yaml.safe_load(EXAMPLE_POLICIES.read_text())
    for policy in data["policies"]:
        policy["waivers"] = {"WEATHER": 80, "OPERATOR": 60}
    data["waiver_rules"] = rules
    path = folder / "policies.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
async def wworld(tmp_path: Path) -> Any:
    w = quick_checkfront_retries(
        await World.start(tmp_path, policy_file=policy_file(tmp_path)))
    try:
        yield w
    finally:
        await w.stop()


async def deliver(world: World, code: str, status: str = "STOP",
                  fields: dict[str, Any] | None = None, **extra: Any) -> httpx.Response:
    """Cancel in Checkfront and send its booking webhook, with form fields as Checkfront's
    booking form holds them (the customer's name and email among them)."""
    booking = world.checkfront.booking(code)
    booking.status = status
    for item in booking.items:
        item.status = status
    body = world.checkfront.webhook_body(code)
    body["booking"]["fields"].update(fields or {})
    body.update(extra)
    async with httpx.AsyncClient() as client:
        response = await client.post(world.webhook_url(), json=body)
    await world.settle()
    return response


def soon(world: World, code: str, total: str = "105.00", tax: str = "5.00") -> None:
    """A paid kayak tour starting in 10 hours: inside 24 hours, no notice tier refunds."""
    world.paid_booking(code, [Item("kayak-tour", total, tax, hours_ahead=10)])


async def the_case(world: World) -> Case:
    found = await cases.list_cases(world.bot.svc.store)
    assert len(found) == 1, found
    return found[0]


async def opened_detail(world: World, case: Case) -> dict[str, Any]:
    history = await audit.history(world.bot.svc.store, case.id)
    return next(e.detail for e in history if e.action == "case.opened")


async def stored_text(world: World) -> str:
    rows = await world.bot.svc.store.fetch_all(
        "SELECT payload FROM webhook_events UNION ALL SELECT detail FROM audit_log "
        "UNION ALL SELECT snapshot FROM quotes")
    return "\n".join(str(r[0]) for r in rows)


# --- each rule kind end to end ---------------------------------------------------------------

async def test_custom_status_opens_an_involuntary_case_refunded_at_the_waiver(
        wworld: World) -> None:
    soon(wworld, "WTHR-1")
    assert (await deliver(wworld, "WTHR-1", status="WTHR")).status_code == 200

    case = await the_case(wworld)
    assert case.waiver == "WEATHER" and case.involuntary
    assert case.waiver_source == "Checkfront status WTHR"
    assert case.status == Status.REFUNDED
    # 80% of 105.00 (tax included, refund_tax), the 10.00 fee waived; the tiers would give 0
    assert [r.amount for r in wworld.stripe.refunds] == [8400]
    detail = await opened_detail(wworld, case)
    assert detail["waiver_from"] == "waiver WEATHER from Checkfront status WTHR"
    assert detail["involuntary"] is True and detail["waiver_rule"] == 1
    # WTHR is a cancellation: the write-back leaves the operator's status as it is
    assert wworld.checkfront.status_of("WTHR-1") == "WTHR"
    assert (await audit.verify(wworld.bot.svc.store)).ok


async def test_form_field_value_gives_its_waiver(wworld: World) -> None:
    soon(wworld, "OPER-1")
    await deliver(wworld, "OPER-1", fields={"cancelled_by": " Operator "})

    case = await the_case(wworld)
    assert (case.waiver, case.involuntary) == ("OPERATOR", True)
    assert case.waiver_source == "Checkfront field cancelled_by = operator"
    assert [r.amount for r in wworld.stripe.refunds] == [6300]   # 60% of 105.00
    assert (await opened_detail(wworld, case))["waiver_rule"] == 2


async def test_cancellation_reason_pattern_gives_its_waiver_and_its_text_is_not_kept(
        wworld: World) -> None:
    soon(wworld, "RSN-1")
    await deliver(wworld, "RSN-1", fields={"cancel_reason": CONTACT})

    case = await the_case(wworld)
    assert (case.waiver, case.involuntary) == ("WEATHER", True)
    assert case.waiver_source == ("Checkfront cancellation reason in field cancel_reason "
                                  "matching /storm|high winds?/")
    assert [r.amount for r in wworld.stripe.refunds] == [8400]
    kept = await stored_text(wworld)
    for secret in ("555 0100", "ana.silva", "Storm warning", "cancel_reason\":"):
        assert secret not in kept
    assert "waiver_match" in kept   # what matched is kept, in the rule's words


async def test_no_rule_matches_no_waiver_and_a_mark_in_the_body_is_not_trusted(
        wworld: World) -> None:
    soon(wworld, "PLAIN-1")
    forged = {"waiver_match": {"waiver": "WEATHER", "rule": 1, "source": "Checkfront status X"}}
    await deliver(wworld, "PLAIN-1", fields={"cancel_reason": "changed my plans"}, **forged)

    case = await the_case(wworld)
    assert case.waiver is None and not case.involuntary and case.waiver_source is None
    assert case.status == Status.DENIED and wworld.stripe.refunds == []   # inside 24 hours
    assert "involuntary" not in await opened_detail(wworld, case)


async def test_a_stored_event_retried_after_an_outage_keeps_its_waiver(wworld: World) -> None:
    soon(wworld, "RTRY-1")
    wworld.checkfront.down()
    await deliver(wworld, "RTRY-1", fields={"cancelled_by": "staff"})
    assert await cases.list_cases(wworld.bot.svc.store) == []
    wworld.checkfront.up()

    # the retry reads the event back from the store: form fields gone, the match kept
    due = await events.claim_due(wworld.bot.svc.store, datetime.now(UTC) + timedelta(hours=1))
    assert len(due) == 1 and "fields" not in due[0].payload["booking"]
    await routing.process(wworld.bot.svc, due[0])
    await wworld.settle()

    case = await the_case(wworld)
    assert (case.waiver, case.involuntary) == ("OPERATOR", True)
    assert case.waiver_source == "Checkfront field cancelled_by = staff"
    assert [r.amount for r in wworld.stripe.refunds] == [6300]


async def test_report_has_the_waiver_and_involuntary_columns(wworld: World) -> None:
    soon(wworld, "REP-1")
    wworld.paid_booking("REP-2", [Item("kayak-tour", "105.00", "5.00", hours_ahead=72)])
    await deliver(wworld, "REP-1", status="WTHR")
    await deliver(wworld, "REP-2")

    today = datetime.now(UTC).date()
    report = await range_report(wworld.bot.svc.store, today - timedelta(days=1),
                                today + timedelta(days=1), UTC)
    rows = {r["booking"]: r for r in report.rows}
    assert (rows["REP-1"]["waiver"], rows["REP-1"]["involuntary"]) == ("WEATHER", "yes")
    assert (rows["REP-2"]["waiver"], rows["REP-2"]["involuntary"]) == ("", "no")
    assert rows["REP-1"]["refunded"] == "84.00" and rows["REP-2"]["refunded"] == "95.00"
    header = report.csv().splitlines()[0]
    assert header.endswith(",status,waiver,involuntary")


# --- the badge --------------------------------------------------------------------------------

async def test_badge_on_the_posted_approval_card_is_safe_text(tmp_path: Path) -> None:
    world = await World.start(tmp_path, policy_file=policy_file(tmp_path), slack=True)
    try:
        assert world.slack is not None
        # 80% of 300.00 is 240.00: above auto_approve_max, so a person approves it
        soon(world, "BIG-W", total="300.00", tax="0.00")
        await deliver(world, "BIG-W", status="WTHR")
        case = await the_case(world)
        assert case.status == Status.PENDING_APPROVAL and case.involuntary
        posts = [c for c in world.slack.calls_to("chat.postMessage")
                 if c.params.get("channel") == APPROVALS]
        assert posts
        blocks = json.dumps(posts[-1].params.get("blocks"))
        assert "*Involuntary cancellation*" in blocks
        assert "waiver WEATHER from Checkfront status WTHR" in blocks
        assert all(unsafe(c.params) == [] for c in world.slack.calls)
    finally:
        await world.stop()


def test_badge_escapes_what_it_shows_and_is_absent_for_a_voluntary_case() -> None:
    quote = make_quote(waiver="WEATHER")
    hostile = make_case(quote, involuntary=True, waiver_source=f"Checkfront field x = {EVIL}")
    for message in (
        cards.approval_card(hostile, quote, customer_first_name=EVIL,
                            automation=Automation(False)),
        cards.outcome_card(make_case(quote, involuntary=True, status=Status.REFUNDED,
                                     waiver_source=f"Checkfront status {EVIL}"), quote,
                           customer_first_name="Ana", decided_by=None, decided_at=None,
                           refunds=[], automation=Automation(False)),
    ):
        params = {"text": message.text, "blocks": message.blocks}
        assert unsafe(params) == []
        assert "Involuntary cancellation" in json.dumps(message.blocks)
    plain = cards.approval_card(make_case(quote), quote, customer_first_name="Ana",
                                automation=Automation(False))
    assert "Involuntary" not in json.dumps(plain.blocks)


# --- the policy file --------------------------------------------------------------------------

def _book(rules: list[dict[str, Any]]) -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE_POLICIES.read_text())
    data["waiver_rules"] = rules
    return data


def test_a_rule_naming_a_waiver_no_policy_offers_is_refused_at_load(tmp_path: Path) -> None:
    path = policy_file(tmp_path, [*RULES, {"status": "FLOOD", "waiver": "FLOOD"}])
    with pytest.raises(PolicyError) as refused:
        load_policies(path)
    assert str(refused.value) == (
        f"{path}: waiver_rules: rule 4 (status FLOOD): waiver FLOOD is not offered by any "
        "policy (offered: OPERATOR, WEATHER)")


@pytest.mark.parametrize(("rule", "says"), [
    ({"field": "why", "reason": "(storm", "waiver": "WEATHER"},
     "waiver_rules: rule 1: reason: not a valid regular expression"),
    ({"reason": "storm", "waiver": "WEATHER"},
     "waiver_rules: rule 1: a reason rule needs the booking form field it reads"),
    ({"status": "WTHR", "field": "x", "waiver": "WEATHER"},
     "waiver_rules: rule 1: a status rule takes no field"),
    ({"status": "WTHR", "reason": "x", "field": "y", "waiver": "WEATHER"},
     "waiver_rules: rule 1: give exactly one of status"),
    ({"field": "x", "value": True, "waiver": "OPERATOR"},
     "waiver_rules: rule 1: value: write each value as a quoted string"),
    ({"status": "WTHR", "waiver": "WEATHER", "note": "x"},
     "waiver_rules: rule 1: note: unknown key"),
])
def test_a_bad_rule_is_refused_naming_it(rule: dict[str, Any], says: str) -> None:
    with pytest.raises(PolicyError, match="^p.yml: " + says.replace("(", r"\(")):
        parse_policies(_book([rule]), "p.yml")


def test_rules_read_in_order_and_mapped_statuses_are_cancellations(tmp_path: Path) -> None:
    book = parse_policies(_book([{"status": "wthr", "waiver": "weather"}, *RULES[1:]]), "p.yml")
    assert waiver_rules.statuses(book.waiver_rules) == {"WTHR"}
    both = {"status": "WTHR", "fields": {"cancelled_by": "operator"}}
    found = waiver_rules.match(book.waiver_rules, both)
    assert found is not None and (found.waiver, found.rule) == ("WEATHER", 1)   # first wins
    ticked = {"status": "STOP", "fields": {"cancelled_by": ["guest", "STAFF"]}}
    found = waiver_rules.match(book.waiver_rules, ticked)
    assert found is not None and found.source == "Checkfront field cancelled_by = staff"
    assert waiver_rules.match(book.waiver_rules, {"status": "STOP", "fields": "x"}) is None
    assert waiver_rules.match(book.waiver_rules, {"status": "STOP"}) is None
    # Deps counts a mapped status as cancelled, whatever CANCELLED_STATUSES says
    svc = Deps(store=None, book=book)  # type: ignore[arg-type]
    assert svc.config.cancelled_statuses == {"STOP", "VOID", "WTHR"}
    assert load_policies(EXAMPLE_POLICIES).waiver_rules   # the example file shows all kinds


def test_rules_leave_the_policy_digest_and_so_quote_versions_alone() -> None:
    without = _book([])
    without.pop("waiver_rules")
    assert parse_policies(_book(RULES), "p.yml").digest == parse_policies(without, "p.yml").digest
    changed = _book(RULES)
    changed["policies"][0]["waivers"]["WEATHER"] = 90
    assert parse_policies(changed, "p.yml").digest != parse_policies(without, "p.yml").digest
