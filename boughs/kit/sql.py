"""What statements need to know of the engine: which one it is, and conditions on a list of
values written once for both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

# Values per IN list on SQLite: under its limit of bound parameters with room to spare.
SQLITE_LIST = 900


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def one_of(session: AsyncSession, column: Any, values: Sequence[Any]) -> list[ColumnElement[bool]]:
    """Conditions that, run one statement each, select the rows whose ``column`` is one of
    ``values`` (none for no values).

    PostgreSQL gets one condition whatever the number: the values travel as one array and
    are looked up row by row (``IN (SELECT unnest(...))``). A statement with a parameter
    per value is new text for every count, which the driver parses anew each time (a third
    of a bill run's statement time once), and a plan PostgreSQL caches for "= ANY(array)"
    guesses the array's length and once chose to scan a whole table per batch. SQLite gets
    IN lists of SQLITE_LIST values each.
    """
    if not values:
        return []
    if is_postgres(session):
        array = bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return [column.in_(select(func.unnest(array)).scalar_subquery())]
    return [column.in_(list(values[i : i + SQLITE_LIST])) for i in range(0, len(values), SQLITE_LIST)]
