"""App assembly: the bot's parts built in order, and the aiohttp application that serves them.

Settings → store → Slack delivery (the outbox and the notifier) → `Deps` with that notifier →
worker → aiohttp application (webhooks, health, readiness, metrics, and Slack when configured)
with the metrics (`bot.metrics`) watching each part as it is built. Its access log
masks the Checkfront webhook's path token.

Stopping is bounded: from SIGTERM (aiohttp's shutdown) the bot takes no new work (the
listening socket and Slack's Socket Mode link close), and what is in flight, HTTP handlers,
the event in hand, tracked tasks, Slack posts, gets `SHUTDOWN_GRACE_SECONDS` in all. What is
left is stored (events unprocessed, posts unsent) and picked up by the next start.
"""

from __future__ import annotations

import gc
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import logs
from bot.checkfront_transport import CheckfrontTransport
from bot.fanout import FanoutNotifier
from bot.loop_guard import LoopGuard
from bot.mail import CustomerMail, SmtpMailer
from bot.metrics import CHECKFRONT, BotMetrics
from bot.readiness import Readiness
from bot.scheduler import build_scheduler
from bot.settings import Settings
from bot.slack.delivery import SlackDelivery
from bot.slack.digest import DigestPoster
from bot.slack.nudges import NudgePoster
from bot.slack.review_post import ReviewPoster
from bot.slack.runtime import SlackRuntime
from bot.worker import Worker
from handlers.http import checkfront_webhook, stripe_webhook
from handlers.http.context import CONTEXT_KEY, AppContext
from handlers.slack import departure
from services.clients.checkfront import CheckfrontClient
from services.clients.stripe_gateway import StripeGateway
from services.customers.drafts import Templates
from services.deps import Deps
from services.health import backlog
from services.intake.rejections import Rejections
from services.notify import Notifier, NullNotifier
from services.quoting.policy import load_policies
from services.refunds.automation import automation_state
from services.store import leases
from services.store.db import open_store

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

if TYPE_CHECKING:   # Microsoft's SDK is imported only when Teams is set up (it is slow to load)
    from microsoft_agents.hosting.core.authorization import Connections

    from bot.teams.runtime import TeamsRuntime


