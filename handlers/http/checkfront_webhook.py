"""POST /webhooks/checkfront: authenticate, size-check, parse (depth-bounded), de-duplicate,
store, 200.

Checkfront documents neither an event id nor a signature: the body's hash is the id and a
shared secret (in the URL path, or as the HTTP Basic password) authenticates the sender.
The policy file's waiver rules are read against the body before it is stored (its booking form
fields are not kept: `services.quoting.waiver_rules`). Processing happens after the answer, in
the worker. The 200 follows the durable insert; when the store cannot take the event the answer
is 503 with Retry-After (Checkfront sends it again).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from handlers.http.bodies import MAX_DEPTH, json_too_deep, parse_json, too_deep
from handlers.http.context import DUPLICATE_TEXT, AppContext, ok, read_limited, store_unavailable
from services import correlation
from services.intake import rejections
from services.intake.events import body_hash, checkfront_kind, store_event
from services.quoting import waiver_rules
from services.store.writer import StoreUnavailable


async def receive(request: web.Request) -> web.Response:
    ctx = AppContext.of(request.app)
    if not _authenticated(request, ctx):
        ctx.rejections.reject("checkfront", rejections.UNAUTHORIZED)
        return web.json_response({"error": "unauthorized"}, status=401)
    body = await read_limited(request, ctx.max_body_bytes, source="checkfront")
    if isinstance(body, web.Response):
        return body
    try:
        payload = parse_body(body, request.content_type)
    except ValueError as exc:
        ctx.rejections.reject("checkfront", rejections.MALFORMED)
        return web.json_response({"error": f"malformed body: {exc}"}, status=400)
    waiver_rules.mark(ctx.svc.book.waiver_rules, payload)   # before its form fields go
    try:
        event = await store_event(ctx.svc.store, source="checkfront", event_id=body_hash(body),
                                  kind=checkfront_kind(payload), payload=payload,
                                  salt=ctx.svc.config.customer_hash_salt)
    except StoreUnavailable as exc:
        return store_unavailable("checkfront", exc)
    if event is None:
        return ok(DUPLICATE_TEXT)
    correlation.begin(correlation.for_event(event.row_id))  # this request's lines from here
    ctx.worker.submit(event)
    return ok(f'{{"ok": true, "event": {json.dumps(event.event_id)}}}')


def _authenticated(request: web.Request, ctx: AppContext) -> bool:
    secret = ctx.checkfront_webhook_secret.encode()
    if ctx.checkfront_webhook_auth == "path":
        given = request.match_info.get("token", "").encode()
        return bool(given) and hmac.compare_digest(given, secret)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        _, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(password.encode(), secret)


def parse_body(body: bytes, content_type: str) -> dict[str, Any]:
    """JSON, or a form body with PHP-style keys (`booking[order][total]=...`)."""
    if not body.strip():
        raise ValueError("empty body")
    if content_type == "application/x-www-form-urlencoded":
        payload = _nest(parse_qsl(_text(body), keep_blank_values=True, strict_parsing=True))
        deep = too_deep(payload, MAX_DEPTH)
    else:
        payload = _json(body)
        deep = json_too_deep(body, payload, MAX_DEPTH)
    if deep:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return payload


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = parse_json(body)
    except UnicodeDecodeError:   # json.loads of bytes that are not UTF-8 (nor UTF-16/32)
        raise ValueError("not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(payload, dict):
        raise ValueError("JSON body must be an object")
    return payload


_KEY = re.compile(r"[^\[\]]+|\[\]")


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = _KEY.findall(key)
        if not parts:
            raise ValueError(f"bad form key {key!r}")
        if len(parts) > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        node: Any = root
        for part, following in zip(parts, [*parts[1:], None], strict=True):
            if following is None:
                _put(node, part, value)
            else:
                nxt: Any = [] if following == "[]" else {}
                node = _child(node, part, nxt)
    return root


def _child(node: Any, part: str, default: Any) -> Any:
    if isinstance(node, list):
        node.append(default)
        return default
    if not isinstance(node, dict):
        raise ValueError("conflicting form keys")
    return node.setdefault(part, default)


def _put(node: Any, part: str, value: str) -> None:
    if isinstance(node, list):
        node.append(value)
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise ValueError("conflicting form keys")
