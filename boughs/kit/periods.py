"""Calendar arithmetic for pay periods and renewals."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from enum import StrEnum


class Period(StrEnum):
    day = "day"
    week = "week"
    month = "month"
    quarter = "quarter"
    year = "year"


def add_months(day: date, months: int) -> date:
    """Same day-of-month ``months`` later, clamped to the month's last day (Jan 31 → Feb 28)."""
    month_index = day.month - 1 + months
    year = day.year + month_index // 12
    month = month_index % 12 + 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last))


def add_period(day: date, period: Period, count: int = 1) -> date:
    if period is Period.day:
        return day + timedelta(days=count)
    if period is Period.week:
        return day + timedelta(weeks=count)
    if period is Period.month:
        return add_months(day, count)
    if period is Period.quarter:
        return add_months(day, 3 * count)
    return add_months(day, 12 * count)