@dataclass
class Bot:
    settings: Settings
    svc: Deps
    worker: Worker
    web: web.Application
    slack: SlackRuntime | None = None
    teams: TeamsRuntime | None = None
    scheduler: AsyncIOScheduler | None = None
    rejections: Rejections = field(default_factory=Rejections)
    metrics: BotMetrics = field(default_factory=BotMetrics)
    readiness: Readiness | None = None
    mail: CustomerMail | None = None   # customer messages, when SMTP_URL is set
    _stop_by: float | None = field(default=None, repr=False)  # monotonic; set when stopping

    @classmethod
    async def create(cls, settings: Settings,
                     teams_connections: Connections | None = None) -> Bot:
        """`teams_connections`: the SDK connection manager for Teams' outgoing calls
        (default: MSAL's client-credentials flow for TEAMS_APP_ID)."""
        book = load_policies(settings.policy_file)
        leases.configure(settings.instance_id, settings.lease_seconds)
        store = await open_store(settings.store_target()).open()
        rejected = Rejections()
        metrics = BotMetrics(rejections=rejected)
        await metrics.watch_store(store)
        delivery = SlackDelivery.build(settings, store) if settings.slack_bot_token else None
        if delivery is not None:
            metrics.watch_slack(delivery.client)
        teams = None
        if settings.teams_app_id:   # Microsoft's SDK is imported only for a bot that uses Teams
            from bot.teams.runtime import TeamsDelivery
            teams = TeamsDelivery.build(settings, store, teams_connections)
        told: list[Notifier] = [d.notifier for d in (delivery, teams) if d is not None]
        notifier: Notifier = (told[0] if len(told) == 1 else FanoutNotifier(told)) \
            if told else NullNotifier()
        svc = Deps(
            store=store,
            book=book,
            config=settings.refund_config(),
            checkfront=CheckfrontClient(
                settings.checkfront_base_url,
                settings.checkfront_api_key.get_secret_value(),
                settings.checkfront_api_secret.get_secret_value(),
                event_hooks=metrics.httpx_hooks(CHECKFRONT),
                transport=CheckfrontTransport(on_lost=metrics.httpx_lost(CHECKFRONT)),
            ),
            stripe=StripeGateway(
                settings.stripe_secret_key.get_secret_value(),
                api_base=settings.stripe_api_base,
                max_network_retries=settings.stripe_max_network_retries,
                timeout=settings.stripe_timeout_seconds,
                max_requests_per_second=settings.stripe_max_requests_per_second,
                request_burst=settings.stripe_request_burst,
                http_client=metrics.stripe_http_client(timeout=settings.stripe_timeout_seconds),
            ),
            notifier=notifier,
            telemetry=metrics,
        )
        worker = Worker(svc, concurrency=settings.worker_concurrency)
        metrics.watch_worker(worker)
        app = web.Application(client_max_size=settings.max_body_bytes)
        app[CONTEXT_KEY] = AppContext(
            svc=svc,
            worker=worker,
            checkfront_webhook_secret=settings.checkfront_webhook_secret.get_secret_value(),
            checkfront_webhook_auth=settings.checkfront_webhook_auth,
            stripe_webhook_secret=settings.stripe_webhook_secret.get_secret_value(),
            max_body_bytes=settings.max_body_bytes,
            rejections=rejected,
        )
        checkfront_path = "/webhooks/checkfront"
        if settings.checkfront_webhook_auth == "path":
            checkfront_path += "/{token}"
        app.router.add_post(checkfront_path, intake(checkfront_webhook.receive, worker.guard))
        app.router.add_post("/webhooks/stripe", intake(stripe_webhook.receive, worker.guard))
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics.handler(
            settings.metrics_token.get_secret_value() if settings.metrics_token else None))
        app.on_response_prepare.append(metrics.webhook_answered)
        slack = SlackRuntime.build(settings, svc, worker, delivery, rejected) \
            if delivery else None
        if slack is not None:
            slack.mount(app)
        teams_rt = None
        if teams is not None:
            from bot.teams.runtime import TeamsRuntime
            teams_rt = TeamsRuntime(settings, svc, teams)
            teams_rt.mount(app)
        scheduler = None
        if settings.scheduler_enabled:
            poster = DigestPoster(svc, settings.zone, chart=settings.digest_chart,
                                  journal=settings.journal_accounts()
                                  if settings.digest_journal else None,
                                  journal_format=settings.journal_format,
                                  outbox=slack.outbox if slack else None,
                                  channels=slack.notifier.channels if slack else None)
            on_digest, on_daily_failed = poster, poster.run_failed
            if teams_rt is not None:
                from bot.teams.digest import TeamsDigestPoster
                in_teams = TeamsDigestPoster(
                    svc, settings.zone, teams_rt.delivery.outbox, settings.teams_digest_channel
                    or settings.teams_approvals_channel, chart=settings.digest_chart)
                on_digest = both(poster, in_teams)
                on_daily_failed = both(poster.run_failed, in_teams.run_failed)
            scheduler = build_scheduler(
                svc, tz=settings.zone, daily_at=settings.digest_at, on_digest=on_digest,
                anomaly_every=settings.anomaly_check_at,
                misfire_grace_time=settings.scheduler_misfire_grace_seconds,
                on_nudge=NudgePoster(store, slack.outbox, slack.deps.rules) if slack else None,
                remind_after=_hours(settings.reminder_after_hours),
                escalate_after=_hours(settings.escalate_after_hours),
                on_review=ReviewPoster(svc, settings.zone, settings.promotion_rules(),
                                       outbox=slack.outbox if slack else None,
                                       channels=slack.notifier.channels if slack else None),
                review_at=settings.review_at, on_daily_failed=on_daily_failed)
            metrics.watch_scheduler(scheduler)
        bot = cls(settings=settings, svc=svc, worker=worker, web=app, slack=slack,
                  scheduler=scheduler, rejections=rejected, metrics=metrics, teams=teams_rt)
        if settings.smtp_url:
            folder = settings.customer_templates_dir
            bot.mail = CustomerMail(svc, SmtpMailer(settings.smtp_url),
                                    settings.customer_settings(),
                                    Templates(Path(folder) if folder else None))
        bot.readiness = Readiness(store, worker, scheduler, slack.outbox if slack else None,
                                  settings.outbox_stall_seconds,
                                  stopping=lambda: bot._stop_by is not None)
        app.router.add_get("/readyz", bot.readiness.handler())
        metrics.watch_readiness(bot.readiness.checks)
        app.on_startup.append(bot._on_startup)
        app.on_shutdown.append(bot._on_shutdown)
        app.on_cleanup.append(bot._on_cleanup)
        return bot

    async def _on_startup(self, _app: web.Application) -> None:
        # what is loaded by now (modules, clients, the policy book) lives as long as the bot:
        # out of the collector's sight, a full collection no longer walks it (~70 ms a pause,
        # every few seconds under load, that every request in flight waited for)
        gc.freeze()
        if self.slack is not None:
            await self.slack.start()
        if self.teams is not None:
            self.teams.start()
        await self.worker.start()   # cases a crash left executing or approved: run first
        if self.slack is not None:     # then the departure runs a crash left running
            deps = self.slack.deps
            self.worker.spawn(lambda: departure.resume(deps), name="departure:resume")
        if self.scheduler is not None:
            self.scheduler.start()
        if self.mail is not None:
            await self.mail.start()

    async def _on_shutdown(self, _app: web.Application) -> None:
        """Before aiohttp waits for the requests in flight: the grace period starts."""
        await self._stop_taking_work()

    async def _on_cleanup(self, _app: web.Application) -> None:
        await self.close()

    async def _stop_taking_work(self) -> None:
        if self._stop_by is None:
            self._stop_by = time.monotonic() + self.settings.shutdown_grace_seconds
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.slack is not None:
            await self.slack.stop_intake()

    def _grace_left(self) -> float:
        return 0.0 if self._stop_by is None else max(0.0, self._stop_by - time.monotonic())

    async def close(self) -> None:
        """Stop within what is left of the grace period, then close the clients and store."""
        await self._stop_taking_work()
        await self.worker.stop(grace=self._grace_left())
        if self.mail is not None:
            await self.mail.stop()
        if self.slack is not None:
            await self.slack.stop(grace=self._grace_left())
        if self.teams is not None:
            await self.teams.stop(grace=self._grace_left())
        if self.svc.checkfront is not None:
            await self.svc.checkfront.aclose()
        if self.svc.stripe is not None:
            await self.svc.stripe.close()
        await self.svc.store.close()


