from decimal import Decimal

import pytest

from core.errors import InvalidRequest
from core.money import Money, convert, format_minor, parse_amount, split_proportionally


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.50", "EUR", 1250),
        ("12.5", "EUR", 1250),
        ("12", "EUR", 1200),
        ("7", "JPY", 7),
        ("1.234", "BHD", 1234),
        ("0.01", "EUR", 1),
    ],
)
def test_decimal_strings_become_exact_minor_units(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == Money(minor, currency)


@pytest.mark.parametrize(
    ("text", "currency", "code"),
    [
        ("12.505", "EUR", "too_many_decimals"),
        ("1.5", "JPY", "too_many_decimals"),
        ("1.2345", "BHD", "too_many_decimals"),
        ("0", "EUR", "amount_not_positive"),
        ("0.00", "EUR", "amount_not_positive"),
        ("-1.00", "EUR", "invalid_amount"),
        ("1e3", "EUR", "invalid_amount"),
        ("01.00", "EUR", "invalid_amount"),
        (" 1.00", "EUR", "invalid_amount"),
        ("1.00", "ZZZ", "unknown_currency"),
        ("1.00", "eur", "unknown_currency"),
        ("10000000000001", "EUR", "amount_too_large"),
    ],
)
def test_refused_amounts_name_their_reason(text: str, currency: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_amount(text, currency)
    assert refused.value.code == code


def test_a_float_is_never_an_amount() -> None:
    with pytest.raises(InvalidRequest):
        parse_amount(12.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(12.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, "EUR")  # noqa: FBT003


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(1250, "EUR", "12.50"), (-5, "EUR", "-0.05"), (7, "JPY", "7"), (1, "BHD", "0.001")],
)
def test_formatting_round_trips(minor: int, currency: str, text: str) -> None:
    assert format_minor(minor, currency) == text
    if minor > 0:
        assert parse_amount(text, currency).minor == minor


def test_conversion_rounds_half_even_across_exponents() -> None:
    assert convert(Money(1000, "USD"), rate=Decimal("0.92"), to_currency="EUR") == Money(920, "EUR")
    # 1.25 EUR at 1 -> JPY 1.25 -> 1 (half-even); 1.5 -> 2
    assert convert(Money(125, "EUR"), rate=Decimal(1), to_currency="JPY") == Money(1, "JPY")
    assert convert(Money(150, "EUR"), rate=Decimal(1), to_currency="JPY") == Money(2, "JPY")
    assert convert(Money(100, "JPY"), rate=Decimal("0.0061"), to_currency="EUR") == Money(61, "EUR")


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        (2500, (600, 400), (1500, 1000)),
        (1000, (1000, 0), (1000, 0)),
        (1, (1, 2), (1, 0)),
        (10, (1, 2), (4, 6)),
        (0, (5, 5), (0, 0)),
    ],
)
def test_payout_split_follows_stake_sources_and_loses_nothing(
    total: int, weights: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert split_proportionally(total, weights) == expected
    assert sum(split_proportionally(total, weights)) == total
