"""Rating: what a service or a meter costs over some days. Pure functions, no storage.

Units and rounding:

- Billing dates are ``date`` values in the account's timezone; every range is inclusive of
  both ends, so a range's length is ``(end - start).days + 1``.
- Recurring prices (``unit_price_amount``), ``flat_amount`` and ``package_amount`` are integer
  MINOR units. A usage ``unit_price`` (a decimal string on the plan) is MAJOR units of the
  plan currency per one unit of the meter, so "0.02" USD per MB is 2 minor units per MB.
- Amounts come back as unrounded ``Decimal`` counts of minor units. The caller rounds each
  line once with ``boughs.kit.money.round_half_up`` and totals are sums of rounded lines;
  rounding here as well would round money twice. ``allocate`` and ``tax_amount`` are the
  exceptions: they work on and return whole minor units.
- Unrounded means "to the precision of the current decimal context" (28 significant digits
  by default): a day of a 31-day month has no finite decimal expansion.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, TypeVar

from boughs.kit.money import exponent, round_half_up
from boughs.kit.periods import add_months

K = TypeVar("K", bound=Hashable)

_ONE_DAY = timedelta(days=1)
# Months whose day A starts a quarter or a year cycle.
_CYCLE_START_MONTHS = {"quarter": frozenset({1, 4, 7, 10}), "year": frozenset({1})}
# Effective usage prices are for reading, not for computing, so they are cut to the
# precision a plan's own unit_price may have.
_DISPLAY_PLACES = Decimal("1e-10")


def _days(start: date, end: date) -> int:
    return (end - start).days + 1


def _check_anchor(anchor_day: int) -> None:
    # Up to 28 so that every month has the day: no period is ever clamped or skipped.
    if not 1 <= anchor_day <= 28:
        raise ValueError(f"anchor day {anchor_day} is not within 1..28")


def _plain(value: Decimal) -> str:
    """A decimal as positional text without trailing zeros ("20", not "2E+1" or "20.00")."""
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


# --- billing periods and charge cycles ---------------------------------------------------------


def period_ending(period_end: date, anchor_day: int) -> tuple[date, date] | None:
    """The billing period [start, end] ending on ``period_end``, or None if no period ends then.

    Periods run from day A of a month to the day before day A of the next month (A=1:
    calendar months).
    """
    _check_anchor(anchor_day)
    next_start = period_end + _ONE_DAY
    if next_start.day != anchor_day:
        return None
    return add_months(next_start, -1), period_end


@dataclass(frozen=True)
class Cycle:
    """The days one recurring charge pays for, both ends inclusive."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return _days(self.start, self.end)


def cycles_billed_in(period: tuple[date, date], pay_period: str, anchor_day: int) -> list[tuple[Cycle, int]]:
    """The charge cycles billed in advance on the invoice for ``period``, each with its divisor.

    The divisor is the number of days the pay period's price is for, so a day on given
    terms costs price * quantity / divisor. Monthly, weekly and daily services are charged
    for the invoice's own period (a week's price covers 7 days, a day's price 1). Quarterly
    and yearly cycles start on day A of January/April/July/October (of January for a year)
    and are billed whole on the invoice whose period contains that start; other invoices
    carry none of them.
    """
    _check_anchor(anchor_day)
    start, end = period
    if end < start:
        raise ValueError(f"period ends ({end}) before it starts ({start})")
    if pay_period == "month":
        return [(Cycle(start, end), _days(start, end))]
    if pay_period == "week":
        return [(Cycle(start, end), 7)]
    if pay_period == "day":
        return [(Cycle(start, end), 1)]
    if pay_period not in _CYCLE_START_MONTHS:
        raise ValueError(f"unknown pay period {pay_period!r}")
    months = 3 if pay_period == "quarter" else 12
    cycles: list[tuple[Cycle, int]] = []
    # Look at day A of every month the period touches; a normal period touches one or two.
    month = date(start.year, start.month, 1)
    while month <= end:
        cycle_start = month.replace(day=anchor_day)
        if month.month in _CYCLE_START_MONTHS[pay_period] and start <= cycle_start <= end:
            cycle = Cycle(cycle_start, add_months(cycle_start, months) - _ONE_DAY)
            cycles.append((cycle, cycle.days))
        month = add_months(month, 1)
    return cycles


# --- recurring charges and discounts ----------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """Days of a cycle on unchanged terms (plan, price, quantity), both ends inclusive."""

    start: date
    end: date
    unit_price_amount: int  # minor units per pay period
    quantity: int
    plan_id: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"segment ends ({self.end}) before it starts ({self.start})")

    @property
    def days(self) -> int:
        return _days(self.start, self.end)


def recurring_amount(segment: Segment, divisor: int) -> Decimal:
    """unit price * quantity * days / divisor, in unrounded minor units."""
    if divisor <= 0:
        raise ValueError(f"divisor {divisor} is not positive")
    # One division of an exact integer: a whole cycle (days == divisor) comes out exact.
    return Decimal(segment.unit_price_amount * segment.quantity * segment.days) / divisor


