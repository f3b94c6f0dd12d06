"""What the bot shows in Slack, and the outbox that delivers it.

`SlackNotifier` turns case events into outbox rows; `Outbox` posts them, paced to about one
message per second per channel (Slack's chat.postMessage limit). Rows live in the store, so
a restart loses none. A case's card row is rendered from the case's *current* state when it
is sent, so several queued refreshes of one card collapse into one call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.ui import cards
from bot.slack.ui.disputes import issue_card
from bot.slack.ui.kit import archive_link, who
from services.deps import Deps
from services.disputes import issues
from services.disputes.holds import flags_now
from services.quoting.quote import Quote
from services.refunds import cases, writeback
from services.refunds.automation import automation_state
from services.refunds.cases import Case, Status
from services.store import audit
from services.store.db import Row, Store, dumps, now_iso, utcnow

log = logging.getLogger(__name__)

FINAL = (Status.REFUNDED, Status.PARTIALLY_REFUNDED, Status.DENIED, Status.SKIPPED,
         Status.FAILED)


@dataclass(frozen=True)
class Channels:
    approvals: str
    digest: str


class SlackNotifier:
    """services.notify.Notifier for Slack: every change becomes an outbox row."""

    def __init__(self, store: Store, channels: Channels, outbox: Outbox) -> None:
        self.store = store
        self.channels = channels
        self.outbox = outbox

    async def case_opened(self, case: Case, quote: Quote) -> None:
        await self.case_updated(case)

    async def case_updated(self, case: Case) -> None:
        card = await self._message_of(case.id)
        has_card = card is not None and card["kind"] == "card"
        if has_card or await self._needs_person(case):
            await self.outbox.add(self.channels.approvals, "card", case.id)
        elif case.status in FINAL:
            if card is None:
                await self.outbox.add(self.channels.approvals, "compact", case.id)
            kept = await writeback.pending(self.store, case.id)
            if kept is not None:   # a compact line cannot say it: one alert of its own
                message = cards.writeback_alert(case, kept)
                await self.outbox.add_once(self.channels.approvals, "alert", case.id,
                                           {"text": message.text, "blocks": message.blocks})
        if case.status in FINAL and has_card:
            await self.outbox.add_once(self.channels.approvals, "thread", case.id,
                                       {"status": str(case.status)})

    async def automation_changed(self, paused: bool, reason: str, by: str) -> None:
        message = cards.automation_alert(paused, reason, by, [])
        await self.outbox.add(self.channels.approvals, "alert", None,
                              {"text": message.text, "blocks": message.blocks})

    async def _message_of(self, case_id: int) -> Row | None:
        return await self.store.fetch_one("SELECT * FROM slack_messages WHERE case_id = ?",
                                          (case_id,))

    async def _needs_person(self, case: Case) -> bool:
        if case.status == Status.PENDING_APPROVAL:
            return True
        if case.status == Status.FAILED:
            return True
        last = await cases.last_decision(self.store, case.id)
        return last is not None and last["decision"] in ("approve", "deny") and \
            last["decided_by"] != "policy"


class Outbox:
    def __init__(self, svc: Deps, client: AsyncWebClient, *, per_channel_interval: float = 1.0,
                 retry_after: timedelta = timedelta(seconds=5)) -> None:
        self.svc = svc
        self.client = client
        self.interval = per_channel_interval
        self.retry_after = retry_after
        self._last_post: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def add(self, channel: str, kind: str, case_id: int | None,
                  payload: dict[str, Any] | None = None) -> None:
        async with self.svc.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO slack_outbox (channel, kind, case_id, payload, created_at, next_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (channel, kind, case_id, dumps(payload or {}), now_iso(), now_iso()))
        self._idle.clear()
        self._wake.set()

    async def add_once(self, channel: str, kind: str, case_id: int,
                       payload: dict[str, Any]) -> None:
        """Add unless the same row was added before (one thread reply per outcome)."""
        seen = await self.svc.store.fetch_one(
            "SELECT 1 FROM slack_outbox WHERE kind = ? AND case_id = ? AND payload = ?",
            (kind, case_id, dumps(payload)))
        if seen is None:
            await self.add(channel, kind, case_id, payload)

    async def start(self) -> None:
        """Send what a previous run left waiting right away, then keep sending."""
        async with self.svc.store.transaction() as tx:
            await tx.execute("UPDATE slack_outbox SET next_at = ? WHERE sent_at IS NULL",
                             (now_iso(),))
        self._idle.clear()  # the loop sets it again once nothing is due
        self._task = asyncio.create_task(self._run(), name="slack-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until every due row is sent (tests and shutdown)."""
        await self._idle.wait()

    async def pending(self) -> list[Row]:
        return await self.svc.store.fetch_all(
            "SELECT * FROM slack_outbox WHERE sent_at IS NULL ORDER BY id")

    async def _run(self) -> None:
        while True:
            try:
                sent_any = await self.flush()
            except Exception:
                log.exception("slack outbox pass failed")
                sent_any = False
            if not sent_any:
                due = await self.svc.store.fetch_one(
                    "SELECT MIN(next_at) AS at FROM slack_outbox WHERE sent_at IS NULL")
                if due is None or due["at"] is None:
                    self._idle.set()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    async def flush(self) -> bool:
        """Send every due row once, oldest first; True when something was attempted."""
        rows = await self.svc.store.fetch_all(
            "SELECT * FROM slack_outbox WHERE sent_at IS NULL AND next_at <= ? ORDER BY id",
            (now_iso(),))
        done: set[int] = set()
        for row in rows:
            if row["id"] in done:
                continue
            await self._pace(row["channel"])
            try:
                done |= await self._send(row)
            except SlackApiError as exc:
                await self._failed(row, exc.response.get("error", "slack error"))
            except Exception as exc:  # keep the row, try again later
                log.warning("slack post failed: %s", exc.__class__.__name__)
                await self._failed(row, exc.__class__.__name__)
            finally:
                self._last_post[row["channel"]] = time.monotonic()
        return bool(rows)

    async def _pace(self, channel: str) -> None:
        """Wait until `interval` has passed since the last call to this channel ended."""
        wait = self._last_post.get(channel, 0.0) + self.interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _failed(self, row: Row, error: str) -> None:
        async with self.svc.store.transaction() as tx:
            await tx.execute(
                "UPDATE slack_outbox SET attempts = attempts + 1, error = ?, next_at = ? "
                "WHERE id = ?",
                (error, (utcnow() + self.retry_after * (row["attempts"] + 1)).isoformat(),
                 row["id"]))

    async def _mark_sent(self, ids: list[int]) -> set[int]:
        async with self.svc.store.transaction() as tx:
            for row_id in ids:
                await tx.execute("UPDATE slack_outbox SET sent_at = ?, error = NULL WHERE id = ?",
                                 (now_iso(), row_id))
        return set(ids)

    async def _send(self, row: Row) -> set[int]:
        kind = row["kind"]
        if kind == "card":
            return await self._send_card(row)
        if kind == "compact":
            return await self._send_compact(row)
        if kind == "thread":
            return await self._send_thread(row)
        if kind == "issue":
            return await self._send_issue(row)
        payload = json.loads(row["payload"])
        if kind == "file":
            await self.client.files_upload_v2(
                channel=row["channel"], filename=payload["filename"], title=payload["title"],
                content=base64.b64decode(payload["content_b64"]),
                initial_comment=payload.get("text"))
            return await self._mark_sent([row["id"]])
        await self.client.chat_postMessage(channel=row["channel"], text=payload["text"],
                                           blocks=payload.get("blocks"))
        return await self._mark_sent([row["id"]])

    async def _send_card(self, row: Row) -> set[int]:
        store = self.svc.store
        case = await cases.get(store, row["case_id"])
        message = await render_card(self.svc, case)
        existing = await store.fetch_one("SELECT * FROM slack_messages WHERE case_id = ?",
                                         (case.id,))
        if existing is not None:
            await self.client.chat_update(channel=existing["channel"], ts=existing["ts"],
                                          text=message.text, blocks=message.blocks)
        else:
            answer = await self.client.chat_postMessage(channel=row["channel"],
                                                        text=message.text, blocks=message.blocks)
            async with store.transaction() as tx:
                await tx.execute(
                    "INSERT OR REPLACE INTO slack_messages (case_id, channel, ts, kind, posted_at) "
                    "VALUES (?, ?, ?, 'card', ?)",
                    (case.id, answer["channel"], answer["ts"], now_iso()))
        same = await store.fetch_all(
            "SELECT id FROM slack_outbox WHERE sent_at IS NULL AND kind = 'card' AND case_id = ?",
            (case.id,))
        return await self._mark_sent([r["id"] for r in same])

    async def _send_issue(self, row: Row) -> set[int]:
        """A dispute or failed-payment card, drawn as the issue stands when it goes out; where
        it went is kept so that later changes update it in place."""
        store = self.svc.store
        issue = await issues.get_issue(store, int(json.loads(row["payload"])["issue_id"]))
        message = issue_card(issue)
        if issue.slack_channel and issue.slack_ts:
            await self.client.chat_update(channel=issue.slack_channel, ts=issue.slack_ts,
                                          text=message.text, blocks=message.blocks)
            return await self._mark_sent([row["id"]])
        answer = await self.client.chat_postMessage(channel=row["channel"], text=message.text,
                                                    blocks=message.blocks)
        await issues.remember_card(store, issue.id, answer["channel"], answer["ts"])
        latest = issue_card(await issues.get_issue(store, issue.id))
        if latest.blocks != message.blocks:  # it changed while the post was on its way
            await self.client.chat_update(channel=answer["channel"], ts=answer["ts"],
                                          text=latest.text, blocks=latest.blocks)
        return await self._mark_sent([row["id"]])

    async def _send_compact(self, row: Row) -> set[int]:
        """Every compact line waiting for this channel goes out as one message."""
        store = self.svc.store
        rows = await store.fetch_all(
            "SELECT * FROM slack_outbox WHERE sent_at IS NULL AND kind = 'compact' "
            "AND channel = ? AND next_at <= ? ORDER BY id", (row["channel"], now_iso()))
        items = []
        for r in rows:
            case = await cases.get(store, r["case_id"])
            items.append((case, (await cases.current_quote(store, case)).quote))
        message = cards.compact_lines(items)
        answer = await self.client.chat_postMessage(channel=row["channel"], text=message.text,
                                                    blocks=message.blocks)
        async with store.transaction() as tx:
            for case, _ in items:
                await tx.execute(
                    "INSERT OR IGNORE INTO slack_messages (case_id, channel, ts, kind, posted_at) "
                    "VALUES (?, ?, ?, 'compact', ?)",
                    (case.id, answer["channel"], answer["ts"], now_iso()))
        return await self._mark_sent([r["id"] for r in rows])

    async def _send_thread(self, row: Row) -> set[int]:
        store = self.svc.store
        card = await store.fetch_one("SELECT * FROM slack_messages WHERE case_id = ?",
                                     (row["case_id"],))
        if card is None:  # the card is not out yet: try again after it
            await self._failed(row, "card not posted yet")
            return set()
        case = await cases.get(store, row["case_id"])
        text = await thread_details(self.svc, case)
        await self.client.chat_postMessage(channel=card["channel"], thread_ts=card["ts"],
                                           text=text)
        return await self._mark_sent([row["id"]])


