"""A Bot Connector stand-in for Teams on 127.0.0.1: what the bot posts, and what Teams sends it.

The bot's side (the Connector REST API, every call with the bot's client-credentials token,
checked against the local authority):
- `POST /v3/conversations/{id}/activities`: a new activity in a conversation (its id back);
- `POST /v3/conversations/{id}/activities/{activityId}`: a reply to that activity (a thread);
- `PUT /v3/conversations/{id}/activities/{activityId}`: the activity edited in place.
`fail_next(n, retry_after)` answers the next n calls 429 with Retry-After, as Teams does when a
conversation's limit is passed. Everything is recorded: `calls` in order, `shown(conversation)`
what the channel shows now (each activity as last updated), `replies_to(...)` a thread,
`answers` the bot's answer to each invoke, `recorded_cards()` every card it sent.

Teams' side (`install`, `message`, `invoke`): activities posted to the bot's
`/api/messages` with a signed Bot Connector token (serviceUrl = this stand-in), as Teams sends
them: a `conversationUpdate` when the app is added to a team, a `message` (personal or in a
channel thread), an `invoke` named `adaptiveCard/action` with the verb, the data and the inputs.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from aiohttp import web

from sandbox.http import RunningServer, start
from sandbox.teams_authority import TokenAuthority

TENANT = "00000000-0000-0000-0000-0000000000aa"
CARD = "application/vnd.microsoft.card.adaptive"


@dataclass
class Call:
    method: str
    conversation: str
    activity_id: str
    activity: dict[str, Any]
    at: float


@dataclass
class TeamsServer:
    authority: TokenAuthority
    bot_url: str = ""                 # the bot's base URL (its /api/messages)
    url: str = ""
    team_id: str = "19:team-general@thread.tacv2"
    calls: list[Call] = field(default_factory=list)
    refused: int = 0                  # calls answered 401 (no or a bad token)
    throttled_at: list[float] = field(default_factory=list)   # when each 429 was answered
    answers: list[Any] = field(default_factory=list)   # the bot's answer to every invoke
    _activities: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _replies: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    _fail: list[float] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _server: RunningServer | None = None

    async def start(self) -> TeamsServer:
        app = web.Application()
        base = "/v3/conversations/{conversation}/activities"
        app.router.add_post(base, self._post)
        app.router.add_post(base + "/{activity}", self._reply)
        app.router.add_put(base + "/{activity}", self._update)
        self._server = await start(app)
        self.url = self._server.url
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()

    @property
    def service_url(self) -> str:
        return self.url + "/"

    # --- what the channel shows -------------------------------------------------------------

    def fail_next(self, count: int, retry_after: float = 1.0) -> None:
        self._fail.extend([retry_after] * count)

    def shown(self, conversation: str) -> list[dict[str, Any]]:
        return list(self._activities.get(conversation, {}).values())

    def activity(self, conversation: str, activity_id: str) -> dict[str, Any]:
        return self._activities[conversation][activity_id]

    def replies_to(self, conversation: str, activity_id: str) -> list[dict[str, Any]]:
        return [self._activities[conversation][i]
                for i in self._replies.get((conversation, activity_id), [])]

    def cards(self, conversation: str) -> list[dict[str, Any]]:
        """The Adaptive Cards shown in a conversation, as last updated."""
        return [a["content"] for act in self.shown(conversation)
                for a in act.get("attachments") or []
                if a.get("contentType") == CARD]

    def recorded_cards(self) -> list[dict[str, Any]]:
        """Every Adaptive Card the bot sent: in each activity posted, replied or updated (in
        order), then in each answer to an invoke."""
        found = [a["content"] for call in self.calls
                 for a in call.activity.get("attachments") or []
                 if a.get("contentType") == CARD]
        found += [body["value"] for body in self.answers
                  if isinstance(body, dict) and body.get("type") == CARD]
        return found

    def transcript(self, conversation: str) -> list[str]:
        """One line a shown activity: its text, or the first texts of its card."""
        lines = []
        for act in self.shown(conversation):
            if act.get("text"):
                lines.append(str(act["text"]))
            for attachment in act.get("attachments") or []:
                texts = [b.get("text", "") for b in attachment.get("content", {}).get("body", [])
                         if b.get("type") == "TextBlock"]
                lines.append(" | ".join(t for t in texts[:3] if t))
        return lines

    # --- the Connector API ------------------------------------------------------------------

    async def _checked(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        try:
            self.authority.verify_service_token(auth.removeprefix("Bearer ").strip())
        except jwt.PyJWTError:
            self.refused += 1
            return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        if self._fail:
            wait = self._fail.pop(0)
            self.throttled_at.append(time.monotonic())
            return web.json_response({"error": {"code": "TooManyRequests"}}, status=429,
                                     headers={"Retry-After": f"{wait:g}"})
        return None

    async def _post(self, request: web.Request) -> web.Response:
        refused = await self._checked(request)
        if refused is not None:
            return refused
        conversation = request.match_info["conversation"]
        body = await request.json()
        activity_id = self._keep(conversation, body)
        self.calls.append(Call("post", conversation, activity_id, body, time.monotonic()))
        return web.json_response({"id": activity_id}, status=201)

    async def _reply(self, request: web.Request) -> web.Response:
        refused = await self._checked(request)
        if refused is not None:
            return refused
        conversation, parent = request.match_info["conversation"], request.match_info["activity"]
        body = await request.json()
        activity_id = self._keep(conversation, {**body, "replyToId": parent})
        self._replies.setdefault((conversation, parent), []).append(activity_id)
        self.calls.append(Call("reply", conversation, activity_id, body, time.monotonic()))
        return web.json_response({"id": activity_id}, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        refused = await self._checked(request)
        if refused is not None:
            return refused
        conversation, activity_id = (request.match_info["conversation"],
                                     request.match_info["activity"])
        if activity_id not in self._activities.get(conversation, {}):
            return web.json_response({"error": {"code": "ActivityNotFoundInConversation"}},
                                     status=404)
        body = await request.json()
        self._activities[conversation][activity_id] = {**body, "id": activity_id}
        self.calls.append(Call("update", conversation, activity_id, body, time.monotonic()))
        return web.json_response({"id": activity_id})

    def _keep(self, conversation: str, body: dict[str, Any]) -> str:
        activity_id = f"1{next(self._ids):012d}"
        self._activities.setdefault(conversation, {})[activity_id] = {**body, "id": activity_id}
        return activity_id

    # --- Teams → the bot ---------------------------------------------------------------------

    def _envelope(self, kind: str, conversation: str, user: str, *,
                  channel: str | None = None, personal: bool = False,
                  reply_to: str | None = None, **extra: Any) -> dict[str, Any]:
        channel_data: dict[str, Any] = {"tenant": {"id": TENANT}}
        if channel is not None:
            channel_data.update({"team": {"id": self.team_id, "name": "Operations"},
                                 "channel": {"id": channel}})
        activity = {
            "type": kind, "id": uuid.uuid4().hex, "channelId": "msteams",
            "serviceUrl": self.service_url, "timestamp": "2026-01-01T00:00:00Z",
            "from": {"id": f"29:{user}", "aadObjectId": user, "name": "Teams user"},
            "recipient": {"id": f"28:{self.authority.app_id}", "name": "Refund bot"},
            "conversation": {"id": conversation, "tenantId": TENANT,
                             "conversationType": "personal" if personal else "channel",
                             "isGroup": not personal},
            "channelData": channel_data, **extra}
        if reply_to:
            activity["replyToId"] = reply_to
        return activity

    async def install(self, channel: str, user: str = "installer") -> tuple[int, Any]:
        """The app added to the team: a conversationUpdate in the team's channel."""
        activity = self._envelope(
            "conversationUpdate", channel, user, channel=channel,
            membersAdded=[{"id": f"28:{self.authority.app_id}"}])
        activity["channelData"]["eventType"] = "teamMemberAdded"
        return await self.send(activity)

    async def message(self, text: str, user: str, *, conversation: str,
                      channel: str | None = None, personal: bool = False,
                      reply_to: str | None = None) -> tuple[int, Any]:
        return await self.send(self._envelope("message", conversation, user, channel=channel,
                                              personal=personal, reply_to=reply_to,
                                              text=text))

    async def invoke(self, verb: str, data: dict[str, Any], user: str, *, conversation: str,
                     activity_id: str, inputs: dict[str, Any] | None = None,
                     channel: str | None = None) -> tuple[int, Any]:
        """A click on an Action.Execute: Teams merges the card's inputs into the data."""
        value = {"action": {"type": "Action.Execute", "verb": verb,
                            "data": {**data, **(inputs or {})}},
                 "trigger": "manual"}
        activity = self._envelope("invoke", conversation, user, channel=channel,
                                  name="adaptiveCard/action", value=value,
                                  replyToId=activity_id)
        status, body = await self.send(activity)
        self.answers.append(body)
        return status, body

    async def send(self, activity: dict[str, Any], *, token: str | None = None
                   ) -> tuple[int, Any]:
        bearer = token if token is not None else self.authority.channel_token(self.service_url)
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        async with aiohttp.ClientSession() as session, \
                session.post(f"{self.bot_url}/api/messages", json=activity,
                             headers=headers) as response:
            text = await response.text()
            try:
                body: Any = await response.json(content_type=None) if text else None
            except ValueError:
                body = text
            return response.status, body
