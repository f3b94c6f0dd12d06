"""`/metrics`: what the bot is doing, in the Prometheus text format, through prometheus-client.

One `BotMetrics` per bot, with a registry of its own (two bots in one process, as in tests,
count apart). Three kinds of source, each kept off the hot paths:

- counters the bot bumps as things happen (a counter's increment, no store query): webhooks
  received per source and HTTP status (an aiohttp response signal), events applied per outcome
  (the worker, through `services.telemetry`), calls to Stripe, Checkfront and Slack (latency
  histograms and errors by kind, 429s included; instrumented where the clients are built),
  scheduler job runs and their last success (an APScheduler listener). Checkfront is timed by
  httpx event hooks on its answers and by its transport when none came (`network`);
- what is kept in memory anyway, read at scrape time: rejected requests per source and reason
  (`Rejections`), the worker's queue and events in flight, and `/readyz`'s checks;
- the store, read at scrape time on its read-only connection (`StoreCollector`, in
  `bot.metrics_store` with the in-memory `MemoryCollector`): cases per
  state, events waiting, the outbox's depth and oldest unsent post, the automation switch,
  open reconciliation problems; and what happened since the bot started, read off the audit
  chain's new rows (every state change has its audit row, committed with it): case
  transitions, cases opened, refunds made and their amounts per currency (minor units; money
  in the domain stays an int, the metric's value is a float as Prometheus has no other).

Every store query is an index look-up or a primary-key range (tests/test_metrics.py reads
their plans), so a scrape stays fast at 100k cases; a scrape that cannot read the store says
`refund_bot_store_up 0` instead of failing.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import httpx
import stripe
from aiohttp import web
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from bot.metrics_store import PREFIX, MemoryCollector, StoreCollector
from services.intake.rejections import Rejections
from services.store.db import Store
from services.telemetry import event_outcome

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

log = logging.getLogger(__name__)

# seconds: a Slack post is ~0.1-0.5 s, a Stripe refund up to a few, a timeout 10-20
API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
WEBHOOK_PATHS = (("/webhooks/checkfront", "checkfront"), ("/webhooks/stripe", "stripe"),
                 ("/slack/events", "slack"))
STRIPE, CHECKFRONT, SLACK = "stripe", "checkfront", "slack"


def error_kind(status: int) -> str | None:
    """An HTTP answer's error kind, None when it is not an error."""
    if status < 400:
        return None
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    return "server_error" if status >= 500 else "client_error"