async def card_links(store: Store, case_ids: Sequence[int]) -> dict[int, str]:
    """Links to the messages that show these cases (those posted so far)."""
    if not case_ids:
        return {}
    marks = ", ".join("?" for _ in case_ids)
    rows = await store.fetch_all(
        f"SELECT case_id, channel, ts FROM slack_messages WHERE case_id IN ({marks})",
        list(case_ids))
    return {r["case_id"]: archive_link(r["channel"], r["ts"]) for r in rows}


async def card_context(svc: Deps, case: Case) -> dict[str, Any]:
    """Everything a card needs from the store, besides the case itself."""
    stored = await cases.current_quote(svc.store, case)
    customer = (stored.snapshot.get("booking") or {}).get("customer") or {}
    name = str(customer.get("name") or "").split()
    last = await cases.last_decision(svc.store, case.id)
    refunds = await svc.store.fetch_all(
        "SELECT stripe_refund_id, amount, status, payment_ref FROM executions "
        "WHERE case_id = ? AND stripe_refund_id IS NOT NULL ORDER BY id", (case.id,))
    return {
        "quote": stored.quote,
        "customer_first_name": name[0] if name else "",
        "decided_by": last["decided_by"] if last else None,
        "decided_at": last["decided_at"] if last else None,
        "decision_reason": last["reason"] if last else None,
        "refunds": [dict(r) for r in refunds],
        "automation": await automation_state(svc.store),
        "checkfront_pending": await writeback.pending(svc.store, case.id),
    }


