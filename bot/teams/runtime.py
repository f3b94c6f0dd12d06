"""Teams on the bot's aiohttp app: the Microsoft 365 Agents SDK mounted at `POST /api/messages`.

Built as the SDK's samples build it: an `AgentAuthConfiguration` for the bot's Entra app
(client id, secret, tenant), a connection manager (`MsalConnectionManager`: MSAL's
client-credentials flow for the calls the bot makes to the Bot Connector), a `CloudAdapter`, an
`AgentApplication` with the routes of handlers/teams/agent.py, and the SDK's JWT check
(`jwt_authorization_decorator`) in front of `start_agent_process`: every activity must carry
a Bot Connector token whose signature (against the published keys), audience (the bot's app
id) and lifetime the SDK verifies. `TEAMS_ALLOW_ANONYMOUS` (local development only, off by
default) lets activities without a token in, as the SDK's `ANONYMOUS_ALLOWED` does.

The delivery half (`TeamsDelivery`: the outbox and the notifier) is built before the domain's
`Deps`, as Slack's is; the runtime after them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.aiohttp import (
    CloudAdapter,
    jwt_authorization_decorator,
    start_agent_process,
)
from microsoft_agents.hosting.core import (
    AgentApplication,
    AgentAuthConfiguration,
    MemoryStorage,
    RestChannelServiceClientFactory,
    TurnState,
)
from microsoft_agents.hosting.core.authorization import AuthTypes, Connections

from bot.card_links import CardLinks
from bot.settings import Settings
from bot.teams import store as rows
from bot.teams.cards.kit import REFRESH_USERS
from bot.teams.notifier import TeamsChannels, TeamsNotifier
from bot.teams.outbox import Pacer, TeamsOutbox
from handlers.teams.agent import TeamsDeps, register
from services.deps import Deps
from services.refunds.permissions import ApproverRules
from services.store.db import Store

log = logging.getLogger(__name__)


def auth_configuration(settings: Settings) -> AgentAuthConfiguration:
    secret = settings.teams_app_password.get_secret_value() if settings.teams_app_password \
        else None
    return AgentAuthConfiguration(
        auth_type=AuthTypes.client_secret, client_id=settings.teams_app_id,
        tenant_id=settings.teams_tenant_id or None, client_secret=secret,
        anonymous_allowed=settings.teams_allow_anonymous)


def approver_rules(settings: Settings) -> ApproverRules:
    """Approvers by Entra object id (optional limits), finance leads, no self-approval."""
    return ApproverRules.parse(settings.teams_approvers, "", "", settings.teams_finance_leads,
                               settings.teams_no_self_approval)


def connections_for(config: AgentAuthConfiguration) -> Connections:
    from microsoft_agents.authentication.msal import MsalConnectionManager
    return MsalConnectionManager(connections_configurations={"SERVICE_CONNECTION": config})


@dataclass
class TeamsDelivery:
    outbox: TeamsOutbox
    notifier: TeamsNotifier
    config: AgentAuthConfiguration
    connections: Connections
    rules: ApproverRules

    @classmethod
    def build(cls, settings: Settings, store: Store,
              connections: Connections | None = None) -> TeamsDelivery:
        config = auth_configuration(settings)
        connections = connections or connections_for(config)
        outbox = TeamsOutbox(store, connections, settings.teams_app_id, Pacer())
        rules = approver_rules(settings)
        notifier = TeamsNotifier(
            store, TeamsChannels(settings.teams_approvals_channel,
                                 settings.teams_digest_channel), outbox,
            links=CardLinks.of(settings.checkfront_base_url,
                               settings.stripe_secret_key.get_secret_value()),
            approver_ids=sorted({*rules.approvers, *rules.finance_leads})[:REFRESH_USERS])
        return cls(outbox, notifier, config, connections, rules)


class TeamsRuntime:
    def __init__(self, settings: Settings, svc: Deps, delivery: TeamsDelivery) -> None:
        self.delivery = delivery
        self.store = svc.store
        self.adapter = CloudAdapter(
            connection_manager=delivery.connections,
            channel_service_client_factory=RestChannelServiceClientFactory(
                delivery.connections))
        self.agent = AgentApplication[TurnState](
            storage=MemoryStorage(), connection_manager=delivery.connections)
        self.rules = delivery.rules
        self.deps = TeamsDeps(svc=svc, rules=self.rules, zone=settings.zone,
                              remember=self.remember, card_for=delivery.notifier.card_for,
                              refused_for=delivery.notifier.refused_for,
                              refresh=self.refresh)
        register(self.agent, self.deps)

    def mount(self, app: web.Application) -> None:
        # The SDK's JWT check reads this plain string key (`request.app.get(
        # "agent_configuration")`, as its samples set it), so aiohttp's NotAppKeyWarning about
        # a str key is the SDK's own convention: kept as is, and nothing is silenced.
        app["agent_configuration"] = self.delivery.config

        @jwt_authorization_decorator
        async def messages(request: web.Request) -> web.StreamResponse:
            response = await start_agent_process(request, self.agent, self.adapter)
            return response if response is not None else web.Response(status=202)

        app.router.add_post("/api/messages", messages)

    async def remember(self, activity: Activity) -> None:
        reference = activity.get_conversation_reference()
        data: dict[str, Any] = activity.channel_data if isinstance(activity.channel_data,
                                                                   dict) else {}
        channel = (data.get("channel") or {}).get("id")
        team = (data.get("team") or {}).get("id")
        conversation = activity.conversation
        assert conversation is not None
        thread_root = conversation.id.split(";messageid=")[0]
        reference.conversation.id = thread_root
        await rows.remember_conversation(self.store, rows.Conversation(
            conversation_id=thread_root, channel_id=channel, team_id=team,
            tenant_id=conversation.tenant_id or (data.get("tenant") or {}).get("id"),
            service_url=str(activity.service_url),
            kind=str(conversation.conversation_type or "channel"),
            reference=reference.model_dump(mode="json", by_alias=True, exclude_none=True)))

    async def refresh(self, case_id: int) -> None:
        """Edit the posted card for everyone (the outbox row: paced, retried)."""
        await self.delivery.notifier.case_updated(await _case(self.store, case_id))

    def start(self) -> None:
        self.delivery.outbox.start()

    async def stop(self, grace: float = 0.0) -> None:
        await self.delivery.outbox.stop(grace)


async def _case(store: Store, case_id: int) -> Any:
    from services.refunds import cases
    return await cases.get(store, case_id)
