"""Typed amounts become minor units exactly, or are refused on their field."""

from __future__ import annotations

import pytest

from boughs.kit.errors import InvalidInput
from boughs.kit.money import parse_major


def test_a_typed_amount_is_taken_exactly() -> None:
    assert parse_major("1,200.50", "USD", "price") == 120050
    assert parse_major("0", "USD", "price") == 0
    assert parse_major("1500", "JPY", "price") == 1500


@pytest.mark.parametrize(
    ("raw", "currency", "positive", "message"),
    [
        ("abc", "USD", False, "is not an amount"),
        ("-1", "USD", False, "must be zero or more"),
        ("0", "USD", True, "must be more than zero"),
        ("12.505", "USD", False, "USD has 2 decimal places"),
        ("10.5", "JPY", False, "JPY has 0 decimal places"),
    ],
)
def test_an_amount_that_would_need_rounding_or_is_not_one_is_refused(
    raw: str, currency: str, positive: bool, message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_major(raw, currency, "amount", positive=positive)
    assert refused.value.errors[0].field == "amount"
    assert refused.value.errors[0].message == message
