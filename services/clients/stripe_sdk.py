"""Two costs of the official Stripe client that buy nothing here, taken off without changing
what it does.

- Its request log: for every call the client formats a `logfmt` line of the request and of the
  response, the whole response body included (decoded, searched by a regular expression,
  `repr`'d: a listing page of 100 refunds is ~50 kB), and only then asks whether anyone
  listens. `quiet_sdk_logging()` puts a check first: the same lines, formatted by the client's
  own functions, when its console log (`stripe.log`, `STRIPE_LOG`) or the "stripe" logger
  would show them; nothing formatted otherwise.
- Its JSON: `raw_request_async` parses every answer with `json.loads(...,
  object_pairs_hook=OrderedDict)`. `request_json` (and `get_json`, its GET) makes the same call
  through the client (its auth, API version, retries, idempotency key and error mapping) and
  parses a successful answer with orjson into plain dicts; an error answer, or one orjson
  refuses (an integer past 64 bits, invalid JSON), goes to the client's own reading, which
  answers or raises as before.
"""

from __future__ import annotations

import logging
from functools import wraps
from typing import Any

import orjson
import stripe
from stripe import _api_requestor, _util

_logger = logging.getLogger("stripe")


def _lazy(log_line: Any, level: int, console: tuple[str, ...]) -> Any:
    if getattr(log_line, "_lazy", False):
        return log_line

    @wraps(log_line)
    def guarded(message: str, **params: Any) -> None:
        if _util._console_log_level() in console or _logger.isEnabledFor(level):
            log_line(message, **params)

    guarded._lazy = True  # type: ignore[attr-defined]
    return guarded


def quiet_sdk_logging() -> None:
    """The client's request log formatted only when something would show it (idempotent)."""
    _api_requestor.log_debug = _lazy(_api_requestor.log_debug, logging.DEBUG, ("debug",))
    _api_requestor.log_info = _lazy(_api_requestor.log_info, logging.INFO, ("debug", "info"))


async def get_json(client: stripe.StripeClient, path: str, params: dict[str, Any]) -> Any:
    """`client.raw_request_async("get", path, **params).data`, a successful answer parsed by
    orjson (plain dicts, the same values). A `/v1/` path only."""
    return await request_json(client, "get", path, params)


async def request_json(client: stripe.StripeClient, method: str, path: str,
                       params: dict[str, Any], *, idempotency_key: str | None = None) -> Any:
    """`client.raw_request_async(method, path, **params, idempotency_key=...).data`, a
    successful answer parsed by orjson (plain dicts, the same values). A `/v1/` path only;
    the key, when given, is the request's option as there (sent, and kept on every retry)."""
    if not path.startswith("/v1/"):
        raise ValueError(f"not a v1 path: {path}")
    requestor = client._requestor
    options: Any = {} if idempotency_key is None else {"idempotency_key": idempotency_key}
    body, code, headers = await requestor.request_raw_async(
        method, path, params=params, options=options, base_address="api", api_mode="V1",
        usage=["raw_request"])
    if 200 <= code < 300:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return requestor._interpret_response(body, code, headers, "V1").data
