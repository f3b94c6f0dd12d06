"""POST /webhooks/stripe: verify Stripe-Signature (300 s tolerance), bound the event's depth,
de-duplicate by event id, store, 200; the worker applies it. The 200 follows the durable
insert; when the store cannot take the event the answer is 503 with Retry-After (Stripe
delivers it again).
"""

from __future__ import annotations

from aiohttp import web

from handlers.http.bodies import MAX_DEPTH, json_too_deep
from handlers.http.context import DUPLICATE_TEXT, AppContext, ok, read_limited, store_unavailable
from services import correlation
from services.clients.stripe_events import InvalidStripeSignature, verify_event
from services.intake import rejections
from services.intake.events import store_event
from services.store.writer import StoreUnavailable


async def receive(request: web.Request) -> web.Response:
    ctx = AppContext.of(request.app)
    body = await read_limited(request, ctx.max_body_bytes, source="stripe")
    if isinstance(body, web.Response):
        return body
    try:
        event = verify_event(body, request.headers.get("Stripe-Signature", ""),
                             ctx.stripe_webhook_secret)
    except InvalidStripeSignature:
        ctx.rejections.reject("stripe", rejections.BAD_SIGNATURE)
        return web.json_response({"error": "invalid signature"}, status=400)
    except RecursionError:  # signed, but nested too deep for the JSON parser
        event = None
    if event is None or json_too_deep(body, event, MAX_DEPTH):
        why = f"event nested deeper than {MAX_DEPTH} levels"
        ctx.rejections.reject("stripe", rejections.TOO_DEEP)
        return web.json_response({"error": why}, status=400)
    event_id = str(event.get("id") or "")
    kind = str(event.get("type") or "")
    if not event_id or not kind:
        ctx.rejections.reject("stripe", rejections.MALFORMED)
        return web.json_response({"error": "event without id or type"}, status=400)
    try:
        stored = await store_event(ctx.svc.store, source="stripe", event_id=event_id,
                                   kind=kind, payload=event,
                                   salt=ctx.svc.config.customer_hash_salt)
    except StoreUnavailable as exc:
        return store_unavailable("stripe", exc)
    if stored is None:
        return ok(DUPLICATE_TEXT)
    correlation.begin(correlation.for_event(stored.row_id))  # this request's lines from here
    ctx.worker.submit(stored)
    return ok()
