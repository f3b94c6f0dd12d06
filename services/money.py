"""Money as integer minor units with ISO-4217 exponents. Never float.

Amounts enter as strings, ints or JSON floats (Checkfront types them float); they are read
through `Decimal(str(value))` and refused when they carry more decimals than the currency has.
Plain decimal text ("210.00", "-5") and ints are read digit by digit without the Decimal,
to the same result (tests/test_quote_serialise.py compares the two paths).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

from services.errors import DomainError

ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX",
     "UYI", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
MAX_DIGITS = 24  # integer digits in major units; anything longer is not a booking amount


class MoneyError(DomainError, ValueError):
    """An amount or currency that cannot be represented exactly."""


def normalize_currency(currency: str) -> str:
    code = (currency or "").strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise MoneyError(f"not an ISO-4217 currency code: {currency!r}")
    return code


@lru_cache(maxsize=256)  # a pure function of a short code, read for every amount formatted
def exponent(currency: str) -> int:
    """Number of minor-unit digits: JPY 0, USD 2, KWD 3."""
    code = normalize_currency(currency)
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def to_decimal(value: str | int | float | Decimal) -> Decimal:
    """Read a number without passing through binary floating point arithmetic."""
    if isinstance(value, bool):
        raise MoneyError(f"not an amount: {value!r}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise MoneyError(f"not an amount: {value!r}") from exc
    if not number.is_finite():
        raise MoneyError(f"not an amount: {value!r}")
    return number


def to_minor(value: str | int | float | Decimal, currency: str) -> int:
    """Major units to minor units, exactly. "12.345" USD raises; "12.3" USD is 1230."""
    kind = type(value)
    if kind is int:  # not bool: bool is refused by the general path
        if -(10**MAX_DIGITS) < value < 10**MAX_DIGITS:
            return value * 10 ** exponent(currency)
    elif kind is str or kind is float:
        # What amounts almost always look like ("210.00", "-5", "7500"): ASCII digits, at
        # most MAX_DIGITS before the point, read with str methods (cheaper than a regex).
        # Anything else (exponents, "+", "_", ".5", other digits) is read by the general path.
        whole, _, fraction = str(value).strip().partition(".")
        negative = whole[:1] == "-"
        if negative:
            whole = whole[1:]
        if (whole.isascii() and whole.isdigit() and len(whole) <= MAX_DIGITS
                and fraction.isascii() and (fraction.isdigit() or not fraction)):
            fraction = fraction.rstrip("0")  # "12.300" is 12.3
            places = exponent(currency)
            if len(fraction) <= places:
                minor = int(whole + fraction.ljust(places, "0"))
                return -minor if negative else minor
    return _to_minor_exact(value, currency)  # which also words every refusal


def _to_minor_exact(value: str | int | float | Decimal, currency: str) -> int:
    """`to_minor` for any input, through Decimal's digits."""
    number = to_decimal(value)
    places = exponent(currency)
    # Exact work on the digits: Decimal arithmetic rounds to the context's 28 significant
    # digits and would turn "1.00000000000000000000000000001" into 1.
    sign, digit_tuple, exp = number.as_tuple()
    if not isinstance(exp, int):  # NaN and infinities are refused by to_decimal already
        raise MoneyError(f"not an amount: {value!r}")
    digits = list(digit_tuple)
    if not any(digits):
        return 0
    if number.adjusted() >= MAX_DIGITS:
        raise MoneyError(f"amount too large: {value!s}")
    while digits[-1] == 0:  # trailing zeros carry no value: "12.300" is 12.3
        digits.pop()
        exp += 1
    shift = exp + places
    if shift < 0:
        raise MoneyError(
            f"{value!s} has more decimals than {normalize_currency(currency)} allows "
            f"({places})"
        )
    minor = int("".join(map(str, digits))) * 10**shift
    return -minor if sign else minor


def format_minor(minor: int, currency: str) -> str:
    """Minor units to a decimal string with the currency's exponent: 7500 USD -> "75.00"."""
    return format_places(minor, exponent(currency))


CENTS = tuple(f"{cents:02d}" for cents in range(100))  # "00".."99": a format spec costs more
"""The two digits of each cent, for code that writes exponent-2 amounts inline."""


def format_places(minor: int, places: int) -> str:
    """`format_minor` with the exponent already looked up (a quote formats ~20 amounts)."""
    if places == 2 and minor >= 0:  # the usual case: one divmod, the cents from a table
        whole, cents = divmod(minor, 100)
        return f"{whole}.{CENTS[cents]}"
    if places == 0:
        return str(minor)
    digits = str(abs(minor)).rjust(places + 1, "0")  # 5 -> "005"
    return f"{'-' if minor < 0 else ''}{digits[:-places]}.{digits[-places:]}"


CENTS_TEXT: dict[int, str] = {}
"""`format_places(minor, 2)` by minor amount, for the amounts met so far (`cents_text` fills
it): a quote writes about twenty amounts, and prices, fees and their shares recur. Look an
amount up only when its type is exactly int (True and 1.0 hash as 1)."""
_MAX_CENTS_TEXT = 4096


def cents_text(minor: int) -> str:
    """`format_places(minor, 2)`, kept in CENTS_TEXT (bounded) for an exact int."""
    text = format_places(minor, 2)
    if type(minor) is int:
        if len(CENTS_TEXT) >= _MAX_CENTS_TEXT:
            CENTS_TEXT.clear()
        CENTS_TEXT[minor] = text
    return text


def display(minor: int, currency: str) -> str:
    """Human form with thousands separators and the code: "1,234.50 USD"."""
    text = format_minor(minor, currency)
    sign = "-" if text.startswith("-") else ""
    whole, _, frac = text.lstrip("-").partition(".")
    grouped = f"{int(whole):,}"
    return f"{sign}{grouped}{'.' + frac if frac else ''} {normalize_currency(currency)}"


def percent_of(minor: int, percent: Decimal | int) -> int:
    """round_half_up(minor × percent / 100) to a whole minor unit (halves away from zero).

    A whole percent of 0..100 and an amount under 10**20 (the product has well under
    Decimal's 28 digits, so the Decimal path is exact too) are worked in integers; anything
    else goes through Decimal. tests/test_money.py compares the two."""
    if (type(percent) is int and 0 <= percent <= 100 and type(minor) is int
            and -EXACT_BELOW < minor < EXACT_BELOW):
        share, rest = divmod(abs(minor) * percent, 100)
        if rest >= 50:
            share += 1
        return -share if minor < 0 else share
    return _percent_of_exact(minor, percent)


def _percent_of_exact(minor: int, percent: Decimal | int) -> int:
    """`percent_of` through Decimal, for any input."""
    share = Decimal(minor) * Decimal(percent) / _HUNDRED
    return int(share.quantize(_ONE, rounding=ROUND_HALF_UP))


EXACT_BELOW = 10**20
"""Amounts below this times a whole percent of 0..100 are exact in Decimal's 28 digits."""
_HUNDRED = Decimal(100)
_ONE = Decimal(1)
