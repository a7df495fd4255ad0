"""Money is integer minor units beside a currency; arithmetic in between is Decimal.

Rounding happens once per line through ``round_half_up``; totals are sums of rounded
lines, so money never rounds twice.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from boughs.kit.errors import InvalidInput

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


def parse_major(
    raw: object, currency: str, field: str, *, positive: bool = False, example: str = "12.50"
) -> int:
    """An amount typed in major units ("12.50", "1,200") as minor units of ``currency``.

    Refused on ``field`` when it is not a number, is negative (or zero with ``positive``), or
    has more decimals than the currency: a typed amount is taken exactly, never rounded.
    """
    text = str(raw).replace(",", "").replace(" ", "").strip()
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidInput.on_field(field, "is not an amount", f"write it like {example}") from None
    if not amount.is_finite() or amount < 0 or (positive and amount == 0):
        needed = "more than zero" if positive else "zero or more"
        raise InvalidInput.on_field(field, f"must be {needed}", f"write it like {example}")
    places = exponent(currency)
    if amount != amount.quantize(Decimal(1).scaleb(-places)):
        raise InvalidInput.on_field(
            field, f"{currency} has {places} decimal places", f"round it to {places} decimal places"
        )
    return to_minor(amount, currency)
