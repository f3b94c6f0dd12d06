"""The fault suite: the bot as its own process (`python -m bot serve`) against the stand-ins,
killed at each named step of a refund and at random moments in a batch, fed duplicated
webhooks and raced by two approvers on two processes; then the refunds are counted.

Every test asserts counts: one case per booking, one Stripe refund per allocation summing to
the entitlement, no case left approved or executing, the audit chain intact, every Slack line
or card in its final state. Every process a test starts is killed when it ends.

On both store engines: on PostgreSQL every bot process opens the test's database
(`DATABASE_URL`), and the counts are read through `tests.store_reader` on either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.cli.world import APPROVALS, DIGEST, FIONA, MARIA, SAM
from bot.slack.ui import ids
from sandbox.checkfront_server import CheckfrontSandbox
from sandbox.http import RunningServer, start
from sandbox.slack_requests import SlackSender
from sandbox.slack_server import SlackSandbox
from sandbox.stripe_faults import Fault
from sandbox.stripe_server import StripeSandbox
from services.money import to_minor
from services.store import audit
from services.store.db import open_store
from tests.served import TOKEN, Served, free_port, serve
from tests.slack_helpers import all_text, buttons
from tests.store_reader import StoreReader

pytestmark = pytest.mark.both_backends

SIGNING_SECRET = "slack-signing-secret-faults"
AUTO = "120.00"      # kayak tour 72 h ahead: 110.00 back (a 10.00 fee), approved by policy
PERSON = "300.00"    # 290.00 back: above the automatic limit, a person approves
UNFINISHED = ("approved", "auto_approved", "executing")
SETTLES_WITHIN = 60.0


@dataclass
class Rig:
    """The stand-ins in the test process and the bot processes started against them."""

    folder: Path
    checkfront: CheckfrontSandbox
    stripe: StripeSandbox
    slack: SlackSandbox
    servers: list[RunningServer]
    port: int
    processes: list[Served] = field(default_factory=list)
    senders: list[SlackSender] = field(default_factory=list)
    # the store every bot process opens: the test's PostgreSQL database when DATABASE_URL
    # names one, else the SQLite file in the folder
    store_url: str = ""
    reader: StoreReader = field(init=False)

    def __post_init__(self) -> None:
        url = os.environ.get("DATABASE_URL", "")
        self.store_url = url if url.startswith("postgres") else f"sqlite:///{self.database}"
        self.reader = StoreReader(self.store_url)

    @property
    def database(self) -> Path:
        return self.folder / "refunds.db"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> dict[str, str]:
        cf, stripe = self.servers[0].url, self.servers[1].url
        return {
            "CHECKFRONT_HOST": cf, "CHECKFRONT_API_KEY": self.checkfront.api_key,
            "CHECKFRONT_API_SECRET": self.checkfront.api_secret,
            "STRIPE_API_BASE": stripe, "STRIPE_TIMEOUT_SECONDS": "10",
            "SLACK_BOT_TOKEN": "xoxb-faults", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_BASE": self.slack.api_url, "SLACK_APPROVALS_CHANNEL": APPROVALS,
            "SLACK_DIGEST_CHANNEL": DIGEST, "SLACK_APPROVERS": f"{MARIA}:1000.00",
            "SLACK_FINANCE_LEADS": FIONA, "SLACK_POST_INTERVAL_SECONDS": "0.02",
            "SHUTDOWN_GRACE_SECONDS": "1", "LOG_LEVEL": "WARNING",
            **({"DATABASE_URL": self.store_url} if self.reader.postgresql else {}),
        }

    async def bot(self, *, port: int | None = None, wait: bool = True,
                  **extra: str) -> Served:
        served = await serve(self.folder, port=port or self.port, wait=wait,
                             **{**self.settings(), **extra})
        self.processes.append(served)
        return served

    def sender(self, url: str | None = None) -> SlackSender:
        sender = SlackSender(f"{url or self.url}/slack/events", SIGNING_SECRET,
                             response_url_base=self.slack.url)
        self.senders.append(sender)
        return sender

    def paid_booking(self, code: str, total: str = AUTO,
                     payments: list[str] | None = None) -> str:
        now = time.time()
        self.checkfront.add_booking(
            code=code, status="PAID", currency="USD", customer_name="Ana Silva",
            customer_email=f"{code.lower()}@example.test", created_date=int(now - 240 * 3600),
            items=[{"sku": "kayak-tour", "name": "Kayak tour", "item_id": "1",
                    "start": int(now + 72 * 3600), "end": int(now + 74 * 3600),
                    "total": total, "tax": "0.00", "qty": 1}],
            transactions=[], paid_total="0")
        for n, amount in enumerate(payments or [total]):
            intent = self.stripe.add_payment(to_minor(amount, "USD"), "USD",
                                             metadata={"booking": code})
            self.checkfront.add_transaction(code, amount=amount, transaction_id=intent.id,
                                            gateway_id="Stripe",
                                            date=int(now - 240 * 3600 + n * 60))
        return code

    def cancelled_body(self, code: str) -> dict[str, Any]:
        booking = self.checkfront.booking(code)
        booking.status = "STOP"
        for item in booking.items:
            item.status = "STOP"
        return self.checkfront.webhook_body(code)

    async def deliver(self, body: dict[str, Any], *, url: str | None = None,
                      within: float = 45.0) -> int:
        """POST a Checkfront webhook until the bot answers 200 (as Checkfront retries while
        the bot is down); how many attempts it took."""
        deadline = time.monotonic() + within
        attempts = 0
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                attempts += 1
                with contextlib.suppress(httpx.TransportError):
                    answer = await client.post(
                        f"{url or self.url}/webhooks/checkfront/{TOKEN}", json=body)
                    if answer.status_code == 200:
                        return attempts
                if time.monotonic() > deadline:
                    raise AssertionError(f"webhook not taken within {within} s")
                await asyncio.sleep(0.1)

    async def cancel(self, code: str, **kwargs: Any) -> int:
        return await self.deliver(self.cancelled_body(code), **kwargs)

    # --- the database, read as the bot left it ------------------------------------------

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self.reader.rows(sql, params)

    def count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        return self.reader.count(sql, params)

    def backlog(self) -> dict[str, int]:
        """What is still to do; all zero once the bot has settled."""
        marks = ",".join("?" * len(UNFINISHED))
        return {
            "events": self.count("SELECT COUNT(*) FROM webhook_events "
                                 "WHERE processed_at IS NULL"),
            "cases": self.count(f"SELECT COUNT(*) FROM cases WHERE status IN ({marks})",
                                UNFINISHED),
            "posts": self.count("SELECT COUNT(*) FROM slack_outbox WHERE sent_at IS NULL"),
            "writebacks": self.count("SELECT COUNT(*) FROM checkfront_writebacks "
                                     "WHERE done_at IS NULL"),
        }

    async def settled(self, within: float = SETTLES_WITHIN,
                      also: Callable[[], bool] = lambda: True) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.reader.exists() and not any(self.backlog().values()) and also():
                return
            await asyncio.sleep(0.1)
        logs = "\n".join(p.log[-2000:] for p in self.processes)
        raise AssertionError(f"not settled within {within} s: {self.backlog()}\n{logs}")

    async def verified(self) -> audit.VerifyResult:
        store = await open_store(self.store_url).open()
        try:
            return await audit.verify(store)
        finally:
            await store.close()

    def cases_of(self, code: str) -> list[Any]:
        return self.rows("SELECT * FROM cases WHERE booking_code = ?", (code,))

    def refunds_of(self, code: str) -> list[int]:
        return [r.amount for r in self.stripe.refunds
                if r.metadata.get("booking_code") == code and r.status == "succeeded"]

    async def until(self, what: Callable[[], bool], within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not what():
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen within {within} s")
            await asyncio.sleep(0.05)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    checkfront, stripe, slack = CheckfrontSandbox(), StripeSandbox(), SlackSandbox()
    for user, name in ((MARIA, "maria"), (FIONA, "fiona"), (SAM, "sam")):
        slack.add_user(user, name)
    servers = [await start(checkfront.app()), await start(stripe.app()), await slack.serve()]
    made = Rig(tmp_path, checkfront, stripe, slack, servers, free_port())
    try:
        yield made
    finally:
        for process in made.processes:
            await process.kill()
        for sender in made.senders:
            await sender.aclose()
        made.reader.close()
        for server in servers:
            await server.stop()


def messages_about(rig: Rig, code: str) -> list[dict[str, Any]]:
    """The top-level messages (cards, compact lines) that name the booking."""
    return [m for m in rig.slack.messages_in(APPROVALS)
            if code in all_text(m) and m.get("thread_ts") in (None, m["ts"])]


async def card_of(rig: Rig, code: str) -> dict[str, Any]:
    """The booking's card, once the bot has it recorded as posted."""
    await rig.until(lambda: bool(messages_about(rig, code)) and rig.count(
        "SELECT COUNT(*) FROM slack_messages m JOIN cases c ON c.id = m.case_id "
        "WHERE c.booking_code = ?", (code,)) == 1)
    return messages_about(rig, code)[0]


