"""Stripe failures in the project's terms: `StripeGatewayError`, its kinds, and the reading of
the official client's exceptions into them.

A 5xx, timeout or connection error on a write is `unavailable` with `maybe_applied=True`: the
request may have been executed although no answer said so.
"""

from __future__ import annotations

from typing import Literal

import stripe

from services.errors import DomainError

ErrorKind = Literal[
    "over_refund", "invalid", "rate_limited", "unavailable", "idempotency", "auth", "not_found"
]
_OVER_REFUND_CODES = frozenset({"charge_already_refunded", "amount_too_large"})


class StripeGatewayError(DomainError):
    """A Stripe failure in the project's terms.

    maybe_applied: the request may have been executed although no answer said so (timeouts,
    connection errors, 5xx on a write). Check before treating the refund as not made.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        maybe_applied: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.code = code
        self.http_status = http_status
        self.request_id = request_id
        self.maybe_applied = maybe_applied

    def __repr__(self) -> str:
        return (
            f"StripeGatewayError(kind={self.kind!r}, message={self.message!r}, "
            f"code={self.code!r}, http_status={self.http_status!r})"
        )


def gateway_error(exc: stripe.StripeError, *, writes: bool) -> StripeGatewayError:
    """The project's error for an exception of the official client; `writes`: the failed
    request was a write, so an unanswered one may have been applied."""
    status = exc.http_status
    message = exc.user_message or type(exc).__name__
    code = exc.code

    def error(kind: ErrorKind, maybe_applied: bool = False) -> StripeGatewayError:
        return StripeGatewayError(
            kind, message, code=code, http_status=status, request_id=exc.request_id,
            maybe_applied=maybe_applied,
        )

    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return error("auth")
    if isinstance(exc, stripe.IdempotencyError):
        return error("idempotency")
    if isinstance(exc, stripe.RateLimitError):
        return error("rate_limited")
    if isinstance(exc, stripe.InvalidRequestError):
        if status == 404 or code == "resource_missing":
            return error("not_found")
        if code in _OVER_REFUND_CODES or (
            message.startswith("Refund amount") and "is greater than" in message
        ):
            return error("over_refund")
        return error("invalid")
    if isinstance(exc, stripe.CardError):
        return error("invalid")
    # Connection errors, timeouts, 409 and 5xx: the write may or may not have happened.
    return error("unavailable", maybe_applied=writes)
