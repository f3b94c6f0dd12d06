"""`python -m bot serve` as it is deployed, in a child process: what its log shows (no secrets,
no refused bodies) and how it stops on SIGTERM (within the grace period, the rest queued)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.checkfront_server import CheckfrontSandbox
from sandbox.http import start
from tests.served import TOKEN, serve


@pytest.fixture
async def checkfront() -> AsyncIterator[tuple[CheckfrontSandbox, str]]:
    sandbox = CheckfrontSandbox()
    server = await start(sandbox.app())
    try:
        yield sandbox, server.url
    finally:
        await server.stop()


async def test_the_access_log_masks_the_webhook_token(tmp_path: Path) -> None:
    served = await serve(tmp_path)
    async with httpx.AsyncClient() as client:
        accepted = await client.post(f"{served.url}/webhooks/checkfront/{TOKEN}",
                                     json={"hello": "world"})
        refused = await client.post(f"{served.url}/webhooks/checkfront/{TOKEN}x?a=1",
                                    json={})
        beyond = await client.post(f"{served.url}/webhooks/checkfront/{TOKEN}/more", json={})
    await served.terminate(within=15)

    assert (accepted.status_code, refused.status_code, beyond.status_code) == (200, 401, 404)
    assert TOKEN not in served.log
    assert served.log.count('"POST /webhooks/checkfront/*** HTTP/1.1" 200') == 1, served.log
    assert served.log.count('"POST /webhooks/checkfront/***?a=1 HTTP/1.1" 401') == 1
    assert '"POST /webhooks/checkfront/***/more HTTP/1.1" 404' in served.log


async def test_a_refused_slack_request_is_not_logged_with_its_body(tmp_path: Path) -> None:
    served = await serve(tmp_path, SLACK_BOT_TOKEN="xoxb-x", SLACK_SIGNING_SECRET="slack-secret",
                         SLACK_APPROVALS_CHANNEL="C0APPROVE",
                         SLACK_API_BASE="http://127.0.0.1:9/api/")
    body = "payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22" \
           "U0SECRETBODY%22%7D%7D"
    async with httpx.AsyncClient() as client:
        answers = [await client.post(f"{served.url}/slack/events", content=body, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=forged-signature-value"}) for _ in range(3)]
    await served.terminate(within=15)

    assert [a.status_code for a in answers] == [401, 401, 401]
    assert "U0SECRETBODY" not in served.log and "forged-signature-value" not in served.log
    assert served.log.count("rejected 1 slack request(s)") == 1, served.log


def unprocessed(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return int(db.execute(
            "SELECT COUNT(*) FROM webhook_events WHERE processed_at IS NULL").fetchone()[0])


async def test_sigterm_stops_within_the_grace_period_and_leaves_the_backlog_queued(
    tmp_path: Path, checkfront: tuple[CheckfrontSandbox, str],
) -> None:
    sandbox, url = checkfront
    sandbox.stall(3.0, times=1000)   # every Checkfront call takes 3 s: a slow backlog
    served = await serve(tmp_path, CHECKFRONT_HOST=url, CHECKFRONT_API_KEY=sandbox.api_key,
                         CHECKFRONT_API_SECRET=sandbox.api_secret, SHUTDOWN_GRACE_SECONDS="1")
    bodies: list[dict[str, Any]] = [{"booking": {"code": f"SLOW-{n}", "status": "STOP"}}
                                    for n in range(20)]
    async with httpx.AsyncClient() as client:
        for body in bodies:
            answer = await client.post(f"{served.url}/webhooks/checkfront/{TOKEN}", json=body)
            assert answer.status_code == 200
    await asyncio.sleep(0.5)   # the first event is in hand, waiting on Checkfront

    took = await served.terminate(within=12)

    assert took < 4.0, served.log   # 1 s of grace, and the process's own start and stop
    assert unprocessed(served.database) >= 19   # left durably queued for the next start