def assert_refunded_once(rig: Rig, code: str, amount: int, *, allocations: int = 1) -> None:
    found = rig.cases_of(code)
    assert [c["status"] for c in found] == ["refunded"], found
    refunds = rig.refunds_of(code)
    assert len(refunds) == allocations and sum(refunds) == amount, refunds
    assert rig.count("SELECT COUNT(*) FROM executions WHERE case_id = ? AND status = "
                     "'succeeded'", (found[0]["id"],)) == allocations


# --- kill -9 at each named step ----------------------------------------------------------

POINTS = ["after_case_stored", "after_approval", "after_execution_row", "during_stripe_call",
          "after_stripe_answered", "before_writeback", "before_slack_update"]


async def test_killed_after_slack_has_the_card_before_the_bot_recorded_it(rig: Rig) -> None:
    """Slack has the card, the bot died before writing down where: restarted, it finds the
    card by its row's id in the channel's history instead of posting a second one."""
    code = rig.paid_booking("FP-POSTED", PERSON)
    first = await rig.bot(FAULT_POINT="after_slack_post")

    await rig.cancel(code)
    assert await first.exited(within=30) == 137, first.log
    assert len(messages_about(rig, code)) == 1   # posted, never recorded

    await rig.bot()
    card = await card_of(rig, code)   # the card Slack has, recorded
    await rig.sender().click(ids.APPROVE, buttons(card)[ids.APPROVE]["value"], MARIA,
                             message_ts=card["ts"])
    await rig.settled(also=lambda: [c["status"] for c in rig.cases_of(code)] == ["refunded"])

    assert_refunded_once(rig, code, 29000)
    about = messages_about(rig, code)
    assert [m["ts"] for m in about] == [card["ts"]], about   # one card, never a second
    assert ids.APPROVE not in buttons(rig.slack.message(APPROVALS, card["ts"]))


