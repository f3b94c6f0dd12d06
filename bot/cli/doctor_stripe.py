"""`doctor`'s Stripe checks: the key (kind, mode), the account, a restricted key's permissions,
and the webhook endpoints' enabled event types.

Through the official client, at `STRIPE_API_BASE` when set. A key Stripe refuses is a 401;
a restricted key (`rk_...`) missing a permission gets a 403 `PermissionError` naming the
`rak_...` permission. Stripe has no API listing a restricted key's permissions, so each one
the bot needs is probed with a call that cannot change anything: Stripe checks the key's
permission for an endpoint before it reads the request, so a probe without the parameters
it needs (a refund with no payment, an object id that does not exist) answers 403 when the
permission is missing and 400/404 when it is there. No probe can create a refund: Stripe
refuses one without a payment to refund.

`GET /v1/account` is not open to restricted keys at all (Stripe grants no permission for it):
with a restricted key its 403 says the key is valid, nothing more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import stripe

from bot.cli.doctor_report import Check, Status, fail, mask, ok, warn
from services.intake.routing import ROUTES

NAME = "stripe"
PROBE = "doctor_probe_nonexistent"
BOT_WEBHOOK_PATH = "/webhooks/stripe"

Call = Callable[[stripe.StripeClient], Awaitable[Any]]


@dataclass(frozen=True)
class Permission:
    name: str            # Stripe's permission, e.g. rak_refund_write
    dashboard: str       # how the API keys page names it
    used_for: str
    required: bool       # False: a feature a person starts from Slack; a warning when missing
    probe: Call


PERMISSIONS = (
    Permission("rak_refund_write", "Refunds: Write", "refunds (make, look up, list)", True,
               lambda c: c.v1.refunds.create_async({})),
    Permission("rak_payment_intent_read", "PaymentIntents: Read",
               "reading the payment of a booking before refunding it", True,
               lambda c: c.v1.payment_intents.retrieve_async(f"pi_{PROBE}")),
    Permission("rak_charge_read", "Charges: Read",
               "what is still refundable on a charge", True,
               lambda c: c.v1.charges.retrieve_async(f"ch_{PROBE}")),
    Permission("rak_dispute_write", "Disputes: Write",
               "dispute evidence and closing disputes from Slack", False,
               lambda c: c.v1.disputes.update_async(f"dp_{PROBE}", {})),
    Permission("rak_payment_intent_write", "PaymentIntents: Write",
               "retrying a failed payment from Slack", False,
               lambda c: c.v1.payment_intents.confirm_async(f"pi_{PROBE}")),
    Permission("rak_payment_link_write", "Payment Links: Write",
               "sending a payment link for a failed payment", False,
               lambda c: c.v1.payment_links.create_async({})),
    Permission("rak_balance_read", "Balance: Read",
               "settling refunds against balance transactions (SETTLEMENT_RECONCILE)", False,
               lambda c: c.v1.balance_transactions.retrieve_async(f"txn_{PROBE}")),
    Permission("rak_payout_read", "Payouts: Read",
               "finding the payout that carried each refund (SETTLEMENT_RECONCILE)", False,
               lambda c: c.v1.payouts.retrieve_async(f"po_{PROBE}")),
)


def key_kind(key: str) -> tuple[str, str] | None:
    """("secret" | "restricted", "test" | "live") from the key's prefix; None when neither."""
    for prefix, kind in (("sk_", "secret"), ("rk_", "restricted")):
        for mode in ("test", "live"):
            if key.startswith(f"{prefix}{mode}_"):
                return kind, mode
    return None


async def check_stripe(key: str, *, api_base: str | None, webhook_secret: str | None,
                       call_timeout: float) -> list[Check]:
    results: list[Check] = []
    if webhook_secret is not None and not webhook_secret.startswith("whsec_"):
        results.append(warn(f"{NAME} webhook secret", "STRIPE_WEBHOOK_SECRET does not start "
                            "with whsec_: copy the endpoint's signing secret from Developers > "
                            "Webhooks (signatures will not verify otherwise)"))
    kind = key_kind(key)
    shown = mask(key)
    if kind is None:
        hint = ("a publishable key cannot refund; " if key.startswith("pk_") else "")
        results.insert(0, fail(f"{NAME} key {shown}", f"{hint}set STRIPE_SECRET_KEY to a secret "
                               "key (sk_live_/sk_test_) or a restricted key (rk_live_/rk_test_)"))
        return results
    http = stripe.HTTPXClient(timeout=call_timeout)
    client = stripe.StripeClient(key, http_client=http, max_network_retries=0,
                                 base_addresses={"api": api_base.rstrip("/")} if api_base
                                 else None)
    try:
        account = await _account(client, key, kind, api_base)
        results.insert(0, account)
        if account.status is not Status.OK:
            return results
        results.extend(await _permissions(client, *kind))
        results.append(await _webhook_endpoints(client))
    finally:
        await http.close_async()
    return results