async def render_card(svc: Deps, case: Case) -> cards.Message:
    ctx = await card_context(svc, case)
    if case.status == Status.PENDING_APPROVAL:
        return cards.approval_card(case, await flags_now(svc.store, ctx["quote"]),
                                    customer_first_name=ctx["customer_first_name"],
                                    automation=ctx["automation"])
    return cards.outcome_card(case, ctx["quote"], customer_first_name=ctx["customer_first_name"],
                               decided_by=ctx["decided_by"], decided_at=ctx["decided_at"],
                               refunds=ctx["refunds"], automation=ctx["automation"],
                               decision_reason=ctx["decision_reason"],
                               checkfront_pending=ctx["checkfront_pending"])


async def thread_details(svc: Deps, case: Case) -> str:
    """The thread reply under a decided card: what happened, with the references."""
    lines = [f"Case #{case.id} {case.booking_code}: *{case.status.value}*"
             + (f" — {case.status_reason}" if case.status_reason else "")]
    for entry in await audit.history(svc.store, case.id):
        d = entry.detail
        if entry.action == "stripe.refund":
            lines.append(f"• Stripe refund {d.get('refund_id')} {d.get('amount')} on "
                         f"{d.get('payment')} ({d.get('status')}), "
                         f"key `{d.get('idempotency_key')}`")
        elif entry.action == "stripe.refund_error":
            lines.append(f"• Stripe error on {d.get('payment')}: {d.get('error')}")
        elif entry.action.startswith("checkfront."):
            lines.append(f"• Checkfront: {entry.action.split('.', 1)[1]}")
        elif entry.action in ("case.approved", "case.denied"):
            lines.append(f"• {entry.action.split('.', 1)[1]} by {who(entry.actor)} at "
                         f"{entry.at[11:16]} UTC" + (f": {d['reason']}" if d.get("reason") else ""))
    return "\n".join(lines)

