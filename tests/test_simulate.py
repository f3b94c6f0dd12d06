"""The policy simulator (`services.finance.simulate`): past cases re-quoted under a proposed
policy file, the totals checked against re-quoting each case one by one, tier changes found,
currencies kept apart, bad files refused with their line and field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.deps import Deps
from services.finance.simulate import (
    AUTO,
    PERSON,
    SimulationError,
    decide,
    read_policies,
    simulate,
)
from services.quoting.booking_read import parse_snapshot
from services.quoting.engine import build_quote
from services.quoting.policy import PolicyError, load_policies
from services.refunds import cases
from services.refunds.opening import open_case
from services.store.db import Store
from tests.quote_fixtures import booking, item, paid

REPO = Path(__file__).resolve().parent.parent
LIVE = REPO / "examples" / "policies.yml"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def proposed_text(**changes: Any) -> str:
    """The example policy file with standard-48h's tiers (or anything else) changed."""
    data = yaml.safe_load(LIVE.read_text(encoding="utf-8"))
    standard = data["policies"][0]
    standard["tiers"] = changes.pop("tiers", standard["tiers"])
    data.update(changes)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Deps]:
    store = await Store(tmp_path / "refunds.db").open()
    try:
        yield Deps(store=store, book=load_policies(LIVE))
    finally:
        await store.close()


# (sku, total, tax, hours of notice, currency): kayak tours at every tier, a charter, a fee
# line, a booking in euros (the policy file's currency is USD), and one big enough to wait
MIX = [("kayak-tour", "105.00", "5.00", 72, "USD"), ("kayak-tour", "105.00", "5.00", 30, "USD"),
       ("kayak-tour", "105.00", "5.00", 12, "USD"), ("bike-tour", "60.00", "0", 36, "USD"),
       ("private-charter", "900.00", "0", 100, "USD"), ("sunset-cruise", "80.00", "0", 30, "USD"),
       ("kayak-tour", "95.00", "0", 30, "EUR"), ("kayak-tour", "95.00", "0", 72, "EUR"),
       ("kayak-tour", "420.00", "20.00", 60, "USD")]


async def seed(svc: Deps, mix: list[tuple[str, str, str, int, str]] = MIX,
               at: datetime = START) -> list[int]:
    opened = []
    for n, (sku, total, tax, hours, currency) in enumerate(mix):
        cancelled = at + timedelta(hours=n)
        raw = booking([item(sku, total, tax, start=cancelled + timedelta(hours=hours))],
                      currency=currency, booking_id=str(500 + n), code=f"SIM-{n:03d}",
                      transactions=[paid(f"pi_sim_{n}", total)])
        result = await open_case(svc, raw, cancelled_at=cancelled, source="cli")
        opened.append(result.case.id)
    return opened


async def one_by_one(svc: Deps, proposed: Any, ids: list[int]) -> dict[str, dict[str, int]]:
    """What the simulation must add up to: each case's stored quote and a re-quote of its
    snapshot at its cancellation, made here case by case."""
    totals: dict[str, dict[str, int]] = {}
    for case_id in ids:
        case = await cases.get(svc.store, case_id)
        stored = await cases.current_quote(svc.store, case)
        snapshot = parse_snapshot(stored.snapshot, default_currency=case.currency)
        after = build_quote(snapshot, proposed, datetime.fromisoformat(case.cancelled_at),
                            waiver=case.waiver, risk_flags=stored.quote.risk_flags)
        t = totals.setdefault(case.currency, {"before": 0, "after": 0, "fees_after": 0,
                                              "retained_after": 0, "changed": 0, "auto": 0,
                                              "person": 0, "cases": 0})
        t["cases"] += 1
        t["before"] += stored.quote.total_refund
        t["after"] += after.total_refund
        t["fees_after"] += after.fee
        t["retained_after"] += after.retained
        t["changed"] += after.total_refund != stored.quote.total_refund
        outcome = decide(Deps(store=svc.store, book=proposed), after)
        t["auto"] += outcome == AUTO
        t["person"] += outcome == PERSON
    return totals


