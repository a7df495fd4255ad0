"""Rating arithmetic: hand-computed cases per function and pricing model, then properties.

Amounts are unrounded minor units; where a case is about what lands on an invoice it is
also rounded the way the bill run rounds a line.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from boughs.billing.rating import (
    Cycle,
    Segment,
    allocate,
    cycles_billed_in,
    discount_amount,
    format_ppm,
    is_full_cycle,
    parse_percent,
    period_ending,
    price_usage,
    pricing_of,
    recurring_amount,
    tax_amount,
)
from boughs.kit.money import round_half_up
from boughs.kit.periods import add_months

D = Decimal


def _tier(up_to: int | None, unit_price: str, flat_amount: int | None = None) -> dict[str, Any]:
    return {"up_to": up_to, "unit_price": unit_price, "flat_amount": flat_amount}


def _charge(model: str, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "meter": "data.mb",
        "model": model,
        "unit_price": None,
        "tiers": [],
        "package_size": None,
        "package_amount": None,
    }
    doc.update(fields)
    return doc


# 0-1000 free, 1000-5000 at 0.01, above at 0.005 plus a flat 5.00 once that band is reached.
TIERS = [_tier(1000, "0"), _tier(5000, "0.01"), _tier(None, "0.005", 500)]
GRADUATED = _charge("graduated", tiers=TIERS)
VOLUME = _charge("volume", tiers=TIERS)
PACKAGE = _charge("package", package_size=1000, package_amount=500)


def _segment(start: date, end: date, price: int = 3100, quantity: int = 1, plan_id: int = 1) -> Segment:
    return Segment(start, end, price, quantity, plan_id)


# --- billing periods ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period_end", "anchor", "expected"),
    [
        (date(2026, 1, 31), 1, (date(2026, 1, 1), date(2026, 1, 31))),
        (date(2026, 2, 14), 15, (date(2026, 1, 15), date(2026, 2, 14))),
        (date(2026, 1, 14), 15, (date(2025, 12, 15), date(2026, 1, 14))),
        (date(2024, 2, 29), 1, (date(2024, 2, 1), date(2024, 2, 29))),
        (date(2026, 3, 27), 28, (date(2026, 2, 28), date(2026, 3, 27))),
        (date(2026, 12, 31), 1, (date(2026, 12, 1), date(2026, 12, 31))),
        (date(2026, 1, 30), 1, None),
        (date(2024, 2, 28), 1, None),
        (date(2026, 1, 31), 15, None),
    ],
)
def test_period_ending(period_end: date, anchor: int, expected: tuple[date, date] | None) -> None:
    assert period_ending(period_end, anchor) == expected


@pytest.mark.parametrize("anchor", [0, 29, 31])
def test_anchor_day_must_exist_in_every_month(anchor: int) -> None:
    with pytest.raises(ValueError):
        period_ending(date(2026, 1, 31), anchor)


JAN = (date(2026, 1, 1), date(2026, 1, 31))


@pytest.mark.parametrize(
    ("period", "pay_period", "anchor", "expected"),
    [
        (JAN, "month", 1, [(Cycle(*JAN), 31)]),
        ((date(2024, 2, 1), date(2024, 2, 29)), "month", 1,
         [(Cycle(date(2024, 2, 1), date(2024, 2, 29)), 29)]),
        ((date(2026, 1, 15), date(2026, 2, 14)), "month", 15,
         [(Cycle(date(2026, 1, 15), date(2026, 2, 14)), 31)]),
        (JAN, "week", 1, [(Cycle(*JAN), 7)]),
        (JAN, "day", 1, [(Cycle(*JAN), 1)]),
        # Quarters, anchor 1: calendar quarters, billed in their first month only.
        (JAN, "quarter", 1, [(Cycle(date(2026, 1, 1), date(2026, 3, 31)), 90)]),
        ((date(2026, 2, 1), date(2026, 2, 28)), "quarter", 1, []),
        ((date(2026, 3, 1), date(2026, 3, 31)), "quarter", 1, []),
        ((date(2026, 4, 1), date(2026, 4, 30)), "quarter", 1,
         [(Cycle(date(2026, 4, 1), date(2026, 6, 30)), 91)]),
        ((date(2026, 7, 1), date(2026, 7, 31)), "quarter", 1,
         [(Cycle(date(2026, 7, 1), date(2026, 9, 30)), 92)]),
        ((date(2026, 10, 1), date(2026, 10, 31)), "quarter", 1,
         [(Cycle(date(2026, 10, 1), date(2026, 12, 31)), 92)]),
        ((date(2024, 1, 1), date(2024, 1, 31)), "quarter", 1,
         [(Cycle(date(2024, 1, 1), date(2024, 3, 31)), 91)]),
        # Quarters, anchor 15: Jan 15 - Apr 14 is 17 + 28 + 31 + 14 days (29 in Feb 2024).
        ((date(2026, 1, 15), date(2026, 2, 14)), "quarter", 15,
         [(Cycle(date(2026, 1, 15), date(2026, 4, 14)), 90)]),
        ((date(2024, 1, 15), date(2024, 2, 14)), "quarter", 15,
         [(Cycle(date(2024, 1, 15), date(2024, 4, 14)), 91)]),
        ((date(2025, 12, 15), date(2026, 1, 14)), "quarter", 15, []),
        ((date(2024, 10, 15), date(2024, 11, 14)), "quarter", 15,
         [(Cycle(date(2024, 10, 15), date(2025, 1, 14)), 92)]),
        # Years: 366 days whenever the cycle holds a 29 February.
        (JAN, "year", 1, [(Cycle(date(2026, 1, 1), date(2026, 12, 31)), 365)]),
        ((date(2024, 1, 1), date(2024, 1, 31)), "year", 1,
         [(Cycle(date(2024, 1, 1), date(2024, 12, 31)), 366)]),
        ((date(2026, 3, 1), date(2026, 3, 31)), "year", 1, []),
        ((date(2026, 1, 15), date(2026, 2, 14)), "year", 15,
         [(Cycle(date(2026, 1, 15), date(2027, 1, 14)), 365)]),
        ((date(2023, 1, 15), date(2023, 2, 14)), "year", 15,
         [(Cycle(date(2023, 1, 15), date(2024, 1, 14)), 365)]),
        ((date(2024, 1, 15), date(2024, 2, 14)), "year", 15,
         [(Cycle(date(2024, 1, 15), date(2025, 1, 14)), 366)]),
        ((date(2027, 1, 15), date(2027, 2, 14)), "year", 15,
         [(Cycle(date(2027, 1, 15), date(2028, 1, 14)), 365)]),
        ((date(2028, 1, 15), date(2028, 2, 14)), "year", 15,
         [(Cycle(date(2028, 1, 15), date(2029, 1, 14)), 366)]),
        ((date(2025, 12, 15), date(2026, 1, 14)), "year", 15, []),
    ],
)  # fmt: skip
def test_cycles_billed_in(
    period: tuple[date, date], pay_period: str, anchor: int, expected: list[tuple[Cycle, int]]
) -> None:
    assert cycles_billed_in(period, pay_period, anchor) == expected


def test_cycles_refuse_unknown_pay_period_and_reversed_period() -> None:
    with pytest.raises(ValueError):
        cycles_billed_in(JAN, "fortnight", 1)
    with pytest.raises(ValueError):
        cycles_billed_in((date(2026, 1, 31), date(2026, 1, 1)), "month", 1)


# --- recurring charges --------------------------------------------------------------------------


def test_monthly_proration_of_a_mid_month_start_in_january() -> None:
    # 31.00 a month from 10 January: 22 of 31 days.
    (cycle, divisor), *_ = cycles_billed_in(JAN, "month", 1)
    segment = _segment(date(2026, 1, 10), date(2026, 1, 31))
    assert recurring_amount(segment, divisor) == D(2200)
    assert not is_full_cycle([segment], cycle)


def test_plan_change_mid_month_is_two_lines_each_rounded_once() -> None:
    # 10.00 * 2 for 1-15 January, then 20.00 * 2 for 16-31.
    first = _segment(date(2026, 1, 1), date(2026, 1, 15), 1000, 2, plan_id=1)
    second = _segment(date(2026, 1, 16), date(2026, 1, 31), 2000, 2, plan_id=2)
    assert recurring_amount(first, 31) == D(30000) / 31  # 967.74…
    assert recurring_amount(second, 31) == D(64000) / 31  # 2064.51…
    assert (
        round_half_up(recurring_amount(first, 31)) + round_half_up(recurring_amount(second, 31)) == 968 + 2065
    )


def test_full_cycles_cost_exactly_the_price() -> None:
    assert recurring_amount(_segment(*JAN, price=4999, quantity=3), 31) == D(14997)
    q1 = Cycle(date(2026, 1, 1), date(2026, 3, 31))
    full = _segment(q1.start, q1.end, price=9000)
    assert recurring_amount(full, 90) == D(9000)
    assert is_full_cycle([full], q1)
    # A quarter joined on 1 February: 59 of 90 days.
    assert recurring_amount(_segment(date(2026, 2, 1), q1.end, price=9000), 90) == D(5900)


def test_weekly_and_daily_prices_over_a_month() -> None:
    assert recurring_amount(_segment(*JAN, price=700), 7) == D(3100)
    assert recurring_amount(_segment(*JAN, price=100), 1) == D(3100)
    assert recurring_amount(_segment(date(2026, 2, 1), date(2026, 2, 28), price=1000), 7) == D(4000)


def test_is_full_cycle_needs_one_segment_over_every_day() -> None:
    cycle = Cycle(*JAN)
    assert is_full_cycle([_segment(*JAN)], cycle)
    assert not is_full_cycle([], cycle)
    assert not is_full_cycle([_segment(date(2026, 1, 1), date(2026, 1, 30))], cycle)
    halves = [_segment(date(2026, 1, 1), date(2026, 1, 15)), _segment(date(2026, 1, 16), date(2026, 1, 31))]
    assert not is_full_cycle(halves, cycle)


def test_recurring_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        _segment(date(2026, 1, 2), date(2026, 1, 1))
    with pytest.raises(ValueError):
        recurring_amount(_segment(*JAN), 0)


# --- discounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent_bp", "start", "end", "expected"),
    [
        (10000, date(2025, 1, 1), None, D(3100)),
        (5000, date(2026, 1, 11), None, D(1050)),  # 21 of 31 days at half
        (5000, date(2025, 12, 1), date(2026, 1, 10), D(500)),  # 10 of 31 days at half
        (2500, date(2026, 1, 5), date(2026, 1, 8), D(100)),  # 4 days at a quarter
        (10000, date(2025, 1, 1), date(2025, 12, 31), D(0)),  # over before the line
        (10000, date(2026, 2, 1), None, D(0)),  # starts after it
    ],
)
def test_discount_by_overlap(percent_bp: int, start: date, end: date | None, expected: Decimal) -> None:
    assert discount_amount(D(3100), *JAN, percent_bp, start, end) == expected


def test_discount_of_a_prorated_line_follows_the_line_dates() -> None:
    # 15 % off from 20 January on a line for 10-31 January worth 2200: 12 of 22 days.
    assert discount_amount(D(2200), date(2026, 1, 10), date(2026, 1, 31), 1500, date(2026, 1, 20), None) == D(
        180
    )


# --- usage --------------------------------------------------------------------------------------


def test_per_unit_in_major_units_per_meter_unit() -> None:
    charge = _charge("per_unit", unit_price="0.02")
    price = price_usage(charge, D("1234.5"), "USD")
    assert price.amount == D("2469")  # 24.69 USD
    assert price.unit_price == D("0.02")
    assert price_usage(charge, D(0), "USD").amount == 0
    assert price_usage(_charge("per_unit", unit_price="3"), D(10), "JPY").amount == 30
    assert price_usage(_charge("per_unit", unit_price="0.125"), D(3), "KWD").amount == 375


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (D(0), D(0)),
        (D(800), D(0)),
        (D(1000), D(0)),
        (D(3000), D(2000)),  # 2000 * 0.01
        (D(5000), D(4000)),  # 4000 * 0.01, the last band not reached
        (D(5001), D("4500.5")),  # + 1 * 0.005 + the flat 5.00
        (D(12000), D(8000)),  # 4000 * 0.01 + 7000 * 0.005 + 5.00
    ],
)
def test_graduated(quantity: Decimal, expected: Decimal) -> None:
    assert price_usage(GRADUATED, quantity, "USD").amount == expected


def test_graduated_details_list_the_tiers_touched() -> None:
    price = price_usage(GRADUATED, D(12000), "USD")
    assert price.details == {
        "model": "graduated",
        "tiers": [
            {"from": 0, "to": 1000, "quantity": "1000", "unit_price": "0", "flat_amount": 0, "amount": "0"},
            {"from": 1000, "to": 5000, "quantity": "4000", "unit_price": "0.01", "flat_amount": 0,
             "amount": "4000"},
            {"from": 5000, "to": None, "quantity": "7000", "unit_price": "0.005", "flat_amount": 500,
             "amount": "4000"},
        ],
    }  # fmt: skip
    assert price.unit_price == D("0.0066666667")  # 80.00 USD / 12000, to ten places
    assert [t["to"] for t in price_usage(GRADUATED, D(3000), "USD").details["tiers"]] == [1000, 5000]
    assert price_usage(GRADUATED, D(0), "USD").details["tiers"] == []
    assert price_usage(GRADUATED, D(0), "USD").unit_price == 0


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (D(0), D(0)),
        (D(800), D(0)),
        (D(3000), D(3000)),  # all 3000 at 0.01
        (D(5000), D(5000)),  # up_to is inclusive
        (D(12000), D(6500)),  # all 12000 at 0.005 + 5.00
    ],
)
def test_volume(quantity: Decimal, expected: Decimal) -> None:
    assert price_usage(VOLUME, quantity, "USD").amount == expected


def test_volume_details_name_the_one_tier() -> None:
    price = price_usage(VOLUME, D(12000), "USD")
    assert price.details == {
        "model": "volume",
        "tiers": [{"from": 5000, "to": None, "quantity": "12000", "unit_price": "0.005", "flat_amount": 500,
                   "amount": "6500"}],
    }  # fmt: skip
    assert price.unit_price == D("0.0054166667")


@pytest.mark.parametrize(
    ("quantity", "packages"),
    [(D(0), 0), (D(1), 1), (D(1000), 1), (D(1001), 2), (D("2500.5"), 3), (D(3000), 3)],
)
def test_package_rounds_up_to_whole_packages(quantity: Decimal, packages: int) -> None:
    price = price_usage(PACKAGE, quantity, "USD")
    assert price.amount == packages * 500
    assert price.details == {
        "model": "package",
        "packages": packages,
        "package_size": 1000,
        "package_amount": 500,
    }


def test_package_effective_unit_price() -> None:
    assert price_usage(PACKAGE, D(1001), "USD").unit_price == D("0.0099900100")
    assert price_usage(PACKAGE, D(1000), "USD").unit_price == D("0.005")


@pytest.mark.parametrize("charge", [GRADUATED, VOLUME, PACKAGE, _charge("per_unit", unit_price="1")])
def test_negative_usage_is_refused(charge: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        price_usage(charge, D(-1), "USD")


@pytest.mark.parametrize(
    "charge",
    [
        _charge("tiered", unit_price="1"),
        _charge("per_unit"),
        _charge("graduated"),
        _charge("volume", tiers=[_tier(None, "1"), _tier(None, "2")]),
        _charge("package", package_size=0, package_amount=5),
    ],
)
def test_malformed_charges_are_refused(charge: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        price_usage(charge, D(1), "USD")
    with pytest.raises(ValueError):
        pricing_of(charge)


@pytest.mark.parametrize("charge", [GRADUATED, VOLUME, PACKAGE, _charge("per_unit", unit_price="0.125")])
def test_a_charge_read_once_prices_every_quantity_as_the_document_does(charge: dict[str, Any]) -> None:
    pricing = pricing_of(charge)
    for quantity in (D(0), D("0.5"), D(999), D(1000), D(1001), D("12345.678")):
        for currency in ("USD", "JPY"):
            assert pricing.price(quantity, currency) == price_usage(charge, quantity, currency)
    with pytest.raises(ValueError):
        pricing.price(D(-1), "USD")


# --- allocation, tax, rates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        (100, {"a": 1, "b": 1, "c": 1}, {"a": 34, "b": 33, "c": 33}),
        (-100, {"a": 1, "b": 1, "c": 1}, {"a": -34, "b": -33, "c": -33}),
        (1000, {"a": 1, "b": 2, "c": 3, "d": 4}, {"a": 100, "b": 200, "c": 300, "d": 400}),
        (7, {"x": 3000, "y": 2000, "z": 5000}, {"x": 2, "y": 1, "z": 4}),  # 2.1, 1.4, 3.5
        (10, {"a": D("0.5"), "b": D("0.25"), "c": D("0.25")}, {"a": 5, "b": 3, "c": 2}),  # tie: b first
        (0, {"a": 5, "b": 7}, {"a": 0, "b": 0}),
        (5, {"a": 0, "b": 0, "c": 0}, {"a": 2, "b": 2, "c": 1}),
        (5, {"a": 0, "b": 3}, {"a": 0, "b": 5}),
        (-9, {"only": 0}, {"only": -9}),
        (0, {}, {}),
    ],
)
def test_allocate(total: int, weights: dict[str, Decimal | int], expected: dict[str, int]) -> None:
    assert allocate(total, weights) == expected
    assert list(allocate(total, weights)) == list(weights)


def test_allocate_refuses_what_cannot_be_split() -> None:
    with pytest.raises(ValueError):
        allocate(1, {})
    with pytest.raises(ValueError):
        allocate(10, {"a": 1, "b": -1})
    with pytest.raises(ValueError):
        allocate(10, {"a": D("NaN")})


@pytest.mark.parametrize(
    ("subtotal", "rate_ppm", "expected"),
    [
        (10000, 200000, 2000),
        (999, 88750, 89),  # 88.66125
        (-999, 88750, -89),
        (50, 10000, 1),  # exactly half a minor unit rounds up
        (-50, 10000, -1),  # … and away from zero for a credit
        (49, 10000, 0),
        (123456, 0, 0),
    ],
)
def test_tax_amount(subtotal: int, rate_ppm: int, expected: int) -> None:
    assert tax_amount(subtotal, rate_ppm) == expected


@pytest.mark.parametrize(
    ("ppm", "text"),
    [(88750, "8.875"), (200000, "20"), (0, "0"), (1, "0.0001"), (55000, "5.5"), (1_000_000, "100")],
)
def test_format_and_parse_percent(ppm: int, text: str) -> None:
    assert format_ppm(ppm) == text
    assert parse_percent(text) == ppm


def test_parse_percent_accepts_padding_and_a_percent_sign() -> None:
    assert parse_percent(" 8.50000 ") == 85000
    assert parse_percent("20%") == 200000


@pytest.mark.parametrize("text", ["8.87501", "-1", "100.01", "abc", "", "NaN", "Infinity", "1e3"])
def test_parse_percent_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_percent(text)


# --- properties ---------------------------------------------------------------------------------

weights_st = st.one_of(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=12),
    st.lists(st.decimals(0, 10**4, places=4, allow_nan=False, allow_infinity=False), min_size=1, max_size=12),
)


@given(st.integers(-(10**9), 10**9), weights_st)
def test_allocate_sums_to_total_and_stays_within_one_of_each_share(total: int, raw: list[Any]) -> None:
    weights = {f"k{i}": w for i, w in enumerate(raw)}
    parts = allocate(total, weights)
    assert list(parts) == list(weights)
    assert sum(parts.values()) == total
    whole = sum(Fraction(w) for w in raw)
    for key, weight in weights.items():
        share = Fraction(total) * Fraction(weight) / whole if whole else Fraction(total, len(raw))
        assert abs(parts[key] - share) < 1


prices_st = st.decimals(0, 1, places=4, allow_nan=False, allow_infinity=False)
quantities_st = st.decimals(0, 10**6, places=3, allow_nan=False, allow_infinity=False)


@st.composite
def tiers_st(draw: st.DrawFn) -> list[dict[str, Any]]:
    bounds = sorted(draw(st.sets(st.integers(1, 10**5), max_size=5)))
    flats = st.one_of(st.none(), st.integers(0, 10**4))
    tiers = [_tier(up_to, str(draw(prices_st)), draw(flats)) for up_to in bounds]
    return [*tiers, _tier(None, str(draw(prices_st)), draw(flats))]


@given(tiers_st(), quantities_st, quantities_st)
def test_graduated_never_costs_less_for_more(tiers: list[dict[str, Any]], a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    charge = _charge("graduated", tiers=tiers)
    assert price_usage(charge, low, "USD").amount <= price_usage(charge, high, "USD").amount


@given(
    st.sampled_from(["graduated", "volume"]), prices_st, quantities_st, st.sampled_from(["USD", "JPY", "KWD"])
)
def test_a_single_tier_is_per_unit(model: str, unit_price: Decimal, quantity: Decimal, currency: str) -> None:
    tiered = price_usage(_charge(model, tiers=[_tier(None, str(unit_price))]), quantity, currency)
    per_unit = price_usage(_charge("per_unit", unit_price=str(unit_price)), quantity, currency)
    assert tiered.amount == per_unit.amount


@st.composite
def cycle_split_st(draw: st.DrawFn) -> tuple[Cycle, int, list[Segment], int, int]:
    """A cycle of some pay period cut into consecutive segments on the same terms."""
    pay_period = draw(st.sampled_from(["month", "quarter", "year", "week", "day"]))
    anchor = draw(st.integers(1, 28))
    # Quarters and years are drawn from their January, the one period that bills them.
    month = 1 if pay_period in ("quarter", "year") else draw(st.integers(1, 12))
    start = date(draw(st.integers(2020, 2030)), month, anchor)
    (cycle, divisor), *_ = cycles_billed_in((start, start + timedelta(days=27)), pay_period, anchor)
    cuts = sorted(draw(st.sets(st.integers(1, cycle.days - 1), max_size=12)))
    price, quantity = draw(st.integers(0, 10**7)), draw(st.integers(1, 1000))
    edges = [cycle.start + timedelta(days=c) for c in [0, *cuts, cycle.days]]
    segments = [_segment(a, b - timedelta(days=1), price, quantity) for a, b in pairwise(edges)]
    return cycle, divisor, segments, price, quantity


@given(cycle_split_st())
def test_segments_of_a_cycle_add_up_to_the_whole_cycle(
    case: tuple[Cycle, int, list[Segment], int, int],
) -> None:
    cycle, divisor, segments, price, quantity = case
    assert segments[0].start == cycle.start and segments[-1].end == cycle.end
    full = recurring_amount(_segment(cycle.start, cycle.end, price, quantity), divisor)
    exact = Fraction(price * quantity * cycle.days, divisor)
    parts = [recurring_amount(s, divisor) for s in segments]
    if all(price * quantity * s.days % divisor == 0 for s in segments):
        assert sum(parts) == full
    # A day at 1/7 or 1/31 of a price has no finite decimal: each part is that quotient to
    # 28 significant digits, so the parts meet the whole to within a few units of the 27th.
    assert abs(sum(Fraction(p) for p in parts) - exact) <= exact * Fraction(1, 10**26)
    if cycle.days == divisor:  # a month, a quarter or a year: the price itself
        assert full == price * quantity
        assert round_half_up(sum(parts, D(0))) == price * quantity


@given(
    st.integers(2020, 2030),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 10**8),
    st.integers(1, 100),
)
def test_a_full_month_costs_price_times_quantity(
    year: int, month: int, anchor: int, price: int, qty: int
) -> None:
    start = date(year, month, anchor)
    (cycle, divisor), *_ = cycles_billed_in((start, start + timedelta(days=27)), "month", anchor)
    assert recurring_amount(_segment(cycle.start, cycle.end, price, qty), divisor) == price * qty


@given(
    st.decimals(-(10**9), 10**9, allow_nan=False, allow_infinity=False),
    st.dates(date(2020, 1, 1), date(2030, 12, 31)),
    st.integers(0, 400),
    st.integers(0, 400),
    st.one_of(st.none(), st.integers(0, 400)),
)
def test_a_whole_discount_over_the_whole_line_is_the_line(
    line: Decimal, start: date, days: int, lead: int, tail: int | None
) -> None:
    end = start + timedelta(days=days)
    discount_end = None if tail is None else end + timedelta(days=tail)
    assert discount_amount(line, start, end, 10000, start - timedelta(days=lead), discount_end) == line


@given(st.integers(1, 28), st.integers(2020, 2030), st.sampled_from(["quarter", "year"]))
def test_twelve_periods_bill_every_day_of_a_year_of_cycles_once(
    anchor: int, year: int, pay_period: str
) -> None:
    first = date(year, 1, anchor)
    periods = [period_ending(add_months(first, i + 1) - timedelta(days=1), anchor) for i in range(12)]
    assert periods[0] == (first, add_months(first, 1) - timedelta(days=1))
    cycles = [c for p in periods if p for c, _ in cycles_billed_in(p, pay_period, anchor)]
    assert len(cycles) == (4 if pay_period == "quarter" else 1)
    assert cycles[0].start == date(year, 1, anchor)
    assert all(a.end + timedelta(days=1) == b.start for a, b in pairwise(cycles))
    assert cycles[-1].end == date(year + 1, 1, anchor) - timedelta(days=1)


@given(st.integers(0, 1_000_000))
def test_percent_text_round_trips(ppm: int) -> None:
    assert parse_percent(format_ppm(ppm)) == ppm