class BotMetrics:
    """The registry and every metric; implements `services.telemetry.Telemetry`."""

    def __init__(self, *, rejections: Rejections | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = Counter(f"{PREFIX}_webhooks_received", "Webhook requests received, "
                                "by source and the HTTP status answered", ["source", "status"],
                                registry=r)
        self._answered: dict[tuple[str, int], Any] = {}   # (source, status) -> its child
        self.events = Counter(f"{PREFIX}_events", "Webhook events applied by the worker, by "
                              "source and outcome (processed, retrying, failed, skipped, "
                              "store_error)", ["source", "outcome"], registry=r)
        self.api_seconds = Histogram(f"{PREFIX}_api_call_duration_seconds", "Calls to Stripe, "
                                     "Checkfront and Slack (each HTTP attempt; Slack: each "
                                     "method call), by service and operation",
                                     ["service", "operation"], buckets=API_BUCKETS, registry=r)
        self.api_errors = Counter(f"{PREFIX}_api_errors", "Failed calls to Stripe, Checkfront "
                                  "and Slack by kind (rate_limited is a 429)",
                                  ["service", "kind"], registry=r)
        self.job_runs = Counter(f"{PREFIX}_scheduler_job_runs", "Scheduled job runs by job and "
                                "outcome (success, error, missed)", ["job", "outcome"],
                                registry=r)
        self.job_success = Gauge(f"{PREFIX}_scheduler_job_last_success_timestamp_seconds",
                                 "When each scheduled job last ran to its end (Unix time)",
                                 ["job"], registry=r)
        self.store_collector = StoreCollector()
        r.register(self.store_collector)
        self.memory = MemoryCollector(rejections or Rejections())
        r.register(self.memory)

    # --- services.telemetry.Telemetry ------------------------------------------------------

    def event_done(self, source: str, outcome: str) -> None:
        self.events.labels(source, event_outcome(outcome)).inc()

    # --- the parts it watches ------------------------------------------------------------

    async def watch_store(self, store: Store) -> None:
        """Read the store at scrape time, counting the audit chain's rows from now on."""
        await self.store_collector.attach(store)

    def watch_worker(self, worker: Any) -> None:
        """The worker's `queued`, `in_flight` and `concurrency`, read at scrape time."""
        self.memory.worker = worker

    def watch_scheduler(self, scheduler: BaseScheduler) -> None:
        scheduler.add_listener(self.job_event,
                               EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)

    def job_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            outcome = "missed"
        elif event.exception is not None:
            outcome = "error"
        else:
            outcome = "success"
            self.job_success.labels(event.job_id).set(time.time())
        self.job_runs.labels(event.job_id, outcome).inc()

    async def webhook_answered(self, request: web.BaseRequest,
                               response: web.StreamResponse) -> None:
        """aiohttp's `on_response_prepare`: one count per webhook answered."""
        path = request.path
        for prefix, source in WEBHOOK_PATHS:
            if path.startswith(prefix):
                key = (source, response.status)
                child = self._answered.get(key)
                if child is None:   # the labelled counter, looked up once per source and status
                    child = self._answered[key] = self.webhooks.labels(source, str(key[1]))
                child.inc()
                return

    # --- the clients ---------------------------------------------------------------------

    def observe_call(self, service: str, operation: str, seconds: float,
                     kind: str | None) -> None:
        self.api_seconds.labels(service, operation).observe(seconds)
        if kind is not None:
            self.api_errors.labels(service, kind).inc()

    def stripe_http_client(self, *, timeout: float) -> stripe.AIOHTTPClient:
        """The Stripe SDK's aiohttp client, each request timed and its errors counted."""
        return TimedStripeHTTP(self, timeout=timeout)

    def httpx_hooks(self, service: str) -> dict[str, list[Callable[..., Any]]]:
        """httpx event hooks that time each request (to its answer's headers) and count its
        error statuses."""
        started = f"{PREFIX}.started"

        async def on_request(request: httpx.Request) -> None:
            request.extensions[started] = time.perf_counter()

        async def on_response(response: httpx.Response) -> None:
            request = response.request
            began = request.extensions.get(started)
            if began is not None:
                self.observe_call(service, f"{request.method} {_path_shape(request.url.path)}",
                                  time.perf_counter() - began, error_kind(response.status_code))

        return {"request": [on_request], "response": [on_response]}

    def httpx_lost(self, service: str) -> Callable[[httpx.Request, float], None]:
        """For a transport (`bot.checkfront_transport`): a request that got no answer (refused
        or lost connection, timeout), timed and counted as the `network` kind."""
        def lost(request: httpx.Request, seconds: float) -> None:
            self.observe_call(service, f"{request.method} {_path_shape(request.url.path)}",
                              seconds, "network")
        return lost

    def watch_slack(self, client: AsyncWebClient) -> None:
        """Time every Web API method call of `client` and count its errors: each 429, 5xx and
        lost link as it happens (retried or not), and what Slack refused (`ok: false`)."""
        client.retry_handlers.insert(0, CountingRetryHandler(self))
        call = client.api_call

        async def timed(api_method: str, **kwargs: Any) -> Any:
            began = time.perf_counter()
            kind = None
            try:
                return await call(api_method, **kwargs)
            except SlackApiError as exc:
                status = int(getattr(exc.response, "status_code", 200) or 200)
                kind = None if status == 429 or status >= 500 else "api_error"
                raise
            finally:
                self.observe_call(SLACK, api_method, time.perf_counter() - began, kind)

        client.api_call = timed  # type: ignore[method-assign]

    # --- the endpoint ----------------------------------------------------------------------

    def watch_readiness(self, checks: Callable[[], Awaitable[dict[str, str]]]) -> None:
        """`/readyz`'s checks, asked at scrape time (`refund_bot_ready`)."""
        self.memory.readiness = checks

    async def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition (and its content type) in the format the scraper's `Accept` asks
        for (Prometheus' text format by default, OpenMetrics on request), after reading the
        store."""
        await self.store_collector.refresh()
        await self.memory.refresh()
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    def handler(self, token: str | None) -> Callable[[web.Request], Any]:
        """GET /metrics; with `token`, only for `Authorization: Bearer <token>`."""
        expected = f"Bearer {token}".encode() if token else None

        async def metrics(request: web.Request) -> web.Response:
            if expected is not None:
                given = request.headers.get("Authorization", "").encode()
                if not hmac.compare_digest(given, expected):
                    return web.json_response({"error": "unauthorized"}, status=401,
                                             headers={"WWW-Authenticate": "Bearer"})
            body, content_type = await self.render(request.headers.get("Accept", ""))
            return web.Response(body=body, headers={"Content-Type": content_type})

        return metrics


_ID_SEGMENT = re.compile(r"/(?:[a-z]+_[A-Za-z0-9]+|\d+)(?=/|$)")
_WORD = re.compile(r"^[a-z_.]+$")


def _stripe_operation(method: str, url: str) -> str:
    """"POST /v1/refunds", "GET /v1/charges/{id}": ids out of the label."""
    path = unquote(urlsplit(url).path)   # as httpx.URL(url).path, at a tenth of its cost
    return f"{method.upper()} {_ID_SEGMENT.sub('/{id}', path)}"


def _path_shape(path: str) -> str:
    """A Checkfront path with its booking codes and ids as {id}."""
    parts = path.strip("/").split("/")
    return "/" + "/".join(p if _WORD.match(p) or p == "3.0" else "{id}" for p in parts)


class TimedStripeHTTP(stripe.AIOHTTPClient):
    """Each HTTP attempt the SDK makes (its own retries included) timed, errors counted.
    (The SDK's `request_async` reads through `request_stream_async`: only the first is timed,
    body included, so that an attempt counts once.)"""

    def __init__(self, metrics: BotMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics

    async def request_async(self, method: str, url: str, headers: Mapping[str, str],
                            post_data: Any = None) -> tuple[bytes, int, Mapping[str, str]]:
        began = time.perf_counter()
        kind: str | None = "network"
        try:
            answer = await super().request_async(method, url, headers, post_data)
            kind = error_kind(answer[1])
            return answer
        finally:
            self._metrics.observe_call(STRIPE, _stripe_operation(method, url),
                                   time.perf_counter() - began, kind)


class CountingRetryHandler(AsyncRetryHandler):
    """First among the Slack client's retry handlers: asked about every answer and every lost
    link, it counts the failures and never retries (the handlers after it do)."""

    def __init__(self, metrics: BotMetrics) -> None:
        super().__init__(max_retry_count=1 << 30)
        self._metrics = metrics

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None,
                               error: Exception | None = None) -> bool:
        if error is not None:
            self._metrics.api_errors.labels(SLACK, "network").inc()
        elif response is not None and (response.status_code == 429
                                       or response.status_code >= 500):
            self._metrics.api_errors.labels(SLACK, error_kind(response.status_code)).inc()
        return False
