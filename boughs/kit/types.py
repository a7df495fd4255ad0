"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, BigInteger, Dialect, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import DateTime, TypeDecorator

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Byte-order collation on PostgreSQL, so a path prefix is an index range scan there too
# (SQLite compares bytes already).
PathString = String(512).with_variant(String(512, collation="C"), "postgresql")

JSONDoc = JSON().with_variant(JSONB(), "postgresql")

# The largest id a BIGINT holds; anything larger cannot name a stored row.
MAX_ID = 2**63 - 1


def storable_id(value: int) -> bool:
    return 0 < value <= MAX_ID


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every engine."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return _utc_from_stored(value)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name == "sqlite":
            # SQLite hands back the text we stored: parsed once, in C, rather than first by
            # the dialect's own regular expression and then again here.
            return _utc_from_stored
        return super().result_processor(dialect, coltype)


def _utc_from_stored(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)


def hour_number(moment: datetime) -> int:
    """The first whole UTC hour at or after ``moment``, as hours since the epoch: how
    ``UTCHour`` stores an hour on SQLite."""
    return -((_EPOCH - moment) // _HOUR)


def hour_of_number(number: int) -> datetime:
    return _EPOCH + number * _HOUR


class UTCHour(TypeDecorator[datetime]):
    """A whole UTC hour: on PostgreSQL a timestamptz, on SQLite the hours since the epoch.

    The rollup tables key every row on its hour; as a number their rows take half the
    pages the text form did, and a fold writes each page it touches. An instant between
    two hours binds as the later one, so ``hour >= t`` and ``hour < t`` select exactly the
    hours that start in ``[t, …)`` and before ``t`` on both engines; stored values are
    always whole hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Integer())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if dialect.name == "sqlite":
            return hour_number(value)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, int):
            return hour_of_number(value)
        return _utc_from_stored(value)