@pytest.mark.parametrize("point", POINTS)
async def test_killed_at_a_named_step_refunds_once_after_restart(rig: Rig, point: str) -> None:
    person = point == "after_approval"
    code = rig.paid_booking(f"FP-{point.upper()}", PERSON if person else AUTO)
    amount = 29000 if person else 11000
    armed = {} if point == "during_stripe_call" else {"FAULT_POINT": point}
    first = await rig.bot(**armed)
    if point == "during_stripe_call":   # Stripe makes the refund, then holds its answer
        rig.stripe.inject(Fault("timeout", delay=3.0, after_processing=True))

    await rig.cancel(code)
    if person:
        card = await card_of(rig, code)
        with contextlib.suppress(httpx.TransportError):
            await rig.sender().click(ids.APPROVE, buttons(card)[ids.APPROVE]["value"], MARIA,
                                     message_ts=card["ts"])
    if point == "during_stripe_call":
        await rig.until(lambda: len(rig.stripe.refunds) == 1)
        await first.kill()   # while the call is in flight, its answer not yet recorded
        assert first.process.returncode == -9
    else:
        assert await first.exited(within=30) == 137, first.log
        assert f"fault point {point} reached" in first.log
    # what the killed process left: the refund made or not, Checkfront told or not
    made = POINTS.index(point) >= POINTS.index("during_stripe_call")
    assert len(rig.refunds_of(code)) == int(made)
    assert len(rig.checkfront.notes(code)) == int(point == "before_slack_update")

    await rig.bot()
    await rig.settled()

    assert_refunded_once(rig, code, amount)
    assert len(rig.checkfront.notes(code)) == 1   # written back once
    assert rig.checkfront.status_of(code) == "STOP"
    about = messages_about(rig, code)
    assert len(about) == 1, about   # one card, or one compact line, never a second
    if person:   # the card, updated in place: no buttons, the refund and the approver on it
        final = rig.slack.message(APPROVALS, about[0]["ts"])
        assert ids.APPROVE not in buttons(final)
        assert rig.stripe.refunds[0].id in all_text(final) and MARIA in all_text(final)
        assert len(rig.slack.replies(APPROVALS, about[0]["ts"])) == 1   # the outcome, once
    else:
        assert "Auto-refunded 110.00" in all_text(about[0]), about[0]
    assert rig.count("SELECT COUNT(*) FROM cases") == 1
    result = await rig.verified()
    assert result.ok and result.rows > 0, result


# --- kill -9 at random moments during a batch ------------------------------------------------

BATCH = 50
KILLS = 7


