"""The Checkfront client's HTTP-level rules: the base address it accepts (https, plain http on
loopback only), the Basic `Authorization` header of a token pair, which redirect may carry
credentials, a `Retry-After` in seconds or as a date, and an answer read as JSON (amounts as
`Decimal`) or as the `checkfront_errors` error its status means. Nothing here sends a request
(`checkfront.CheckfrontClient` does) and nothing here logs.
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
import time
from decimal import Decimal
from typing import Any

import httpx

from services.clients.checkfront_errors import (
    BookingNotFound,
    CheckfrontAuthError,
    CheckfrontError,
)

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")   # control characters, line breaks kept


def normalise_base(base_url: str) -> str:
    url = httpx.URL(base_url.strip().rstrip("/"))
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("Checkfront base URL must look like https://your-company.checkfront.com")
    if url.scheme == "http" and url.host not in _LOOPBACK:
        raise ValueError("Checkfront base URL must use https (plain http only for loopback)")
    path = url.path.rstrip("/").removesuffix("/api/3.0")
    return f"{url.scheme}://{url.netloc.decode()}{path}"


def basic_authorization(api_key: str, api_secret: str) -> str:
    """The `Authorization` header httpx's `BasicAuth` writes for the pair."""
    token = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode("ascii")
    return f"Basic {token}"


def may_carry_credentials(origin: httpx.URL, target: httpx.URL) -> bool:
    """Credentials follow a redirect to the same host, or to another host over https."""
    if target.scheme not in ("http", "https"):
        return False
    return target.host == origin.host or target.scheme == "https"


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        raise CheckfrontError(
            "Checkfront returned a response that is not JSON.", status=response.status_code
        ) from None
    if not isinstance(data, dict):
        raise CheckfrontError("Checkfront returned an unexpected response.")
    if "error" in data and "request" not in data:
        raise CheckfrontError(
            f"Checkfront refused the request: {_error_text(data)}", status=response.status_code
        )
    return data


def client_error(response: httpx.Response, path: str) -> CheckfrontError:
    status = response.status_code
    if status in (401, 403):
        return CheckfrontAuthError(
            f"Checkfront rejected the API credentials (HTTP {status}).", status=status
        )
    if status == 404:
        ref = path.split("/")[1] if path.startswith("booking/") else path
        return BookingNotFound(f"Checkfront has no booking {ref}.", status=status)
    try:
        detail = _error_text(json.loads(response.content))
    except ValueError:
        detail = "no details"
    return CheckfrontError(
        f"Checkfront refused the request (HTTP {status}): {detail}", status=status
    )


def _error_text(data: Any) -> str:
    if isinstance(data, dict):
        for key in ("error_description", "message", "error"):
            value = data.get(key)
            if isinstance(value, dict):
                return _error_text(value)
            if value:
                return CONTROL.sub("", str(value))[:200]
    return "no details"


def transport_message(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "Checkfront did not answer in time."
    return "Could not connect to Checkfront."


def path_for_log(path: str) -> str:
    return path.split("?", 1)[0]
