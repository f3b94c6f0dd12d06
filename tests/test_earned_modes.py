"""Earned automation (issue 16): the mode per product and policy, the agreement figures, the
promotion offered by the weekly review and pressed by a finance lead, the review itself."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from bot.cli.world import EXAMPLE_POLICIES, Item, World
from bot.scheduler import ScheduledJobs
from bot.slack import card_state
from bot.slack.ui import ids
from bot.slack.ui.payloads import ModeOffer
from bot.slack.ui.review import review_message, review_text
from handlers.slack import review as review_handler
from handlers.slack.deps import GroupMembers, SlackDeps
from services.config import Mode, RefundConfig
from services.deps import Deps
from services.finance import agreement
from services.finance.agreement import PROMOTE, STEP_BACK, Rules
from services.quoting.policy import PolicyError, load_policies, parse_policies
from services.refunds import cases, modes
from services.refunds.models import Status
from services.refunds.permissions import ApproverRules
from services.store.db import Store, iso_utc
from tests.slack_text_checks import EVIL, unsafe

UTC_ZONE = ZoneInfo("UTC")
WEEK = "2025-W14"                          # Monday 31 March 2025 to Sunday 6 April
MONDAY = datetime(2025, 3, 31, tzinfo=UTC)
FIONA, ALEX = "U0FIONA", "U0ALEX"       # a finance lead; an approver who is not one


def book_with(**policy_keys: Any) -> Any:
    data = yaml.safe_load(EXAMPLE_POLICIES.read_text())
    data["policies"][0].update(policy_keys)
    return parse_policies(data, "test.yml")


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Deps]:
    async with Store(tmp_path / "bot.db") as store:
        yield Deps(store=store, book=load_policies(EXAMPLE_POLICIES),
                   config=RefundConfig(mode=Mode.ASSISTED))


async def decided(svc: Deps, n: int, *, product: str = "kayak-tour", mode: str = "assisted",
                  quoted: int = 10_000, amount: int | None = None, deny: bool = False,
                  at: datetime = MONDAY + timedelta(days=1), wait: timedelta = timedelta(hours=1),
                  reason: str | None = None, paid: int = 0) -> None:
    """`n` cases of `product` a person decided at `at`, opened `wait` before."""
    async with svc.store.transaction() as tx:
        for _ in range(n):
            opened, when = iso_utc(at - wait), iso_utc(at)
            row = await tx.execute_fetchall(
                "INSERT INTO cases (booking_id, booking_code, status, currency, cancelled_at, "
                "source, refund_amount, created_at, updated_at) VALUES "
                "('b', 'B', ?, 'USD', ?, 'cli', ?, ?, ?) RETURNING id",
                ("denied" if deny else "refunded", opened, quoted, opened, when))
            case_id = row[0][0]
            await tx.execute(
                "INSERT INTO decisions (case_id, decision, amount, reason, decided_by, "
                "decided_at) VALUES (?, ?, ?, ?, ?, ?)",
                (case_id, "deny" if deny else "approve", None if deny else
                 (quoted if amount is None else amount), reason, ALEX, when))
            await tx.execute(
                "INSERT INTO case_modes (case_id, product, mode, source, opened_at) "
                "VALUES (?, ?, ?, 'global', ?)", (case_id, product, mode, opened))
            if paid:
                await tx.execute(
                    "INSERT INTO executions (case_id, payment_ref, amount, currency, attempt, "
                    "idempotency_key, status, created_at, updated_at) VALUES "
                    "(?, 'pi_1', ?, 'USD', 1, ?, 'succeeded', ?, ?)",
                    (case_id, paid, f"k-{case_id}", when, when))


async def entries(store: Store, case_id: int | None = None) -> list[dict[str, Any]]:
    """The audit trail's rows (of one case), oldest first."""
    where, params = ("WHERE case_id = ?", (case_id,)) if case_id is not None else ("", ())
    found = await store.fetch_all(f"SELECT actor, action, detail FROM audit_log {where} "
                                  "ORDER BY id", params)
    return [{"actor": r["actor"], "action": r["action"], "detail": json.loads(r["detail"])}
            for r in found]


# --- the policy file ----------------------------------------------------------------------