async def test_random_kills_during_a_batch_of_cancellations(rig: Rig) -> None:
    chance = random.Random(20260901)
    # every fifth booking was paid in two parts (60 + 60): its 110.00 comes back in two refunds
    split = {n for n in range(BATCH) if n % 5 == 0}
    codes = [rig.paid_booking(f"RK-{n:02d}", AUTO, ["60.00", "60.00"] if n in split else None)
             for n in range(BATCH)]
    current = await rig.bot()

    async def send_all() -> None:
        for code in codes:
            await rig.cancel(code)
            await asyncio.sleep(chance.uniform(0.0, 0.08))

    sending = asyncio.create_task(send_all())
    kills = 0
    try:
        while kills < KILLS:
            await asyncio.sleep(chance.uniform(0.2, 1.0))
            await current.kill()
            kills += 1
            current = await rig.bot()
        await asyncio.wait_for(sending, 90)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sending
    await rig.settled(also=lambda: rig.count("SELECT COUNT(*) FROM cases") == BATCH)

    assert kills == KILLS
    assert rig.count("SELECT COUNT(*) FROM webhook_events WHERE source = 'checkfront'") == BATCH
    for n, code in enumerate(codes):
        assert_refunded_once(rig, code, 11000, allocations=2 if n in split else 1)
    assert len(rig.stripe.refunds) == BATCH + len(split)
    assert rig.count("SELECT COUNT(*) FROM executions WHERE status <> 'succeeded'") == 0
    assert rig.backlog() == {"events": 0, "cases": 0, "posts": 0, "writebacks": 0}
    # every case's compact line is out and says refunded
    lines = rig.rows("SELECT c.booking_code, m.ts FROM cases c JOIN slack_messages m "
                     "ON m.case_id = c.id")
    assert len(lines) == BATCH
    for line in lines:
        text = all_text(rig.slack.message(APPROVALS, line["ts"]))
        assert line["booking_code"] in text and "Auto-refunded" in text
    result = await rig.verified()
    assert result.ok, result


# --- duplicated webhooks ---------------------------------------------------------------------


async def test_each_cancellation_delivered_ten_times_opens_one_case(rig: Rig) -> None:
    codes = [rig.paid_booking(f"DUP-{n}") for n in range(5)]
    await rig.bot()
    bodies = [rig.cancelled_body(code) for code in codes]

    attempts = await asyncio.gather(*(rig.deliver(body) for body in bodies for _ in range(10)))
    await rig.settled(also=lambda: rig.count("SELECT COUNT(*) FROM cases") == len(codes))

    assert attempts == [1] * 50   # every delivery answered 200 at once
    assert rig.count("SELECT COUNT(*) FROM webhook_events") == len(codes)
    for code in codes:
        assert_refunded_once(rig, code, 11000)
        assert len(rig.checkfront.notes(code)) == 1
    assert len(rig.stripe.refunds) == len(codes)
    result = await rig.verified()
    assert result.ok, result


# --- two approvers, two processes ------------------------------------------------------------


async def test_two_approvers_on_two_processes_make_one_refund(rig: Rig) -> None:
    code = rig.paid_booking("TWO-1", PERSON)
    await rig.bot()
    other_port = free_port()
    await rig.bot(port=other_port)
    other = f"http://127.0.0.1:{other_port}"
    await rig.cancel(code)
    card = await card_of(rig, code)
    value = buttons(card)[ids.APPROVE]["value"]
    first, second = rig.sender(), rig.sender(other)

    answers = await asyncio.gather(
        first.click(ids.APPROVE, value, MARIA, message_ts=card["ts"]),
        second.click(ids.APPROVE, value, FIONA, message_ts=card["ts"]))
    await rig.settled(also=lambda: bool(rig.refunds_of(code)))

    assert [a.status_code for a in answers] == [200, 200]
    assert_refunded_once(rig, code, 29000)
    assert rig.count("SELECT COUNT(*) FROM decisions WHERE decision = 'approve'") == 1

    def refusals() -> list[str]:   # the one who lost the race is told, privately
        texts = [str(c.params.get("text") or "") for c in rig.slack.calls_to("response_url")]
        return [t for t in texts if t.startswith("Already approved by")
                or "changed while this request was handled" in t]

    await rig.until(lambda: len(refusals()) >= 1, within=15)
    assert len(refusals()) == 1, refusals()
    assert rig.count("SELECT COUNT(*) FROM executions") == 1
    assert len(rig.checkfront.notes(code)) == 1
    result = await rig.verified()
    assert result.ok, result

