"""Stripe's amount rules: project minor units (ISO 4217 exponents, `services.money`) to the
`amount` Stripe expects, and back.

Stripe departs from ISO 4217 in two ways kept here: its three-decimal currencies take only
amounts ending in 0, and ISK is two-decimal at Stripe (100 = 1 krona) with whole kronur only.
"""

from __future__ import annotations

from services.clients.stripe_errors import StripeGatewayError
from services.money import MoneyError, exponent, format_minor, normalize_currency

# Stripe's three-decimal currencies: amounts must end in 0 at Stripe.
STRIPE_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# Where Stripe's API exponent differs from ISO 4217: ISK is two-decimal at Stripe
# (100 = 1 krona) and takes whole kronur only.
STRIPE_EXPONENT_OVERRIDES = {"ISK": 2}


def checked_currency(currency: str) -> str:
    """The ISO 4217 code in upper case; an unknown one is an `invalid` gateway error."""
    try:
        return normalize_currency(currency)
    except MoneyError as exc:
        raise StripeGatewayError("invalid", str(exc)) from None


def to_stripe_amount(minor: int, currency: str) -> int:
    """Project minor units to the `amount` Stripe expects; refuses what Stripe would refuse."""
    code = checked_currency(currency)
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise StripeGatewayError("invalid", f"amount must be an integer, got {minor!r}")
    if minor <= 0:
        raise StripeGatewayError("invalid", f"amount must be positive, got {minor}")
    amount = minor * 10 ** _scale(code)
    if code in STRIPE_THREE_DECIMAL and amount % 10:
        raise StripeGatewayError(
            "invalid",
            f"Stripe accepts {code} amounts only in multiples of 0.010 (last digit 0); "
            f"{format_minor(minor, code)} {code} is not one",
        )
    return amount


def from_stripe_amount(amount: int, currency: str) -> int:
    """Stripe's `amount` to project minor units (whole units for ISK, rounding down)."""
    return int(amount) // 10 ** _scale(checked_currency(currency))


def _scale(code: str) -> int:
    """Power of ten between project minor units and Stripe's units for `code`."""
    stripe_exponent = STRIPE_EXPONENT_OVERRIDES.get(code)
    return 0 if stripe_exponent is None else stripe_exponent - exponent(code)
