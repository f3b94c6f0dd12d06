"""The Stripe stand-in's account side: API keys (secret and restricted), the account, and the
webhook endpoints list, in Stripe's terms.

- Keys: any `sk_test_...` key is a secret key with every permission. A restricted key
  (`rk_test_...`) works only once registered with `AccountKeys.restrict(key, permissions)`;
  an unknown one is refused with 401 like a mistyped secret key. Permissions are Stripe's
  `rak_<resource>_<read|write>` names; write implies read, as in Stripe's dashboard.
- A restricted key calling an endpoint it lacks the permission for gets Stripe's 403
  `invalid_request_error` ("... Having the 'rak_refund_write' permission would allow this
  request to continue."), which stripe-python raises as `PermissionError`. The check happens
  before the parameters are read, so a probe with no parameters tells permission apart from
  validation (400) or a missing object (404).
- `GET /v1/account` (the key's own account) is refused to every restricted key: Stripe has no
  restricted permission for it ("This is a restricted API key, but the required permissions
  are not available for use by restricted keys.").
- `GET /v1/webhook_endpoints` lists the endpoint configured on the stand-in, with its
  `enabled_events` (`["*"]` when it takes every type); it needs `rak_webhook_read`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sandbox.stripe_objects import new_id
from sandbox.stripe_params import ApiError
from sandbox.stripe_webhooks import Endpoint

SECRET_PREFIX = "sk_test_"
RESTRICTED_PREFIX = "rk_test_"
NOT_FOR_RESTRICTED = "not_for_restricted_keys"

# (HTTP method, route) -> the permission a restricted key needs for it
ROUTE_PERMISSIONS: dict[tuple[str, str], str] = {
    ("GET", "/v1/account"): NOT_FOR_RESTRICTED,
    ("POST", "/v1/payment_intents"): "rak_payment_intent_write",
    ("GET", "/v1/payment_intents/{id}"): "rak_payment_intent_read",
    ("POST", "/v1/payment_intents/{id}/confirm"): "rak_payment_intent_write",
    ("GET", "/v1/charges/{id}"): "rak_charge_read",
    ("POST", "/v1/refunds"): "rak_refund_write",
    ("GET", "/v1/refunds"): "rak_refund_read",
    ("GET", "/v1/refunds/{id}"): "rak_refund_read",
    ("POST", "/v1/refunds/{id}/cancel"): "rak_refund_write",
    ("GET", "/v1/events"): "rak_event_read",
    ("GET", "/v1/events/{id}"): "rak_event_read",
    ("GET", "/v1/disputes/{id}"): "rak_dispute_read",
    ("POST", "/v1/disputes/{id}"): "rak_dispute_write",
    ("POST", "/v1/disputes/{id}/close"): "rak_dispute_write",
    ("POST", "/v1/payment_links"): "rak_payment_link_write",
    ("GET", "/v1/payment_links/{id}"): "rak_payment_link_read",
    ("GET", "/v1/webhook_endpoints"): "rak_webhook_read",
    ("GET", "/v1/balance_transactions"): "rak_balance_read",
    ("GET", "/v1/balance_transactions/{id}"): "rak_balance_read",
    ("GET", "/v1/payouts"): "rak_payout_read",
    ("GET", "/v1/payouts/{id}"): "rak_payout_read",
    ("POST", "/v1/test_helpers/payouts/run"): "rak_payout_write",
    ("POST", "/v1/test_helpers/refunds/{id}/hold_from_payouts"): "rak_refund_write",
}


@dataclass
class AccountKeys:
    """The account behind the stand-in and the restricted keys registered on it."""

    account_id: str = field(default_factory=lambda: new_id("acct_")[:21])
    display_name: str = "Sandbox Tours"
    country: str = "US"
    default_currency: str = "usd"
    restricted: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    _endpoint_ids: dict[str, str] = field(default_factory=dict, repr=False)

    def restrict(self, key: str, permissions: Collection[str]) -> str:
        """Register a restricted key with these `rak_...` permissions; returns the key."""
        if not key.startswith(RESTRICTED_PREFIX) or len(key) <= len(RESTRICTED_PREFIX):
            raise ValueError("a restricted test key starts with rk_test_")
        self.restricted[key] = frozenset(permissions)
        return key

    def authenticate(self, key: str) -> str:
        """The key, when the stand-in knows it; 401 in Stripe's words otherwise."""
        if key.startswith(SECRET_PREFIX) and len(key) > len(SECRET_PREFIX):
            return key
        if key in self.restricted:
            return key
        shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "***"
        raise ApiError(401, f"Invalid API Key provided: {shown}", stored=False)

    def authorize(self, key: str, method: str, route: str | None) -> None:
        """Stripe's 403 when a restricted key lacks the permission `route` needs."""
        granted = self.restricted.get(key)
        if granted is None or route is None:
            return  # a secret key, or no such route (answered 404 as usual)
        needed = ROUTE_PERMISSIONS.get((method, route))
        if needed is None or _grants(granted, needed):
            return
        shown = f"{key[:8]}{'*' * max(0, len(key) - 14)}{key[-6:]}"
        message = (f"The provided key '{shown}' does not have the required permissions for "
                   f"this endpoint on account '{self.account_id}'. ")
        if needed == NOT_FOR_RESTRICTED:
            message += ("This is a restricted API key, but the required permissions are not "
                        "available for use by restricted keys.")
        else:
            message += f"Having the '{needed}' permission would allow this request to continue."
        raise ApiError(403, message, stored=False)

    def account_json(self) -> dict[str, Any]:
        return {
            "id": self.account_id,
            "object": "account",
            "business_profile": {"name": self.display_name},
            "business_type": "company",
            "capabilities": {"card_payments": "active", "transfers": "active"},
            "charges_enabled": True,
            "country": self.country,
            "default_currency": self.default_currency,
            "details_submitted": True,
            "payouts_enabled": True,
            "settings": {"dashboard": {"display_name": self.display_name, "timezone": "UTC"}},
            "type": "standard",
        }

    def webhook_endpoints_json(self, endpoint: Endpoint | None) -> dict[str, Any]:
        data = []
        if endpoint is not None:
            endpoint_id = self._endpoint_ids.setdefault(endpoint.url, new_id("we_"))
            events = sorted(endpoint.events) if endpoint.events is not None else ["*"]
            data.append({
                "id": endpoint_id, "object": "webhook_endpoint", "api_version": None,
                "application": None, "created": 1_700_000_000, "description": None,
                "enabled_events": events, "livemode": False, "metadata": {},
                "status": "enabled", "url": endpoint.url,
            })
        return {"object": "list", "data": data, "has_more": False,
                "url": "/v1/webhook_endpoints"}


def _grants(granted: frozenset[str], needed: str) -> bool:
    if needed in granted:
        return True
    return needed.endswith("_read") and needed.removesuffix("_read") + "_write" in granted