def test_modes_in_the_policy_file_change_no_quote_version() -> None:
    plain = load_policies(EXAMPLE_POLICIES)
    moded = book_with(mode="shadow", product_modes={"kayak-tour": "autonomous", 12: "assisted"})
    assert moded.digest == plain.digest          # modes decide; they price nothing
    assert moded.policies[0].mode == "shadow"
    assert moded.policies[0].product_modes == {"kayak-tour": "autonomous", "12": "assisted"}
    with pytest.raises(PolicyError, match=r"mode: .*one of shadow, assisted, autonomous"):
        book_with(mode="yolo")
    with pytest.raises(PolicyError, match="product_modes: private-charter is not in"):
        book_with(product_modes={"private-charter": "shadow"})


async def test_precedence_override_then_product_then_policy_then_global(svc: Deps) -> None:
    book = book_with(mode="shadow", product_modes={"kayak-tour": "autonomous"})
    assert (await modes.product_mode(svc.store, book, Mode.ASSISTED, "kayak-tour")).source \
        == modes.PRODUCT
    bike = await modes.product_mode(svc.store, book, Mode.ASSISTED, "bike-tour")
    assert (bike.mode, bike.source, bike.policy_id) == (Mode.SHADOW, modes.POLICY,
                                                        "standard-48h")
    other = await modes.product_mode(svc.store, book, Mode.AUTONOMOUS, "snorkel")
    assert (other.mode, other.source) == (Mode.AUTONOMOUS, modes.GLOBAL)
    change = await modes.change_mode(svc.store, book, Mode.ASSISTED, offer_key="k1",
                                     product="kayak-tour", from_mode="autonomous",
                                     to_mode="assisted", by=FIONA, why="test")
    assert change.changed
    kayak = await modes.product_mode(svc.store, book, Mode.ASSISTED, "kayak-tour")
    assert (kayak.mode, kayak.source, kayak.by) == (Mode.ASSISTED, modes.OVERRIDE, FIONA)


# --- the figures ----------------------------------------------------------------------------

async def test_figures_match_a_hand_count(svc: Deps) -> None:
    day = MONDAY + timedelta(days=2)
    await decided(svc, 2, at=day, wait=timedelta(minutes=10), paid=10_000)    # agreed
    await decided(svc, 1, at=day, wait=timedelta(hours=5), amount=9_000,      # -10.00, -10 %
                  reason="goodwill cut", paid=9_000)
    await decided(svc, 1, at=day, wait=timedelta(hours=2), amount=12_500,     # +25.00, +25 %
                  reason=EVIL)
    await decided(svc, 1, at=day, wait=timedelta(days=1), deny=True, reason="no-show")
    await decided(svc, 1, at=MONDAY - timedelta(days=1))   # the week before: not counted
    review = await agreement.build_review(svc.store, svc.book, Mode.ASSISTED, Rules(), WEEK,
                                          UTC_ZONE)
    [kayak] = review.figures
    assert (kayak.cases, kayak.agreed, kayak.adjusted, kayak.denied) == (5, 2, 2, 1)
    assert kayak.agreement_percent() == Decimal("40.0")
    assert kayak.mean_adjustment == 750                      # (-1000 + 2500) / 2
    assert kayak.mean_adjustment_percent == Decimal("7.5")   # (-10 + 25) / 2
    assert kayak.paid == 2 * 10_000 + 9_000
    # waits: 10m, 10m, 2h, 5h, 1d -> median 2h, p90 (nearest rank 5 of 5) 1d
    assert (kayak.median_seconds, kayak.p90_seconds) == (7_200, 86_400)
    assert [d.reason for d in review.adjustments] == ["goodwill cut", EVIL]
    assert [d.reason for d in review.denials] == ["no-show"]
    assert review.slowest[0].seconds == 5 * 3600             # denials are not approvals
    message = review_message(review)
    assert unsafe({"text": message.text, "blocks": message.blocks}) == []
    assert "goodwill cut" in review_text(review)


# --- the offers and the button ------------------------------------------------------------

class FakeClient:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    async def chat_update(self, **kwargs: Any) -> dict[str, Any]:
        self.updates.append(kwargs)
        return {"ok": True}


def slack_deps(svc: Deps, client: FakeClient) -> SlackDeps:
    rules = ApproverRules.parse(approvers=ALEX, finance_leads=FIONA)
    return SlackDeps(svc=svc, worker=None, client=client, rules=rules,   # type: ignore[arg-type]
                     groups=GroupMembers(None), notifier=svc.notifier,
                     outbox=None, zone=UTC_ZONE)  # type: ignore[arg-type]


