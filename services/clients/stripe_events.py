"""Stripe's webhooks: the `Stripe-Signature` check over the raw body, and the signed event."""

from __future__ import annotations

import json
from typing import Any

import stripe

from services.errors import DomainError


class InvalidStripeSignature(DomainError, ValueError):
    """A webhook body whose Stripe-Signature does not check out (or is stale)."""


def verify_event(
    payload: bytes, sig_header: str, secret: str, tolerance: int = 300
) -> dict[str, Any]:
    """Check a webhook's `Stripe-Signature` over the raw body and return the event as a dict."""
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, sig_header, secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        raise InvalidStripeSignature(exc.user_message or "invalid signature") from None
    except UnicodeDecodeError:
        raise InvalidStripeSignature("webhook body is not UTF-8") from None
    try:
        event = json.loads(text)
    except ValueError:
        raise InvalidStripeSignature("signed body is not JSON") from None
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        raise InvalidStripeSignature("signed body is not a Stripe event")
    return event
