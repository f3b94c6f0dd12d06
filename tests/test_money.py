"""Money: exponents, exact parsing to minor units, formatting and half-up percentages."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from services.money import MoneyError, display, exponent, format_minor, percent_of, to_minor


@pytest.mark.parametrize(
    ("currency", "places"),
    [
        ("JPY", 0), ("KRW", 0), ("VND", 0), ("CLP", 0),
        ("USD", 2), ("EUR", 2), ("GBP", 2), ("CAD", 2), ("AUD", 2), ("NZD", 2), ("CHF", 2),
        ("BHD", 3), ("KWD", 3), ("JOD", 3), ("OMR", 3), ("TND", 3),
        ("usd", 2), (" jpy ", 0),
    ],
)
def test_exponent_per_iso_4217(currency: str, places: int) -> None:
    assert exponent(currency) == places


@pytest.mark.parametrize("currency", ["", "US", "DOLLAR", "U$D", "123"])
def test_exponent_refuses_what_is_not_a_currency_code(currency: str) -> None:
    with pytest.raises(MoneyError):
        exponent(currency)


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("7500", "JPY", 7500),
        (7500, "JPY", 7500),
        ("7500.00", "JPY", 7500),  # trailing zeros carry no value
        ("75.00", "USD", 7500),
        ("12.3", "USD", 1230),
        ("0.01", "USD", 1),
        (" 12.30 ", "USD", 1230),
        (48.3, "USD", 4830),  # a JSON float, read through its shortest repr
        (0.1, "USD", 10),
        (1234.56, "USD", 123456),
        ("1.234", "KWD", 1234),
        ("0.005", "KWD", 5),
        ("75", "KWD", 75000),
        (Decimal("1.50"), "USD", 150),
        ("-5.25", "USD", -525),
    ],
)
def test_to_minor_is_exact(value: Any, currency: str, minor: int) -> None:
    assert to_minor(value, currency) == minor


def test_to_minor_reads_json_floats_exactly() -> None:
    amounts = json.loads('{"a": 48.3, "b": 0.07, "c": 19.99, "d": 1.005}')
    assert [to_minor(amounts[k], "USD") for k in "abc"] == [4830, 7, 1999]
    assert to_minor(amounts["d"], "KWD") == 1005


@pytest.mark.parametrize(
    ("value", "currency"),
    [
        ("12.345", "USD"),
        (12.345, "USD"),
        ("0.001", "USD"),
        ("7500.5", "JPY"),
        ("1.0001", "KWD"),
        (0.1 + 0.2, "USD"),  # 0.30000000000000004 is not an amount in cents
    ],
)
def test_to_minor_refuses_extra_decimals_instead_of_rounding(value: Any, currency: str) -> None:
    with pytest.raises(MoneyError, match="more decimals"):
        to_minor(value, currency)


@pytest.mark.parametrize(
    ("value", "currency"),
    [
        ("1.00000000000000000000000000001", "USD"),  # beyond Decimal's 28-digit context
        ("1953124.9999999999999999999995009", "JPY"),
        ("0." + "0" * 5000 + "1", "KWD"),
        ("1e-999999999", "USD"),
    ],
)
def test_to_minor_never_rounds_long_decimals_away(value: str, currency: str) -> None:
    with pytest.raises(MoneyError, match="more decimals"):
        to_minor(value, currency)


def test_to_minor_keeps_long_trailing_zeros_and_refuses_absurd_magnitudes() -> None:
    assert to_minor("12." + "0" * 5000, "USD") == 1200
    assert to_minor("0E+999999999", "USD") == 0
    with pytest.raises(MoneyError, match="too large"):
        to_minor("1e999999999", "USD")  # would otherwise build a billion-digit integer
    with pytest.raises(MoneyError, match="too large"):
        to_minor(1e300, "USD")


@pytest.mark.parametrize("value", ["", "abc", "1,000.00", "NaN", "Infinity", "-inf", True, None])
def test_to_minor_refuses_what_is_not_an_amount(value: Any) -> None:
    with pytest.raises(MoneyError):
        to_minor(value, "USD")


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (7500, "USD", "75.00"),
        (7500, "JPY", "7500"),
        (7500, "KWD", "7.500"),
        (5, "USD", "0.05"),
        (5, "KWD", "0.005"),
        (0, "USD", "0.00"),
        (0, "JPY", "0"),
        (-5, "USD", "-0.05"),
        (-123456, "KWD", "-123.456"),
        (-7500, "JPY", "-7500"),
    ],
)
def test_format_minor_uses_the_currency_exponent(minor: int, currency: str, text: str) -> None:
    assert format_minor(minor, currency) == text
    assert to_minor(text, currency) == minor


def test_display_groups_thousands_and_names_the_currency() -> None:
    assert display(123450, "USD") == "1,234.50 USD"
    assert display(1234567, "JPY") == "1,234,567 JPY"
    assert display(-1234567, "KWD") == "-1,234.567 KWD"


@pytest.mark.parametrize(
    ("minor", "percent", "share"),
    [
        (1, 50, 1),  # 0.5 -> 1
        (5, 50, 3),  # 2.5 -> 3 (half-even would give 2)
        (9, 50, 5),  # 4.5 -> 5
        (25, 50, 13),  # 12.5 -> 13
        (3, 50, 2),
        (4, 50, 2),
        (1000, Decimal("33.3"), 333),
        (15, Decimal("10"), 2),  # 1.5 -> 2
        (14, Decimal("10"), 1),  # 1.4 -> 1
        (10000, 100, 10000),
        (10000, 0, 0),
        (1, Decimal("49.999"), 0),
    ],
)
def test_percent_of_rounds_half_up_to_the_minor_unit(
    minor: int, percent: Decimal | int, share: int
) -> None:
    assert percent_of(minor, percent) == share