async def test_totals_match_requoting_each_case_one_by_one(svc: Deps) -> None:
    ids = await seed(svc)
    proposed = read_policies(proposed_text(tiers=[
        {"min_notice_hours": 72, "refund_percent": 100},
        {"min_notice_hours": 24, "refund_percent": 75},
        {"min_notice_hours": 0, "refund_percent": 10}]), "new.yml")

    result = await simulate(svc, proposed, page=4)   # several pages

    expected = await one_by_one(svc, proposed, ids)
    assert set(result.totals) == {"USD", "EUR"} == set(expected)
    for currency, want in expected.items():
        got = result.totals[currency]
        assert (got.cases, got.refund_before, got.refund_after, got.fees_after,
                got.retained_after, got.changed, got.auto_after, got.person_after) == (
            want["cases"], want["before"], want["after"], want["fees_after"],
            want["retained_after"], want["changed"], want["auto"], want["person"])
    assert result.cases == len(ids) and result.unreadable == 0


async def test_the_live_file_changes_nothing(svc: Deps) -> None:
    await seed(svc)
    result = await simulate(svc, read_policies(LIVE.read_text(encoding="utf-8"), "same.yml"))
    for tally in result.totals.values():
        assert tally.changed == 0 and tally.refund_after == tally.refund_before
        assert (tally.auto_after, tally.person_after) == (tally.auto_before, tally.person_before)
    assert result.rows == []


async def test_a_changed_tier_is_found_per_product_with_the_biggest_changes(svc: Deps) -> None:
    await seed(svc)
    # 24-48h now refunds 75% instead of 50%: the two kayak tours and the bike tour cancelled
    # with 30-36 hours of notice change; the 72h one, the 12h one and the rest do not
    proposed = read_policies(proposed_text(tiers=[
        {"min_notice_hours": 48, "refund_percent": 100},
        {"min_notice_hours": 24, "refund_percent": 75},
        {"min_notice_hours": 0, "refund_percent": 0}]), "new.yml")

    result = await simulate(svc, proposed)

    kayak = result.products[("USD", "kayak-tour")]
    assert kayak.cases == 4 and kayak.changed == 1
    (change,) = kayak.biggest_changes()
    # 100.00 + 5.00 tax at 50% -> 52.50 - 10.00 fee = 42.50; at 75% 78.75 - 10.00 = 68.75
    assert (change.booking_code, change.before, change.after) == ("SIM-001", 4250, 6875)
    bike = result.products[("USD", "bike-tour")]
    assert (bike.changed, bike.refund_before, bike.refund_after) == (1, 2000, 3500)
    euro = result.products[("EUR", "kayak-tour")]
    assert euro.changed == 1 and euro.refund_after - euro.refund_before == 2375
    assert result.products[("USD", "private-charter")].changed == 0
    assert result.products[("USD", "sunset-cruise")].changed == 0   # the default policy
    standard = result.policies[("USD", "standard-48h")]
    assert standard.changed == 2 and standard.cases == 5
    assert len(result.rows) == 3
    lines = result.csv().splitlines()
    assert lines[0].startswith("case,booking,cancelled_at,currency,product")
    assert any("SIM-001" in line and "42.50" in line and "68.75" in line for line in lines)


async def test_currencies_are_kept_apart(svc: Deps) -> None:
    await seed(svc)
    result = await simulate(svc, read_policies(proposed_text(), "new.yml"))
    usd, eur = result.totals["USD"], result.totals["EUR"]
    assert eur.cases == 2 and usd.cases == 7
    # 95.00 at 50% - 10.00 = 37.50 and 95.00 in full - 10.00 = 85.00, in euro cents only
    assert eur.refund_before == 3750 + 8500
    assert ("USD", "kayak-tour") in result.products and ("EUR", "kayak-tour") in result.products
    # a booking in another currency than the file's always waits for a person
    assert eur.person_before == eur.person_after == 2 and eur.auto_after == 0
    report = result.to_dict()
    assert report["totals"]["EUR"]["refund_before"] == "122.50"