async def _account(client: stripe.StripeClient, key: str, kind: tuple[str, str],
                   api_base: str | None) -> Check:
    label, mode = kind
    about = f"{label} key {mask(key)}, {mode} mode"
    try:
        account = await client.v1.accounts.retrieve_current_async()
    except stripe.AuthenticationError:
        return fail(f"{NAME} key", f"{about}: refused by Stripe (401): set STRIPE_SECRET_KEY to "
                    "a current key from Developers > API keys")
    except stripe.PermissionError:
        if label == "restricted":
            return ok(f"{NAME} account", f"{about}: accepted (a restricted key cannot read the "
                      "account itself)")
        return fail(f"{NAME} account", f"{about}: Stripe refuses to show the account (403)")
    except stripe.APIConnectionError:
        where = api_base or "api.stripe.com"
        return fail(f"{NAME} account", f"could not reach Stripe at {where}: check the network "
                    "(or STRIPE_API_BASE)")
    except stripe.StripeError as exc:
        return fail(f"{NAME} account", f"{about}: Stripe answered HTTP {exc.http_status}: "
                    "try again later")
    data = account.to_dict()
    name = (data.get("settings") or {}).get("dashboard", {}).get("display_name") or \
        (data.get("business_profile") or {}).get("name") or "unnamed"
    charges = "charges enabled" if data.get("charges_enabled") else "charges NOT enabled"
    return ok(f"{NAME} account", f"{data.get('id')} ({name}), {about}, {charges}")


async def _permissions(client: stripe.StripeClient, label: str, mode: str) -> list[Check]:
    if label == "secret":
        detail = "a secret key can do everything the bot needs"
        if mode == "live":  # a leak of it could do anything on the account
            return [warn(f"{NAME} permissions", f"{detail}, and much more: a restricted key "
                         "with only the permissions the bot needs is safer (README)")]
        return [ok(f"{NAME} permissions", detail)]
    results = []
    for permission in PERMISSIONS:
        name = f"{NAME} permission {permission.name}"
        try:
            await permission.probe(client)
        except stripe.PermissionError:
            advice = (f"missing: {permission.used_for} will fail: edit the restricted key "
                      f"in Developers > API keys and set {permission.dashboard}")
            results.append(fail(name, advice) if permission.required else warn(name, advice))
            continue
        except (stripe.InvalidRequestError, stripe.IdempotencyError):
            pass  # refused for its parameters or a missing object: the permission is there
        except stripe.StripeError as exc:
            results.append(warn(name, f"could not tell (Stripe answered HTTP "
                                f"{exc.http_status or 'nothing'}): run doctor again"))
            continue
        results.append(ok(name, f"granted: {permission.used_for}"))
    return results


async def _webhook_endpoints(client: stripe.StripeClient) -> Check:
    name = f"{NAME} webhook endpoints"
    try:
        listed = await client.v1.webhook_endpoints.list_async({"limit": 100})
    except stripe.PermissionError:
        return warn(name, "not readable with this restricted key (optional: grant Webhook "
                    "Endpoints: Read to have the enabled event types checked)")
    except stripe.StripeError as exc:
        return warn(name, f"could not read them (HTTP {exc.http_status or 'nothing'})")
    wanted = set(ROUTES["stripe"])
    endpoints = [e.to_dict() for e in listed.data]
    enabled = [e for e in endpoints if e.get("status") == "enabled"]
    if not enabled:
        return warn(name, f"none enabled: add an endpoint for https://<bot host>"
                    f"{BOT_WEBHOOK_PATH} with {', '.join(sorted(wanted))}")
    ours = [e for e in enabled if str(e.get("url", "")).endswith(BOT_WEBHOOK_PATH)] or enabled
    gaps = []
    for endpoint in ours:
        events = set(endpoint.get("enabled_events") or [])
        missing = set() if "*" in events else wanted - events
        if not missing:
            return ok(name, f"{endpoint.get('id')} ({endpoint.get('url')}) sends the "
                      f"{len(wanted)} event types the bot handles")
        gaps.append((len(missing), endpoint, sorted(missing)))
    _, endpoint, missing = min(gaps, key=lambda gap: gap[0])
    return warn(name, f"{endpoint.get('id')} ({endpoint.get('url')}) does not send "
                f"{', '.join(missing)}: add them in Developers > Webhooks")