def click(user: str, offer: agreement.Offer) -> dict[str, Any]:
    value = ModeOffer(product=offer.product, from_mode=offer.from_mode, to_mode=offer.to_mode,
                      week=offer.week).dumps()
    return {"user": {"id": user}, "channel": {"id": "CDIGEST"},
            "container": {"message_ts": "1.2"},
            "actions": [{"action_id": ids.MODE_OFFER, "value": value}]}


async def test_a_product_is_promoted_through_the_offered_button(svc: Deps) -> None:
    await decided(svc, 50, paid=10_000)                         # 50 cases, all agreed
    await decided(svc, 3, product="bike-tour")                  # too few to offer anything
    [offer] = await agreement.offers(svc.store, svc.book, Mode.ASSISTED, Rules(), WEEK,
                                     UTC_ZONE)
    assert (offer.kind, offer.product, offer.from_mode, offer.to_mode) == (
        PROMOTE, "kayak-tour", "assisted", "autonomous")
    review = await agreement.build_review(svc.store, svc.book, Mode.ASSISTED, Rules(), WEEK,
                                          UTC_ZONE)
    posted = review_message(review)
    buttons = [e for b in posted.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [b["action_id"] for b in buttons] == [ids.MODE_OFFER]

    client, said = FakeClient(), []

    async def respond(**kwargs: Any) -> None:
        said.append(kwargs["text"])

    deps = slack_deps(svc, client)
    await review_handler.answer(deps, click(FIONA, offer), respond)
    await review_handler.answer(deps, click(FIONA, offer), respond)   # a double click

    now = await modes.product_mode(svc.store, svc.book, Mode.ASSISTED, "kayak-tour")
    assert (now.mode, now.source) == (Mode.AUTONOMOUS, modes.OVERRIDE)
    [change] = await modes.changes(svc.store)
    assert (change["changed_by"], change["to_mode"]) == (FIONA, "autonomous")
    assert change["why"].startswith("100.0% agreement over 50 cases in 28 days")
    made = [e for e in await entries(svc.store) if e["action"] == "mode.changed"]
    assert len(made) == 1 and made[0]["actor"] == FIONA
    assert made[0]["detail"]["why"] == change["why"]
    assert "now in autonomous mode" in said[0] and "already changed by" in said[1]
    redrawn = client.updates[-1]
    assert not [b for b in redrawn["blocks"] if b["type"] == "actions"]   # answered
    assert "autonomous" in str(redrawn["blocks"])
    assert unsafe({"text": redrawn["text"], "blocks": redrawn["blocks"]}) == []


async def test_a_non_finance_lead_is_refused_and_audited(svc: Deps) -> None:
    await decided(svc, 50)
    [offer] = await agreement.offers(svc.store, svc.book, Mode.ASSISTED, Rules(), WEEK,
                                     UTC_ZONE)
    said: list[str] = []

    async def respond(**kwargs: Any) -> None:
        said.append(kwargs["text"])

    await review_handler.answer(slack_deps(svc, FakeClient()), click(ALEX, offer), respond)
    assert said == [review_handler.ONLY_FINANCE_LEADS]
    assert await modes.changes(svc.store) == []
    refused = [e for e in await entries(svc.store) if e["actor"] == ALEX]
    assert refused and refused[-1]["detail"]["why"] == "not a finance lead"


async def test_a_step_back_is_offered_after_adjustments(svc: Deps) -> None:
    book = book_with(product_modes={"kayak-tour": "autonomous"})
    await decided(svc, 7, mode="autonomous")
    await decided(svc, 3, mode="autonomous", amount=5_000, reason="policy too generous")
    [offer] = await agreement.offers(svc.store, book, Mode.ASSISTED, Rules(), WEEK, UTC_ZONE)
    assert (offer.kind, offer.from_mode, offer.to_mode) == (STEP_BACK, "autonomous", "assisted")
    assert offer.why.startswith("70.0% agreement over 10 cases")
    # an anomaly in the window blocks every promotion and offers the step back
    await decided(svc, 50, product="bike-tour")
    async with svc.store.transaction() as tx:
        await tx.execute("INSERT INTO anomalies (key, kind, blocking, reason, numbers, "
                         "first_seen, last_seen) VALUES ('k', 'count', 1, 'spike', '{}', ?, ?)",
                         (iso_utc(MONDAY), iso_utc(MONDAY)))
    kinds = {(o.product, o.kind) for o in await agreement.offers(
        svc.store, book, Mode.ASSISTED, Rules(), WEEK, UTC_ZONE)}
    assert kinds == {("kayak-tour", STEP_BACK), ("bike-tour", STEP_BACK)}


async def test_the_review_job_posts_each_week_once(svc: Deps) -> None:
    weeks: list[str] = []

    async def on_review(week: str) -> None:
        weeks.append(week)

    jobs = ScheduledJobs(svc, UTC_ZONE, on_review=on_review, review_at="mon 08:00")
    at = datetime(2025, 4, 7, 9, tzinfo=UTC)     # the Monday after WEEK
    assert await jobs.review(at) == WEEK
    assert await jobs.review(at + timedelta(hours=1)) is None
    assert weeks == [WEEK]


# --- the effective mode deciding a case ----------------------------------------------------

async def test_the_products_mode_decides_the_case(tmp_path: Path) -> None:
    world = await World.start(tmp_path, mode="assisted")
    try:
        svc = world.bot.svc
        for key, product, mode in (("a", "kayak-tour", "shadow"),
                                   ("b", "bike-tour", "autonomous")):
            await modes.change_mode(svc.store, svc.book, svc.config.mode, offer_key=key,
                                    product=product, from_mode="assisted", to_mode=mode,
                                    by=FIONA, why="test")
        # 95.00 would auto-approve in assisted mode; kayak-tour is in shadow
        world.paid_booking("SH-1", [Item("kayak-tour", "100.00", "5.00", hours_ahead=72)])
        # 300.00 is above auto_approve_max, within escalate_over: autonomous refunds it
        world.paid_booking("AU-1", [Item("bike-tour", "300.00", "0.00", hours_ahead=72)])
        await world.cancel("SH-1")
        await world.cancel("AU-1")
        await world.settle()
        by_code = {c.booking_code: c for c in await cases.list_cases(svc.store)}
        assert by_code["SH-1"].status == Status.PENDING_APPROVAL
        assert by_code["AU-1"].status == Status.REFUNDED
        assert [r.amount for r in world.stripe.refunds] == [29_000]   # less the 10.00 fee
        row = await svc.store.fetch_one("SELECT product, mode, source FROM case_modes "
                                        "WHERE case_id = ?", (by_code["SH-1"].id,))
        assert tuple(row) == ("kayak-tour", "shadow", "override")
        trail = await entries(svc.store, by_code["AU-1"].id)
        decision = next(e for e in trail if e["action"] == "case.auto_approved")
        assert (decision["detail"]["mode"], decision["detail"]["mode_from"]) == (
            "autonomous", "override")
        # the cards say which mode decided, and where it came from
        waiting = json.dumps((await card_state.render_card(svc.store, by_code["SH-1"])).blocks)
        assert "decided in shadow mode (set for kayak-tour)" in waiting
        done = json.dumps((await card_state.render_card(svc.store, by_code["AU-1"])).blocks)
        assert "decided in autonomous mode (set for bike-tour)" in done
    finally:
        await world.stop()


async def test_a_booking_of_several_products_is_decided_in_the_most_cautious_mode(
        tmp_path: Path) -> None:
    world = await World.start(tmp_path, mode="assisted")
    try:
        svc = world.bot.svc
        for key, product, mode in (("a", "kayak-tour", "autonomous"),
                                   ("b", "bike-tour", "shadow")):
            await modes.change_mode(svc.store, svc.book, svc.config.mode, offer_key=key,
                                    product=product, from_mode="assisted", to_mode=mode,
                                    by=FIONA, why="test")
        # the kayak line is the main one (autonomous), the bike line is in shadow: the refund
        # of both lines waits for a person
        world.paid_booking("MX-1", [Item("kayak-tour", "120.00", "0.00", hours_ahead=72),
                                    Item("bike-tour", "40.00", "0.00", hours_ahead=72)])
        await world.cancel("MX-1")
        await world.settle()
        (case,) = await cases.list_cases(svc.store)
        assert case.status == Status.PENDING_APPROVAL and world.stripe.refunds == []
        row = await svc.store.fetch_one("SELECT product, mode, source FROM case_modes "
                                        "WHERE case_id = ?", (case.id,))
        assert tuple(row) == ("bike-tour", "shadow", "override")
    finally:
        await world.stop()

