"""What the HTTP handlers share: the `AppContext`, the `EventQueue` they hand events to.

The context holds the services, the event queue, the counter of rejected requests and a few
settings; the bot passes its worker in as the queue, and the handlers know it only by that
protocol. `read_limited` reads a body within its size limit; `store_unavailable` is the answer
when a webhook could not be stored; `ok` is a webhook's 200, as `web.json_response` writes it
for the same dict, without encoding the same few texts again per request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from services.deps import Deps
from services.intake import rejections
from services.intake.events import StoredEvent
from services.intake.rejections import Rejections

log = logging.getLogger(__name__)

CONTEXT_KEY: web.AppKey[AppContext] = web.AppKey("refund_bot_context")


class EventQueue(Protocol):
    """Where a stored webhook event goes to be applied after the answer."""

    def submit(self, event: StoredEvent) -> None: ...


@dataclass
class AppContext:
    svc: Deps
    worker: EventQueue
    checkfront_webhook_secret: str
    checkfront_webhook_auth: str
    stripe_webhook_secret: str
    max_body_bytes: int
    rejections: Rejections = field(default_factory=Rejections)

    @staticmethod
    def of(app: web.Application) -> AppContext:
        return app[CONTEXT_KEY]


async def read_limited(request: web.Request, limit: int, *, source: str) -> bytes | web.Response:
    """The raw body, or a 413 answer (counted) when it is larger than `limit`."""
    ctx = AppContext.of(request.app)
    if request.content_length is not None and request.content_length > limit:
        body = None
    else:
        body = await request.content.read(limit + 1)
    if body is None or len(body) > limit:
        ctx.rejections.reject(source, rejections.TOO_LARGE)
        return web.json_response({"error": "body too large"}, status=413)
    return body


OK_TEXT = '{"ok": true}'              # json.dumps({"ok": True})
DUPLICATE_TEXT = '{"ok": true, "duplicate": true}'


def ok(text: str = OK_TEXT) -> web.Response:
    """A 200 with the JSON `text`: what `web.json_response` answers for the dict it encodes."""
    return web.Response(text=text, content_type="application/json")


RETRY_AFTER_SECONDS = 5


def store_unavailable(source: str, error: Exception) -> web.Response:
    """A webhook the store could not take (closed, disk error, locked too long): our failure,
    not the sender's, so 503 with Retry-After (Checkfront and Stripe deliver it again), not a
    rejection. The log names the error only: its text is SQLite's, never the body's."""
    log.error("%s webhook not stored, answered 503: %s", source, error)
    return web.json_response({"error": "store unavailable, retry later"}, status=503,
                             headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
