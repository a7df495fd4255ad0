"""Money is integer minor units beside a currency; arithmetic in between is Decimal.

Rounding happens once per line through ``round_half_up``; totals are sums of rounded
lines, so money never rounds twice.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 exponents that differ from 2; everything else has two decimals.
_EXPONENTS = {
    "BHD": 3, "CLP": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0, "KMF": 0, "KRW": 0,
    "KWD": 3, "LYD": 3, "OMR": 3, "PYG": 0, "RWF": 0, "TND": 3, "UGX": 0, "UYI": 0,
    "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def round_half_up(amount_in_minor_units: Decimal) -> int:
    """The one rounding of money: a Decimal count of minor units to a whole one."""
    return int(amount_in_minor_units.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_minor(major: Decimal, currency: str) -> int:
    return round_half_up(major * (Decimal(10) ** exponent(currency)))


def to_major(minor: int, currency: str) -> Decimal:
    return Decimal(minor) / (Decimal(10) ** exponent(currency))


def is_currency_code(code: str) -> bool:
    return len(code) == 3 and code.isalpha() and code.isupper()
