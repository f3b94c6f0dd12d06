"""Signed requests as Slack sends them: slash commands, button clicks and modal submissions.

Used by the tests and the benchmark to drive the real Bolt app over real HTTP.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

TEAM = {"id": "T0SANDBOX", "domain": "sandbox"}


class SlackSender:
    def __init__(self, url: str, signing_secret: str, client: httpx.AsyncClient | None = None,
                 response_url_base: str = "") -> None:
        self.url = url
        self.signer = SignatureVerifier(signing_secret)
        self.client = client or httpx.AsyncClient(timeout=10)
        self.response_url_base = response_url_base
        self._seq = 0

    async def aclose(self) -> None:
        await self.client.aclose()

    def signed(self, body: str, *, timestamp: int | None = None,
               secret_override: str | None = None) -> dict[str, str]:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        signer = SignatureVerifier(secret_override) if secret_override else self.signer
        return {
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signer.generate_signature(timestamp=ts, body=body),
            "Content-Type": "application/x-www-form-urlencoded",
        }

    async def post(self, body: str, *, content_type: str | None = None,
                   **signing: Any) -> httpx.Response:
        headers = self.signed(body, **signing)
        if content_type:
            headers["Content-Type"] = content_type
        return await self.client.post(self.url, content=body.encode(), headers=headers)

    def event_body(self, event: dict[str, Any]) -> str:
        """An Events API callback, JSON as Slack posts it."""
        self._seq += 1
        return json.dumps({
            "token": "legacy-unused", "team_id": TEAM["id"], "api_app_id": "A0SANDBOX",
            "event": {**event, "event_ts": f"{time.time():.6f}"}, "type": "event_callback",
            "event_id": f"Ev{self._seq:08d}", "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM["id"], "user_id": "U0SANDBOXBOT",
                                "is_bot": True}],
        })

    async def event(self, event: dict[str, Any]) -> httpx.Response:
        return await self.post(self.event_body(event), content_type="application/json")

    async def home_opened(self, user: str) -> httpx.Response:
        return await self.event({"type": "app_home_opened", "user": user,
                                 "channel": f"D{user[1:]}", "tab": "home"})

    def _response_url(self) -> str:
        self._seq += 1
        return f"{self.response_url_base}/response/{self._seq}" if self.response_url_base else ""

    def command_body(self, text: str, user: str, command: str = "/refund",
                     channel: str = "C0APPROVE") -> str:
        return urlencode({
            "token": "legacy-unused", "team_id": TEAM["id"], "team_domain": TEAM["domain"],
            "channel_id": channel, "channel_name": "refunds", "user_id": user,
            "user_name": user.lower(), "command": command, "text": text,
            "api_app_id": "A0SANDBOX", "response_url": self._response_url(),
            "trigger_id": f"trigger.{time.time_ns()}",
        })

    async def command(self, text: str, user: str, **kwargs: Any) -> httpx.Response:
        return await self.post(self.command_body(text, user, **kwargs))

    def click_body(self, action_id: str, value: str, user: str, *, channel: str = "C0APPROVE",
                   message_ts: str = "1700000000.000100") -> str:
        payload = {
            "type": "block_actions",
            "team": TEAM,
            "user": {"id": user, "username": user.lower(), "team_id": TEAM["id"]},
            "api_app_id": "A0SANDBOX",
            "trigger_id": f"trigger.{time.time_ns()}",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
            "channel": {"id": channel, "name": "refunds"},
            "message": {"ts": message_ts, "type": "message"},
            "response_url": self._response_url(),
            "actions": [{"action_id": action_id, "block_id": "actions", "value": value,
                         "type": "button", "action_ts": str(time.time())}],
        }
        return urlencode({"payload": json.dumps(payload)})

    async def click(self, action_id: str, value: str, user: str, **kwargs: Any) -> httpx.Response:
        return await self.post(self.click_body(action_id, value, user, **kwargs))

    def select_body(self, action_id: str, value: str, user: str) -> str:
        """A static select's choice on the user's Home tab, as Slack posts it."""
        payload = {
            "type": "block_actions",
            "team": TEAM,
            "user": {"id": user, "username": user.lower(), "team_id": TEAM["id"]},
            "api_app_id": "A0SANDBOX",
            "trigger_id": f"trigger.{time.time_ns()}",
            "container": {"type": "view", "view_id": "V0HOME"},
            "view": {"id": "V0HOME", "type": "home"},
            "actions": [{"action_id": action_id, "block_id": "controls",
                         "type": "static_select", "action_ts": str(time.time()),
                         "selected_option": {"value": value, "text": {
                             "type": "plain_text", "text": value}}}],
        }
        return urlencode({"payload": json.dumps(payload)})

    async def select(self, action_id: str, value: str, user: str) -> httpx.Response:
        return await self.post(self.select_body(action_id, value, user))

    def view_body(self, callback_id: str, values: dict[str, dict[str, str]], user: str,
                  private_metadata: str) -> str:
        state = {block: {action: {"type": "plain_text_input", "value": value}
                         for action, value in actions.items()}
                 for block, actions in values.items()}
        payload = {
            "type": "view_submission",
            "team": TEAM,
            "user": {"id": user, "username": user.lower(), "team_id": TEAM["id"]},
            "api_app_id": "A0SANDBOX",
            "trigger_id": f"trigger.{time.time_ns()}",
            "view": {"id": "V0SANDBOX", "type": "modal", "callback_id": callback_id,
                     "private_metadata": private_metadata, "state": {"values": state},
                     "hash": "1", "team_id": TEAM["id"]},
        }
        return urlencode({"payload": json.dumps(payload)})

    async def submit_view(self, callback_id: str, values: dict[str, dict[str, str]], user: str,
                          private_metadata: str) -> httpx.Response:
        return await self.post(self.view_body(callback_id, values, user, private_metadata))
