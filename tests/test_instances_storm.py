"""The issue's storm on PostgreSQL (issue 14): three `python -m bot serve` processes on one
PostgreSQL database, 500 cancellations with every webhook delivered to two random live
instances at once, people clicking on the cards of the cases waiting for them through
different instances at the same moment, and one instance killed -9 mid-storm, never restarted.

The clicks, each signed as Slack signs and posted to an instance's `/slack/events`:
- the same Approve clicked at once by two approvers through two different instances;
- Deny against Approve: the Deny modal opened through one instance, then its submission and an
  Approve through two different instances at once.

Then the counts: one event and one case per booking, one Stripe refund per allocation (counted
in the Stripe stand-in's own records, summing to the entitlement), one decision per decided
case, every card or line out once, one daily run and one digest for the day across all
three, the audit chain intact. The killed instance's work (events it stored, cases it was
executing, a channel or a job slot it held) is taken up by the survivors once its lease
(`LEASE_SECONDS=2`) passes.

Without PostgreSQL (tests/pg_cluster.py says when) the test is skipped; the fast SQLite run of
three instances is tests/test_instances.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from bot.cli.world import DIGEST, FIONA, MARIA
from bot.slack.ui import ids
from services.store import audit
from services.store.db import Store, open_store
from tests.pg_cluster import Cluster
from tests.served import TOKEN, Served, free_port
from tests.slack_helpers import buttons
from tests.test_faults import AUTO, PERSON, Rig
from tests.test_faults import rig as rig  # the stand-ins, as the fault suite's
from tests.test_instances import backlog, count, quiet_schedules

pytestmark = pytest.mark.postgresql

BOOKINGS = 500
DOUBLE_APPROVALS = 12   # cases a person decides: Approve clicked twice at once, two instances
DENY_RACES = 8          # ... and Deny submitted through one while Approve is clicked on another
INSTANCES = 3
LEASE = "2"             # seconds: the killed instance's work is free this long after it died
SETTLES_WITHIN = 90.0
CARDS_WITHIN = 150.0
DELIVERED_WITHIN = 30.0
AUTO_BACK, PERSON_BACK = 11000, 29000   # minor units: 110.00 and 290.00 back (a 10.00 fee)


@pytest.fixture
async def database(pg: Cluster) -> AsyncIterator[str]:
    url = pg.fresh()
    try:
        yield url
    finally:
        pg.drop(url)


@pytest.fixture
async def reader(database: str) -> AsyncIterator[Store]:
    store = await open_store(database).open()
    try:
        yield store
    finally:
        await store.close()


async def start_instances(rig: Rig, database: str) -> list[Served]:
    schedules = quiet_schedules()   # once: every instance on the same schedules
    return list(await asyncio.gather(*(
        rig.bot(port=free_port(), INSTANCE_ID=f"bot-{n}", LEASE_SECONDS=LEASE,
                SCHEDULER_ENABLED="true", DIGEST_CHART="false", **schedules,
                SLACK_POST_INTERVAL_SECONDS="0.005", DATABASE_URL=database)
        for n in range(1, INSTANCES + 1))))


def live(instances: list[Served]) -> list[Served]:
    return [s for s in instances if s.running]


async def through_live(instances: list[Served], chance: random.Random,
                       send: Callable[[str], Awaitable[httpx.Response]],
                       first: Served | None = None) -> httpx.Response:
    """`send(instance url)`, through `first` when it is live; on a connection refused or cut
    (the instance killed) once more through another live one, as a person clicks again."""
    target = first if first is not None and first.running else chance.choice(live(instances))
    errors: list[str] = []
    for _ in range(5):
        try:
            return await send(target.url)
        except httpx.TransportError as exc:
            errors.append(f"{target.url}: {exc!r}")
        target = chance.choice(live(instances))
    raise AssertionError(f"no instance answered a Slack request: {errors}")


async def waiting_card(rig: Rig, reader: Store, code: str) -> dict[str, Any]:
    """The booking's approval card, once it is posted and recorded (the case waits for a
    person): looked up by the ts the store recorded, not by scanning the channel."""
    deadline = time.monotonic() + CARDS_WITHIN
    while time.monotonic() < deadline:
        found = await reader.read_one(
            "SELECT m.channel, m.ts FROM slack_messages m JOIN cases c ON c.id = m.case_id "
            "WHERE c.booking_code = ? AND c.status = 'pending_approval'", (code,))
        if found is not None:
            card = rig.slack.messages.get((found["channel"], found["ts"]))
            if card is not None and ids.APPROVE in buttons(card):
                return card
        await asyncio.sleep(0.25)
    raise AssertionError(f"no approval card for {code} within {CARDS_WITHIN} s")


async def deliver_twice(client: httpx.AsyncClient, body: dict[str, Any],
                        instances: list[Served], chance: random.Random) -> None:
    """The webhook to two random live instances at once, each POST retried (on another live
    instance when its own is gone) until answered 200, as Checkfront retries."""

    async def one(target: Served) -> None:
        deadline = time.monotonic() + DELIVERED_WITHIN
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                answer = await client.post(f"{target.url}/webhooks/checkfront/{TOKEN}",
                                           json=body)
                if answer.status_code == 200:
                    return
            target = chance.choice(live(instances))
            await asyncio.sleep(0.05)
        raise AssertionError(f"a webhook was not taken within {DELIVERED_WITHIN} s")

    await asyncio.gather(*(one(s) for s in chance.sample(live(instances), 2)))


async def test_three_instances_on_postgresql_storm_of_500_with_clicks_and_a_kill(
        rig: Rig, database: str, reader: Store) -> None:
    chance = random.Random(20261014)
    people = DOUBLE_APPROVALS + DENY_RACES
    split = {n for n in range(BOOKINGS - people) if n % 10 == 0}   # paid in two parts
    autos = [rig.paid_booking(f"PS-{n:03d}", AUTO, ["60.00", "60.00"] if n in split else None)
             for n in range(BOOKINGS - people)]
    doubles = [rig.paid_booking(f"PA-{n:02d}", PERSON) for n in range(DOUBLE_APPROVALS)]
    races = [rig.paid_booking(f"PD-{n:02d}", PERSON) for n in range(DENY_RACES)]
    order = autos + doubles + races
    chance.shuffle(order)
    instances = await start_instances(rig, database)
    victim = instances[chance.randrange(INSTANCES)]
    senders: dict[str, Any] = {}

    def sender(url: str) -> Any:
        if url not in senders:
            senders[url] = rig.sender(url)
        return senders[url]

    async def storm() -> None:
        sends = []
        async with httpx.AsyncClient(timeout=5.0) as client:
            for code in order:
                sends.append(asyncio.create_task(
                    deliver_twice(client, rig.cancelled_body(code), instances, chance)))
                await asyncio.sleep(chance.uniform(0.0, 0.02))
            await asyncio.gather(*sends)
        marks["sent"] = time.monotonic() - began

    async def approve_twice(code: str) -> None:
        card = await waiting_card(rig, reader, code)
        value = buttons(card)[ids.APPROVE]["value"]
        one, other = chance.sample(live(instances), 2)
        answers = await asyncio.gather(*(
            through_live(instances, chance, lambda url, who=who: sender(url).click(
                ids.APPROVE, value, who, message_ts=card["ts"]), first=through)
            for who, through in ((MARIA, one), (FIONA, other))))
        assert [a.status_code for a in answers] == [200, 200], code

    async def deny_against_approve(code: str) -> None:
        card = await waiting_card(rig, reader, code)
        case_id = (await reader.read_one("SELECT id FROM cases WHERE booking_code = ?",
                                         (code,)))["id"]
        view = None
        for _ in range(3):   # an instance killed right after its ack opens no modal: again
            await through_live(instances, chance, lambda url: sender(url).click(
                ids.DENY, buttons(card)[ids.DENY]["value"], FIONA, message_ts=card["ts"]))
            if (view := await modal_for(case_id)) is not None:
                break
        assert view is not None, f"no Deny modal for case {case_id}"
        one, other = chance.sample(live(instances), 2)
        answers = await asyncio.gather(
            through_live(instances, chance, lambda url: sender(url).submit_view(
                ids.DENY_VIEW, {ids.REASON_BLOCK: {ids.REASON_INPUT: "the tour ran"}}, FIONA,
                view["private_metadata"]), first=one),
            through_live(instances, chance, lambda url: sender(url).click(
                ids.APPROVE, buttons(card)[ids.APPROVE]["value"], MARIA,
                message_ts=card["ts"]), first=other))
        assert [a.status_code for a in answers] == [200, 200], code

    async def modal_for(case_id: int) -> dict[str, Any] | None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for call in rig.slack.calls_to("views.open"):
                view = call.params["view"]
                if (view.get("callback_id") == ids.DENY_VIEW and json.loads(
                        view["private_metadata"]).get("case") == case_id):
                    return view
            await asyncio.sleep(0.05)
        return None

    began, marks = time.monotonic(), dict[str, float]()
    sending = asyncio.create_task(storm())
    clicking = asyncio.gather(*(approve_twice(c) for c in doubles),
                              *(deny_against_approve(c) for c in races))
    await rig.until(lambda: len(rig.stripe.refunds) >= BOOKINGS // 4, within=60)
    await victim.kill()   # mid-storm: events it stored, cases, a channel and a slot it held
    marks["killed"] = time.monotonic() - began
    assert victim.process.returncode == -9
    await asyncio.wait_for(sending, 120)
    await asyncio.wait_for(clicking, CARDS_WITHIN)

    deadline = time.monotonic() + SETTLES_WITHIN
    while time.monotonic() < deadline:
        if not any((await backlog(reader)).values()) and await count(
                reader, "SELECT COUNT(*) FROM cases WHERE status IN "
                        "('refunded', 'denied')") == BOOKINGS:
            break
        await asyncio.sleep(0.25)
    marks["settled"] = time.monotonic() - began
    print("storm timings (s from the first webhook):", marks)
    logs = "\n".join(p.log[-1500:] for p in instances)
    left = [dict(r) for r in await reader.read_all(
        "SELECT id, booking_code, status, claimed_by, lease_until, updated_at FROM cases "
        "WHERE status NOT IN ('refunded', 'denied')")]
    assert not any((await backlog(reader)).values()), (
        f"{await backlog(reader)} {left} (killed: {victim.url})\n{logs}")

    # one event per booking however many times and instances it was delivered to
    assert await count(reader, "SELECT COUNT(*) FROM webhook_events "
                               "WHERE source = 'checkfront'") == BOOKINGS
    cases = {row["booking_code"]: row for row in await reader.read_all(
        "SELECT id, booking_code, status FROM cases")}
    assert await count(reader, "SELECT COUNT(*) FROM cases") == BOOKINGS == len(cases)
    succeeded = {row["case_id"]: int(row[1]) for row in await reader.read_all(
        "SELECT case_id, COUNT(*) FROM executions WHERE status = 'succeeded' GROUP BY case_id")}
    decisions: dict[int, list[str]] = {}
    for row in await reader.read_all("SELECT case_id, decision FROM decisions"):
        decisions.setdefault(row["case_id"], []).append(row["decision"])

    def refunds(code: str) -> list[int]:
        return sorted(rig.refunds_of(code))

    for n, code in enumerate(autos):   # one refund per allocation, summing to 110.00
        case = cases[code]
        parts = 2 if n in split else 1
        assert case["status"] == "refunded", (code, case["status"])
        assert len(refunds(code)) == parts and sum(refunds(code)) == AUTO_BACK, code
        assert succeeded.get(case["id"]) == parts, code
    for code in doubles:   # two approvals at once through two instances: one decision
        case = cases[code]
        assert case["status"] == "refunded", (code, case["status"])
        assert refunds(code) == [PERSON_BACK], code
        assert succeeded.get(case["id"]) == 1
        assert decisions.get(case["id"]) == ["approve"], (code, decisions.get(case["id"]))
    denied = 0
    for code in races:   # Deny against Approve: whichever committed first, and only it
        case = cases[code]
        assert case["status"] in ("refunded", "denied"), (code, case["status"])
        if case["status"] == "denied":
            denied += 1
            assert refunds(code) == [] and case["id"] not in succeeded, code
            assert decisions.get(case["id"]) == ["deny"], code
        else:
            assert refunds(code) == [PERSON_BACK] and succeeded.get(case["id"]) == 1, code
            assert decisions.get(case["id"]) == ["approve"], code
    assert len(rig.stripe.refunds) == len(autos) + len(split) + len(doubles) + (
        len(races) - denied)
    assert sum(succeeded.values()) == len(rig.stripe.refunds)

    # every case's card or compact line out once
    assert await count(reader, "SELECT COUNT(*) FROM slack_messages") == BOOKINGS
    # the start-up daily run of three instances is one run for the day: one digest
    slots = await reader.read_all("SELECT name, claimed_by, done_at FROM leases "
                                  "WHERE name LIKE 'job:daily-reconcile:%'")
    assert len(slots) == 1 and slots[0]["done_at"] is not None, slots
    digests = [m for m in rig.slack.messages_in(DIGEST) if m.get("thread_ts") is None]
    assert len(digests) == 1, digests
    result = await audit.verify(reader)
    assert result.ok and result.rows > 0, result
    assert all(s.running for s in instances if s is not victim)
