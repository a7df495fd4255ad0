"""On SQLite, the rollups and the distinct values key their rows on the hour as a number
(hours since the epoch) instead of its 26 characters of text: the rows take half the
pages, and a fold writes every page it touches. PostgreSQL keeps its timestamptz.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 06:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("usage_rollups", "usage_unique_values")
AS_TEXT = "hour DATETIME NOT NULL"
AS_NUMBER = "hour INTEGER NOT NULL"
# The stored text of an hour is 'YYYY-MM-DD HH:00:00.000000', in UTC.
NUMBER_OF_TEXT = "CAST(strftime('%s', hour) AS INTEGER) / 3600"
TEXT_OF_NUMBER = "strftime('%Y-%m-%d %H:00:00.000000', hour * 3600, 'unixepoch')"


def _rebuild(table: str, column_from: str, column_to: str, hour_from_old: str) -> None:
    """The table made again from its own definition with the hour column retyped, its rows
    copied across in key order (neither table has indexes beyond its key, nor foreign keys)."""
    bind = op.get_bind()
    (definition,) = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).one()
    assert column_from in definition, f"{table}: no column {column_from!r} in {definition}"
    columns = [row[1] for row in bind.exec_driver_sql(f'PRAGMA table_info("{table}")')]
    values = ", ".join(hour_from_old if name == "hour" else name for name in columns)
    op.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_before"')
    op.execute(definition.replace(column_from, column_to))
    op.execute(f'INSERT INTO "{table}" ({", ".join(columns)}) SELECT {values} FROM "{table}_before"')
    op.execute(f'DROP TABLE "{table}_before"')


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            _rebuild(table, AS_TEXT, AS_NUMBER, NUMBER_OF_TEXT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            _rebuild(table, AS_NUMBER, AS_TEXT, TEXT_OF_NUMBER)
