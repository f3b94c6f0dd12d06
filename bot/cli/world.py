"""The local world for the demo and end-to-end tests: stand-ins, the bot wired to them, helpers.

Checkfront and Stripe stand-ins (and Slack's, when asked), the bot wired to them, and helpers
to make paid bookings and cancel them. The demo and the end-to-end tests both use it. With
`smtp=True` it also runs the local SMTP server and points `SMTP_URL` at it (customer messages
in review mode unless told otherwise).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bot.app import Bot
from bot.settings import load_settings
from sandbox.checkfront_server import CheckfrontSandbox
from sandbox.http import RunningServer, start
from sandbox.slack_requests import SlackSender
from sandbox.slack_server import SlackSandbox
from sandbox.slack_socket import SocketSender
from sandbox.smtp import SandboxSmtp
from sandbox.stripe_server import StripeSandbox
from sandbox.teams_authority import TokenAuthority, local_connections
from sandbox.teams_server import TeamsServer
from services.money import to_minor

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_POLICIES = REPO / "examples" / "policies.yml"
WEBHOOK_TOKEN = "cf-webhook-token-sandbox"
STRIPE_WEBHOOK_SECRET = "whsec_sandbox_secret"
SLACK_SIGNING_SECRET = "slack-signing-secret-sandbox"
APPROVALS = "C0APPROVE"
DIGEST = "C0DIGEST"
# maria approves up to 1,000.00, joe up to 300.00, fiona (finance lead) anything; sam is staff
MARIA, JOE, FIONA, SAM = "U0MARIA", "U0JOE", "U0FIONA", "U0SAM"
# Teams: the bot's Entra app, the channels (by Teams channel id) and people (Entra object ids)
TEAMS_APP_ID = "00000000-0000-0000-0000-00000000b0b0"
TEAMS_APP_PASSWORD = "teams-client-secret-sandbox"
TEAMS_APPROVALS = "19:approvals@thread.tacv2"
TEAMS_DIGEST = "19:digest@thread.tacv2"
T_MARIA, T_JOE, T_FIONA, T_SAM = ("aad-maria-0001", "aad-joe-0002", "aad-fiona-0003",
                                  "aad-sam-0004")


@dataclass
class Item:
    sku: str
    total: str  # tax included, as Checkfront sends it
    tax: str = "0.00"
    hours_ahead: float = 72.0
    name: str = ""
    item_id: str = ""


@dataclass
class World:
    checkfront: CheckfrontSandbox
    stripe: StripeSandbox
    bot: Bot
    servers: list[RunningServer] = field(default_factory=list)
    bot_url: str = ""
    slack: SlackSandbox | None = None
    sender: SlackSender | None = None
    socket: SocketSender | None = None   # with socket_mode=True, instead of `sender`
    smtp: SandboxSmtp | None = None      # with smtp=True: the local SMTP server (SMTP_URL)
    teams: TeamsServer | None = None     # with teams=True: the Bot Connector stand-in
    authority: TokenAuthority | None = None   # ... and the token authority it signs with

    @classmethod
    async def start(cls, folder: Path, *, policy_file: Path = EXAMPLE_POLICIES,
                    slack: bool = False, socket_mode: bool = False, smtp: bool = False,
                    teams: bool = False, **settings: Any) -> World:
        checkfront, stripe = CheckfrontSandbox(), StripeSandbox(timeout_delay=1.5)
        mail_server = SandboxSmtp().start() if smtp else None
        if mail_server is not None:   # customer messages wait for a person's Send
            settings = {"smtp_url": mail_server.url, "customer_messages": "review", **settings}
        cf_server = await start(checkfront.app())
        stripe_server = await start(stripe.app())
        servers = [stripe_server, cf_server]
        slack_sandbox = None
        values: dict[str, Any] = {}
        if slack:
            slack_sandbox = SlackSandbox()
            for user, name in ((MARIA, "maria"), (JOE, "joe"), (FIONA, "fiona"), (SAM, "sam")):
                slack_sandbox.add_user(user, name)
            servers.append(await slack_sandbox.serve())
            values.update({
                "slack_bot_token": "xoxb-sandbox-token",
                "slack_signing_secret": SLACK_SIGNING_SECRET,
                "slack_api_base": slack_sandbox.api_url,
                "slack_approvals_channel": APPROVALS,
                "slack_digest_channel": DIGEST,
                "slack_approvers": f"{MARIA}:1000.00,{JOE}:300.00",
                "slack_finance_leads": FIONA,
                "slack_post_interval_seconds": 0.05,
            })
            if socket_mode:
                values["slack_app_token"] = "xapp-sandbox-token"
                values["slack_signing_secret"] = None
        authority = teams_server = None
        if teams:
            authority = await TokenAuthority(TEAMS_APP_ID, TEAMS_APP_PASSWORD).start()
            authority.route_sdk_jwks()
            teams_server = await TeamsServer(authority).start()
            values.update({
                "teams_app_id": TEAMS_APP_ID, "teams_app_password": TEAMS_APP_PASSWORD,
                "teams_tenant_id": authority.tenant_id,
                "teams_approvals_channel": TEAMS_APPROVALS,
                "teams_digest_channel": TEAMS_DIGEST,
                "teams_approvers": f"{T_MARIA}:1000.00,{T_JOE}:300.00",
                "teams_finance_leads": T_FIONA,
            })
        values.update({
            "_env_file": None,
            "database_path": folder / "refunds.db",
            "policy_file": policy_file,
            "checkfront_host": cf_server.url,
            "checkfront_api_key": checkfront.api_key,
            "checkfront_api_secret": checkfront.api_secret,
            "checkfront_webhook_secret": WEBHOOK_TOKEN,
            "stripe_secret_key": "sk_test_sandbox",
            "stripe_webhook_secret": STRIPE_WEBHOOK_SECRET,
            "stripe_api_base": stripe_server.url,
            "stripe_timeout_seconds": 1.0,
            "scheduler_enabled": False,  # tests and the demo run the jobs by hand
            **settings,
        })
        loaded = load_settings(**values)
        connections = None
        if authority is not None:
            from bot.teams.runtime import auth_configuration
            connections = local_connections(authority, auth_configuration(loaded))
        bot = await Bot.create(loaded, teams_connections=connections)
        bot_server = await start(bot.web)
        if teams_server is not None and authority is not None:
            teams_server.bot_url = bot_server.url
            servers += [teams_server._server, authority._server]  # type: ignore[list-item]
            for channel in (TEAMS_APPROVALS, TEAMS_DIGEST):
                await teams_server.install(channel)
        stripe.configure_webhook(f"{bot_server.url}/webhooks/stripe", STRIPE_WEBHOOK_SECRET)
        sender = socket = None
        if slack_sandbox is not None and socket_mode:
            socket = SocketSender(slack_sandbox.socket, response_url_base=slack_sandbox.url)
            await slack_sandbox.socket.connected()
        elif slack_sandbox is not None:
            sender = SlackSender(f"{bot_server.url}/slack/events", SLACK_SIGNING_SECRET,
                                 response_url_base=slack_sandbox.url)
        return cls(checkfront, stripe, bot, [bot_server, *servers], bot_server.url,
                   slack_sandbox, sender, socket, mail_server, teams_server, authority)

    async def stop(self) -> None:
        for client in (self.sender, self.socket):
            if client is not None:
                await client.aclose()
        for server in self.servers:
            await server.stop()
        if self.authority is not None:
            self.authority.unroute_sdk_jwks()
        if self.smtp is not None:
            self.smtp.stop()

    def paid_booking(self, code: str, items: list[Item], *, currency: str = "USD",
                     payments: list[str] | None = None, customer: str = "Ana Silva",
                     email: str | None = None, created_hours_ago: float = 240.0) -> str:
        """A booking paid through Stripe: one PaymentIntent per payment (default: in full)."""
        now = time.time()
        total = sum(Decimal(i.total) for i in items)
        self.checkfront.add_booking(
            code=code, status="PAID", currency=currency, customer_name=customer,
            customer_email=email or f"{code.lower()}@example.test",
            created_date=int(now - created_hours_ago * 3600),
            items=[{"sku": i.sku, "name": i.name or i.sku, "item_id": i.item_id or str(n + 1),
                    "start": int(now + i.hours_ahead * 3600),
                    "end": int(now + i.hours_ahead * 3600 + 7200),
                    "total": i.total, "tax": i.tax, "qty": 1}
                   for n, i in enumerate(items)],
            transactions=[], paid_total="0",
        )
        for n, amount in enumerate([str(total)] if payments is None else payments):
            intent = self.stripe.add_payment(to_minor(amount, currency), currency,
                                             metadata={"booking": code})
            self.checkfront.add_transaction(code, amount=amount, transaction_id=intent.id,
                                            gateway_id="Stripe",
                                            date=int(now - created_hours_ago * 3600 + n * 60))
        return code

    def webhook_url(self) -> str:
        return f"{self.bot_url}/webhooks/checkfront/{WEBHOOK_TOKEN}"

    async def cancel(self, code: str, status: str = "STOP") -> httpx.Response:
        """Cancel in Checkfront and deliver its "Booking Status Change" webhook to the bot."""
        self.checkfront.booking(code).status = status
        for item in self.checkfront.booking(code).items:
            item.status = status
        async with httpx.AsyncClient() as client:
            return await client.post(self.webhook_url(), json=self.checkfront.webhook_body(code))

    async def settle(self) -> None:
        """Wait for the bot's worker, Stripe's webhook deliveries and Slack posts to go quiet."""
        for _ in range(3):
            await self.bot.worker.drain()
            await self.stripe.drain_webhooks()
            if self.bot.slack is not None:
                await self.bot.slack.outbox.drain()
            if self.bot.teams is not None:
                await self.bot.teams.delivery.outbox.drain()
        await self.bot.worker.drain()