async def test_lower_limits_move_cases_to_a_person(svc: Deps) -> None:
    await seed(svc)
    result = await simulate(svc, read_policies(proposed_text(auto_approve_max="50.00"),
                                               "new.yml"))
    usd = result.totals["USD"]
    assert usd.changed == 0 and usd.refund_after == usd.refund_before
    assert usd.auto_after < usd.auto_before and usd.person_after > usd.person_before
    assert any(row[-3] == AUTO and row[-2] == PERSON for row in result.rows)


async def test_a_policy_put_in_shadow_mode_sends_its_automatic_cases_to_a_person(
        svc: Deps) -> None:
    await seed(svc)
    data = yaml.safe_load(proposed_text())
    data["policies"][0]["mode"] = "shadow"          # standard-48h: kayak and bike tours
    result = await simulate(svc, read_policies(yaml.safe_dump(data, sort_keys=False), "new.yml"))
    kayak = result.products[("USD", "kayak-tour")]
    assert kayak.auto_before > 0 and kayak.auto_after == 0
    assert kayak.person_after == kayak.person_before + kayak.auto_before
    assert kayak.refund_after == kayak.refund_before      # a mode changes who decides, not money
    cruise = result.products[("USD", "sunset-cruise")]    # the default policy keeps its mode
    assert cruise.auto_after == cruise.auto_before


async def test_a_stored_product_override_holds_before_and_after(svc: Deps) -> None:
    await seed(svc)
    async with svc.store.transaction() as tx:
        await tx.execute("INSERT INTO product_modes (product, mode, changed_by, why, changed_at) "
                         "VALUES (?, ?, ?, ?, ?)",
                         ("kayak-tour", "shadow", "U1", "test", START.isoformat()))
    result = await simulate(svc, read_policies(proposed_text(), "new.yml"))
    kayak = result.products[("USD", "kayak-tour")]
    assert kayak.auto_before == 0 and kayak.auto_after == 0


async def test_a_file_without_a_default_cannot_quote_some_cases(svc: Deps) -> None:
    await seed(svc)
    data = yaml.safe_load(proposed_text())
    data["policies"] = [p for p in data["policies"] if not p.get("default")]
    result = await simulate(svc, read_policies(yaml.safe_dump(data), "new.yml"))
    cruise = result.products[("USD", "sunset-cruise")]
    assert cruise.unquotable == 1 and cruise.person_after == 1 and cruise.refund_after == 0
    assert any("no policy applies" in reason for reason in result.unquotable)


async def test_the_range_takes_the_cases_cancelled_in_it(svc: Deps) -> None:
    await seed(svc)
    proposed = read_policies(proposed_text(), "new.yml")
    # START + 0h .. START + 2h: the first three cases (one cancelled exactly at the start)
    result = await simulate(svc, proposed, start=START, end=START + timedelta(hours=2, seconds=1))
    assert result.cases == 3
    with pytest.raises(SimulationError):
        await simulate(svc, proposed, start=START, end=START)


