"""The one clock. Everything that needs "now" asks a Clock, so tests can travel in time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to; for tests and time-travel scenarios."""

    def __init__(self, at: datetime) -> None:
        self._at = ensure_utc(at)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = ensure_utc(at)

    def advance(self, delta: timedelta) -> None:
        self._at += delta


def ensure_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not accepted: give a timezone")
    return moment.astimezone(UTC)


def start_of_hour(moment: datetime) -> datetime:
    """The UTC hour ``moment`` falls in: usage rollups are kept per UTC hour."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def local_date(moment: datetime, timezone: str) -> date:
    """The calendar date at ``moment`` in ``timezone`` (billing and expiry are local dates)."""
    return moment.astimezone(ZoneInfo(timezone)).date()


def end_of_local_day(day: date, timezone: str) -> datetime:
    """The first instant after ``day`` in ``timezone``, as UTC: an expiry date's last moment."""
    next_day = datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(timezone))
    return next_day.astimezone(UTC)
