"""Exact money: integer minor units plus an ISO 4217 code. Decimal strings only at the edges."""

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from core import currencies
from core.errors import InvalidRequest

AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,15})(\.[0-9]{1,4})?$"
_AMOUNT_RE = re.compile(AMOUNT_PATTERN)
CURRENCY_PATTERN = r"^[A-Z]{3}$"
# 10^15 minor units: far beyond any single casino movement, far below BIGINT overflow.
MAX_MINOR = 10**15


@dataclass(frozen=True, slots=True)
class Money:
    minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.minor) is not int:  # bool is an int subclass; floats never enter
            raise TypeError("Money.minor must be an int")

    def __str__(self) -> str:
        return f"{format_minor(self.minor, self.currency)} {self.currency}"

    @property
    def decimal_string(self) -> str:
        return format_minor(self.minor, self.currency)


def check_currency(code: str) -> str:
    if not currencies.is_known(code):
        raise InvalidRequest(
            "unknown_currency", f"{code!r} is not an ISO 4217 currency we accept", currency=code
        )
    return code


def parse_amount(text: str, currency: str, *, allow_zero: bool = False) -> Money:
    """Parse a decimal string such as "12.50" into minor units of `currency`.

    Refuses floats (anything not a str), signs, exponents, more decimals than the currency
    allows, zero (unless allowed) and amounts beyond MAX_MINOR.
    """
    check_currency(currency)
    if not isinstance(text, str) or not _AMOUNT_RE.match(text):
        raise InvalidRequest(
            "invalid_amount",
            'amount must be a decimal string such as "12.50" (no sign, no exponent)',
            amount=str(text),
        )
    whole, _, fraction = text.partition(".")
    exp = currencies.exponent(currency)
    if len(fraction) > exp:
        raise InvalidRequest(
            "too_many_decimals",
            f"{currency} allows at most {exp} decimals",
            amount=text,
            currency=currency,
            max_decimals=exp,
        )
    minor = int(whole) * 10**exp + int(fraction.ljust(exp, "0") or "0")
    if minor > MAX_MINOR:
        raise InvalidRequest("amount_too_large", "amount exceeds the accepted maximum", amount=text)
    if minor == 0 and not allow_zero:
        raise InvalidRequest("amount_not_positive", "amount must be greater than zero", amount=text)
    return Money(minor, currency)


def format_minor(minor: int, currency: str) -> str:
    exp = currencies.exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**exp)
    return f"{sign}{whole}.{fraction:0{exp}d}" if exp else f"{sign}{whole}"


def convert(amount: Money, *, rate: Decimal, to_currency: str) -> Money:
    """Convert at `rate` (units of `to_currency` per unit of amount's currency), half-even."""
    exact = (
        Decimal(amount.minor)
        * rate
        * Decimal(10) ** (currencies.exponent(to_currency) - currencies.exponent(amount.currency))
    )
    return Money(int(exact.to_integral_value(rounding=ROUND_HALF_EVEN)), to_currency)


def split_proportionally(total: int, weights: tuple[int, int]) -> tuple[int, int]:
    """Split `total` minor units in proportion to two weights; the remainder goes to the first.

    Used to pay a win back to cash and bonus in the proportion that funded the stake.
    """
    first, second = weights
    if first + second == 0:
        return total, 0
    second_share = total * second // (first + second)
    return total - second_share, second_share