@pytest.mark.parametrize(("text", "expected"), [
    ("currency: USD\npolicies: [\n", "not valid YAML at line 3"),
    (proposed_text(auto_approve_max=20.5), "auto_approve_max: write amounts as quoted strings"),
    (proposed_text(tiers=[{"min_notice_hours": 48, "refund_percent": 100}]),
     "policy standard-48h: tiers: must include one with min_notice_hours: 0 (line 15)"),
    (proposed_text(escalate_over="abc"), "escalate_over"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_bad_policy_files_are_refused_with_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as refused:
        read_policies(text, "new.yml")
    assert expected in str(refused.value) and str(refused.value).startswith("new.yml")


def test_a_field_error_names_its_line() -> None:
    text = proposed_text(auto_approve_max="600.00")   # above escalate_over
    with pytest.raises(PolicyError) as refused:
        read_policies(text, "new.yml")
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if ln.startswith("auto_approve"))
    assert f"(line {line})" in str(refused.value)


async def test_an_unreadable_stored_case_is_counted_not_fatal(svc: Deps) -> None:
    ids = await seed(svc, MIX[:2])
    async with svc.store.transaction() as tx:
        await tx.execute("UPDATE quotes SET snapshot = ? WHERE case_id = ?",
                         (json.dumps({"booking": "gone"}), ids[0]))
    result = await simulate(svc, read_policies(proposed_text(), "new.yml"))
    assert result.unreadable == 1 and result.cases == 1


# --- python -m bot simulate ------------------------------------------------------------------

async def test_the_cli_prints_the_figures_and_refuses_a_bad_file(world: Any,
                                                                 tmp_path: Path) -> None:
    from bot.cli.world import Item
    from tests.test_cli_ops import run

    for code, hours in (("CLIS-1", 72), ("CLIS-2", 30)):
        world.paid_booking(code, [Item("kayak-tour", "105.00", "5.00", hours_ahead=hours)])
        await world.cancel(code)
    await world.settle()
    new = tmp_path / "new.yml"
    new.write_text(proposed_text(tiers=[
        {"min_notice_hours": 48, "refund_percent": 100},
        {"min_notice_hours": 24, "refund_percent": 75},
        {"min_notice_hours": 0, "refund_percent": 0}]), encoding="utf-8")
    today = datetime.now(UTC).date().isoformat()

    code, out, err = await run(world, "simulate", "--policies", str(new), "--from", today,
                               "--to", today)
    assert code == 0, err
    kayak = next(line for line in out.splitlines() if line.startswith("kayak-tour"))
    # 95.00 + 42.50 before; 95.00 + 68.75 after; both refunded by the bot
    assert kayak.split()[1:7] == ["2", "1", "137.50", "163.75", "26.25", "137.50"]
    assert "CLIS-2" in out and "42.50 -> 68.75 USD (+26.25)" in out

    code, out, err = await run(world, "simulate", "--policies", str(new), "--format", "csv")
    assert code == 0, err
    rows = out.splitlines()
    assert rows[0].startswith("case,booking") and len(rows) == 2 and "CLIS-2" in rows[1]

    bad = tmp_path / "bad.yml"
    bad.write_text(proposed_text(tiers=[{"min_notice_hours": 48, "refund_percent": 100}]),
                   encoding="utf-8")
    code, out, err = await run(world, "simulate", "--policies", str(bad))
    assert code == 2 and out == ""
    assert "policy standard-48h: tiers: must include one with min_notice_hours: 0 (line 15)" \
        in err and "Traceback" not in err


# --- /refund simulate in Slack ---------------------------------------------------------------

def submission(view_id: str, user: str, channel: str, pasted: str | None = None,
               first: str | None = None, files: list[dict[str, Any]] | None = None) -> str:
    from urllib.parse import urlencode

    from bot.slack.ui import simulate as ui
    values: dict[str, Any] = {
        ui.POLICY_BLOCK: {ui.POLICY_INPUT: {"type": "plain_text_input", "value": pasted}},
        ui.FILE_BLOCK: {ui.FILE_INPUT: {"type": "file_input", "files": files or []}},
        ui.FROM_BLOCK: {ui.FROM_INPUT: {"type": "datepicker", "selected_date": first}},
        ui.TO_BLOCK: {ui.TO_INPUT: {"type": "datepicker", "selected_date": None}}}
    payload = {"type": "view_submission", "team": {"id": "T0SANDBOX", "domain": "sandbox"},
               "user": {"id": user, "username": user.lower(), "team_id": "T0SANDBOX"},
               "api_app_id": "A0SANDBOX", "trigger_id": "trigger.1",
               "view": {"id": view_id, "type": "modal", "callback_id": ui.SIMULATE_VIEW,
                        "private_metadata": channel, "state": {"values": values},
                        "hash": "1", "team_id": "T0SANDBOX"}}
    return urlencode({"payload": json.dumps(payload)})


async def test_slack_simulate_is_for_finance_leads_and_answers_in_the_modal(sworld: Any) -> None:
    from bot.cli.world import APPROVALS, FIONA, SAM, Item
    from tests.flow_helpers import unsafe_calls
    from tests.slack_helpers import responses

    assert sworld.sender is not None and sworld.slack is not None
    for code, hours in (("SLS-1", 72), ("SLS-2", 30)):
        sworld.paid_booking(code, [Item("kayak-tour", "105.00", "5.00", hours_ahead=hours)])
        await sworld.cancel(code)
    await sworld.settle()

    await sworld.sender.command("simulate", SAM)
    await sworld.settle()
    assert any("Only finance leads" in t for t in responses(sworld))
    assert sworld.slack.calls_to("views.open") == []
    refused = await sworld.bot.svc.store.fetch_all(
        "SELECT actor FROM audit_log WHERE action = 'slack.refused'")
    assert [r["actor"] for r in refused] == [SAM]

    await sworld.sender.command("simulate", FIONA)
    await sworld.settle()
    (opened,) = sworld.slack.calls_to("views.open")
    view_id = next(iter(sworld.slack.views))
    assert "file_input" in json.dumps(opened.params["view"])

    bad = proposed_text(tiers=[{"min_notice_hours": 48, "refund_percent": 100}])
    answer = await sworld.sender.post(submission(view_id, FIONA, APPROVALS, bad))
    errors = answer.json()
    assert errors["response_action"] == "errors"
    assert "tiers: must include one with min_notice_hours: 0 (line 15)" in json.dumps(errors)

    answer = await sworld.sender.post(submission(view_id, SAM, APPROVALS, bad))
    assert "Only finance leads" in json.dumps(answer.json())

    good = proposed_text(tiers=[{"min_notice_hours": 48, "refund_percent": 100},
                                {"min_notice_hours": 24, "refund_percent": 75},
                                {"min_notice_hours": 0, "refund_percent": 0}])
    today = datetime.now(UTC).date().isoformat()
    answer = await sworld.sender.post(submission(view_id, FIONA, APPROVALS, good, today))
    assert answer.json()["response_action"] == "update"
    await sworld.settle()
    shown = json.dumps(sworld.slack.views[view_id])
    assert "kayak-tour" in shown and "137.50" in shown and "163.75" in shown
    assert "SLS-2" in shown
    assert unsafe_calls(sworld) == []


async def test_slack_simulate_reads_an_uploaded_file(sworld: Any) -> None:
    from bot.cli.world import APPROVALS, FIONA, Item

    assert sworld.sender is not None and sworld.slack is not None
    sworld.paid_booking("SLU-1", [Item("kayak-tour", "105.00", "5.00", hours_ahead=30)])
    await sworld.cancel("SLU-1")
    await sworld.settle()
    await sworld.sender.command("simulate", FIONA)
    await sworld.settle()
    view_id = next(iter(sworld.slack.views))
    good = proposed_text(tiers=[{"min_notice_hours": 48, "refund_percent": 100},
                                {"min_notice_hours": 24, "refund_percent": 75},
                                {"min_notice_hours": 0, "refund_percent": 0}])
    uploaded = sworld.slack.add_user_file("new.yml", good.encode())
    answer = await sworld.sender.post(submission(view_id, FIONA, APPROVALS,
                                                 files=[{"id": uploaded.id}]))
    assert answer.json()["response_action"] == "update"
    await sworld.settle()
    shown = json.dumps(sworld.slack.views[view_id])
    assert "new.yml" in shown and "42.50" in shown and "68.75" in shown

    broken = sworld.slack.add_user_file("bad.yml", b"currency: USD\npolicies: [\n")
    await sworld.sender.post(submission(view_id, FIONA, APPROVALS, files=[{"id": broken.id}]))
    await sworld.settle()
    assert "not valid YAML at line 3" in json.dumps(sworld.slack.views[view_id])