def is_full_cycle(segments: Sequence[Segment], cycle: Cycle) -> bool:
    """One segment spans the whole cycle: the charge is the plain price, not a proration."""
    return len(segments) == 1 and segments[0].start <= cycle.start and segments[0].end >= cycle.end


def discount_amount(
    line_amount: Decimal,
    line_start: date,
    line_end: date,
    percent_bp: int,
    discount_start: date,
    discount_end: date | None,
) -> Decimal:
    """The discount on a line for the days its dates overlap the discount's (end None: open).

    line amount * overlap days / line days * percent_bp / 10000, unrounded; positive for a
    positive line.
    """
    if line_end < line_start:
        raise ValueError(f"line ends ({line_end}) before it starts ({line_start})")
    first = max(line_start, discount_start)
    last = line_end if discount_end is None else min(line_end, discount_end)
    if last < first or percent_bp == 0:
        return Decimal(0)
    # Reduced to lowest terms before touching the Decimal, so the common cases (the whole
    # line, 100 %, 50 %) multiply by small integers and stay exact.
    share = Fraction(_days(first, last) * percent_bp, _days(line_start, line_end) * 10_000)
    if share == 1:
        return line_amount
    return line_amount * share.numerator / share.denominator


# --- usage ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsagePrice:
    amount: Decimal  # unrounded minor units
    unit_price: Decimal  # major units per meter unit, for display
    details: dict[str, Any]  # JSON-able: how the amount was reached


@dataclass(frozen=True)
class _Tier:
    lower: int  # exclusive
    upper: int | None  # inclusive; None: no upper end
    unit_price: Decimal  # major units
    flat_amount: int  # minor units