def both(*posters: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """One digest job for both platforms: each poster queues its own outbox rows."""
    async def post(*args: object) -> None:
        for poster in posters:
            await poster(*args)
    return post


def _hours(hours: float) -> timedelta | None:
    """A setting in hours as a wait; 0 turns it off (None)."""
    return timedelta(hours=hours) if hours > 0 else None


def intake(handler: Handler, guard: LoopGuard) -> Handler:
    """A webhook handler that tells the worker's loop guard while it runs (`bot.loop_guard`):
    while webhooks arrive, the worker starts its next case only when the loop can spare it."""

    async def receive(request: web.Request) -> web.StreamResponse:
        guard.intake_began()
        try:
            return await handler(request)
        finally:
            guard.intake_ended()

    return receive


async def healthz(request: web.Request) -> web.Response:
    """Liveness, what is waiting and how many requests were rejected; 503 when the store
    cannot be read."""
    ctx = AppContext.of(request.app)
    try:
        automation = await automation_state(ctx.svc.store)
        version = await ctx.svc.store.schema_version()
        waiting = await backlog(ctx.svc.store)
    except Exception as exc:  # the answer must say "not ok", not fail
        log.exception("health check failed")
        return web.json_response({"ok": False, "error": exc.__class__.__name__}, status=503)
    return web.json_response({"ok": True, "schema": version, "paused": automation.paused,
                              "backlog": waiting, "rejected": ctx.rejections.by_source()})


_PATH_TOKEN = re.compile(r"(/webhooks/checkfront/)[^/?#]+")


def masked_path(path: str) -> str:
    """A request path fit for a log: the Checkfront webhook's token segment as `***`."""
    return _PATH_TOKEN.sub(r"\1***", path)


class MaskedAccessLogger(AbstractAccessLogger):
    """aiohttp's access line (remote, request line, status, size, time, user agent) with the
    Checkfront webhook's path token masked: the token is that webhook's only credential."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse,
            time: float) -> None:
        self.logger.info('%s "%s %s HTTP/%d.%d" %d %d %.6fs "%s"', request.remote or "-",
                         request.method, masked_path(request.path_qs), request.version.major,
                         request.version.minor, response.status, response.body_length, time,
                         request.headers.get("User-Agent", "-"))

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def serve(settings: Settings) -> None:
    """Run until interrupted (blocking)."""
    logs.setup(level=settings.log_level, fmt=settings.log_format or "json")

    async def application() -> web.Application:
        bot = await Bot.create(settings)
        log.info("refund bot on http://%s:%s (mode %s)", settings.host, settings.port,
                 settings.mode)
        return bot.web

    web.run_app(application(), host=settings.host, port=settings.port, print=None,
                access_log_class=MaskedAccessLogger,
                shutdown_timeout=settings.shutdown_grace_seconds)