def _decimal(value: Any, what: str) -> Decimal:
    if value is None:
        raise ValueError(f"{what} is missing")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{what} {value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValueError(f"{what} {value!r} is not a finite number")
    return number


def _tiers(charge: Mapping[str, Any]) -> list[_Tier]:
    stored = charge.get("tiers") or []
    if not stored:
        raise ValueError(f"the {charge.get('model')} model needs tiers")
    tiers: list[_Tier] = []
    lower = 0
    for i, tier in enumerate(stored):
        # The catalog stores the last tier with no upper end; treating it as open whatever
        # it says means every quantity has a price.
        upper = None if i == len(stored) - 1 else tier.get("up_to")
        if i < len(stored) - 1:
            if upper is None or int(upper) <= lower:
                raise ValueError(f"tier {i} must end above {lower}; only the last tier is open")
            upper = int(upper)
        price = _decimal(tier.get("unit_price"), f"tier {i} unit_price")
        tiers.append(_Tier(lower, upper, price, int(tier.get("flat_amount") or 0)))
        lower = upper or lower
    return tiers


def _tier_detail(tier: _Tier, quantity: Decimal, amount: Decimal) -> dict[str, Any]:
    return {
        "from": tier.lower,
        "to": tier.upper,
        "quantity": _plain(quantity),
        "unit_price": _plain(tier.unit_price),
        "flat_amount": tier.flat_amount,
        "amount": _plain(amount),
    }


def _effective_price(amount: Decimal, quantity: Decimal, currency: str) -> Decimal:
    if quantity == 0:
        return Decimal(0)
    per_unit = amount.scaleb(-exponent(currency)) / quantity
    return Decimal(_plain(per_unit.quantize(_DISPLAY_PLACES, rounding=ROUND_HALF_UP)))


@dataclass(frozen=True)
class Pricing:
    """A plan's stored usage-charge document read once (its tiers parsed), to price many
    quantities: a bill run prices the same few charges for every account."""

    model: str
    unit_price: Decimal
    tiers: tuple[_Tier, ...]
    package_size: int
    package_amount: int

    def price(self, quantity: Decimal, currency: str) -> UsagePrice:
        """Price ``quantity`` (in the meter's unit)."""
        if not quantity.is_finite() or quantity < 0:
            raise ValueError(f"usage quantity {quantity} is not a non-negative number")
        model = self.model
        to_minor = exponent(currency)

        if model == "per_unit":
            amount = (quantity * self.unit_price).scaleb(to_minor) if quantity else Decimal(0)
            # The plan's own rate reads better than an effective one, even for no usage.
            return UsagePrice(amount, self.unit_price, {"model": model})

        if model == "graduated":
            amount = Decimal(0)
            touched: list[dict[str, Any]] = []
            for tier in self.tiers:
                if quantity <= tier.lower:
                    break
                top = quantity if tier.upper is None else min(quantity, Decimal(tier.upper))
                in_band = top - tier.lower
                band_amount = (in_band * tier.unit_price).scaleb(to_minor) + tier.flat_amount
                amount += band_amount
                touched.append(_tier_detail(tier, in_band, band_amount))
            return UsagePrice(
                amount, _effective_price(amount, quantity, currency), {"model": model, "tiers": touched}
            )

        if model == "volume":
            if quantity == 0:
                return UsagePrice(Decimal(0), Decimal(0), {"model": model, "tiers": []})
            tiers = self.tiers
            tier = next((t for t in tiers if t.upper is not None and quantity <= t.upper), tiers[-1])
            amount = (quantity * tier.unit_price).scaleb(to_minor) + tier.flat_amount
            return UsagePrice(
                amount,
                _effective_price(amount, quantity, currency),
                {"model": model, "tiers": [_tier_detail(tier, quantity, amount)]},
            )

        # package: a started package is a whole package; Decimal // and % are exact.
        size = self.package_size
        packages = int(quantity // size) + (1 if quantity % size else 0)
        amount = Decimal(packages * self.package_amount)
        return UsagePrice(
            amount,
            _effective_price(amount, quantity, currency),
            {
                "model": model,
                "packages": packages,
                "package_size": size,
                "package_amount": self.package_amount,
            },
        )


def pricing_of(charge: Mapping[str, Any]) -> Pricing:
    """A stored usage-charge document, checked and parsed; ValueError says what is wrong."""
    model = charge.get("model")
    if model == "per_unit":
        return Pricing(model, _decimal(charge.get("unit_price"), "unit_price"), (), 0, 0)
    if model in ("graduated", "volume"):
        return Pricing(model, Decimal(0), tuple(_tiers(charge)), 0, 0)
    if model == "package":
        size, package_amount = charge.get("package_size"), charge.get("package_amount")
        if not size or int(size) <= 0 or package_amount is None:
            raise ValueError("the package model needs a positive package_size and a package_amount")
        return Pricing(model, Decimal(0), (), int(size), int(package_amount))
    raise ValueError(f"unknown pricing model {model!r}")


def price_usage(charge: Mapping[str, Any], quantity: Decimal, currency: str) -> UsagePrice:
    """Price ``quantity`` (in the meter's unit) with a plan's stored usage-charge document."""
    return pricing_of(charge).price(quantity, currency)


# --- splitting, tax and rates -----------------------------------------------------------------


def allocate(total: int, weights: Mapping[K, Decimal | int]) -> dict[K, int]:
    """Split whole minor units pro rata to ``weights`` so the parts sum exactly to ``total``.

    Largest remainder: each key gets the floor of its exact share of |total|, and the units
    left over go one each to the largest fractional remainders, earlier keys first on ties.
    A negative total is split as its magnitude and negated, so credits mirror charges. All
    weights zero splits equally.
    """
    keys = list(weights)
    if not keys:
        if total:
            raise ValueError(f"cannot allocate {total} across no keys")
        return {}
    exact: list[Fraction] = []
    for key, weight in weights.items():
        if isinstance(weight, Decimal) and not weight.is_finite():
            raise ValueError(f"weight of {key!r} is not a finite number")
        if weight < 0:
            raise ValueError(f"weight of {key!r} is negative")
        exact.append(Fraction(weight))
    # Integer weights on a common denominator keep every step exact and cheap.
    denominator = math.lcm(*(w.denominator for w in exact))
    scaled = [w.numerator * (denominator // w.denominator) for w in exact]
    whole = sum(scaled)
    if whole == 0:
        scaled, whole = [1] * len(keys), len(keys)
    magnitude = abs(total)
    parts: list[int] = []
    remainders: list[int] = []
    for weight in scaled:
        part, remainder = divmod(magnitude * weight, whole)
        parts.append(part)
        remainders.append(remainder)
    left = magnitude - sum(parts)
    # sorted() is stable, so equal remainders keep the input order.
    for i in sorted(range(len(keys)), key=lambda j: -remainders[j])[:left]:
        parts[i] += 1
    sign = -1 if total < 0 else 1
    return {key: sign * part for key, part in zip(keys, parts, strict=True)}


def tax_amount(subtotal: int, rate_ppm: int) -> int:
    """Tax on a subtotal at a rate in parts per million, rounded once, half away from zero."""
    # scaleb only moves the decimal point, so the product is exact before the rounding.
    return round_half_up(Decimal(subtotal * rate_ppm).scaleb(-6))


def format_ppm(rate_ppm: int) -> str:
    """A rate in parts per million as a percent: 88750 → "8.875", 200000 → "20"."""
    return _plain(Decimal(rate_ppm).scaleb(-4))


def parse_percent(text: str) -> int:
    """A percent such as "8.875" (a trailing "%" is allowed) as parts per million."""
    cleaned = text.strip().removesuffix("%").strip()
    try:
        percent = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a percentage; give a number such as 8.875") from None
    if not percent.is_finite():
        raise ValueError(f"{text!r} is not a percentage; give a number such as 8.875")
    if percent < 0 or percent > 100:
        raise ValueError(f"{text!r} is not between 0 and 100")
    ppm = percent.scaleb(4)
    # Judged on the value, so "8.50000" is fine and "8.87501" is not.
    if ppm != ppm.to_integral_value():
        raise ValueError(f"{text!r} has more than 4 decimals; a rate is kept to 0.0001 %")
    return int(ppm)
