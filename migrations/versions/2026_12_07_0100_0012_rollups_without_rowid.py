"""On SQLite, the rollups and the distinct values a fold writes are tables clustered on
their keys (WITHOUT ROWID): one B-tree a row instead of the table and its key's index,
so a fold finds and writes each row once, and a read by key has every column at hand.
PostgreSQL keeps its tables as they are (its rollup key carries the measures already).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 01:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("usage_rollups", "usage_unique_values")
CLUSTERED = " WITHOUT ROWID"


def _rebuild(table: str, clustered: bool) -> None:
    """The table made again from its own definition, with or without a rowid, its rows
    copied across (neither table has indexes beyond its key, nor foreign keys either way)."""
    bind = op.get_bind()
    (definition,) = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).one()
    definition = definition.removesuffix(CLUSTERED)
    if clustered:
        definition += CLUSTERED
    op.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_before"')
    op.execute(definition)
    op.execute(f'INSERT INTO "{table}" SELECT * FROM "{table}_before"')
    op.execute(f'DROP TABLE "{table}_before"')


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            _rebuild(table, clustered=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            _rebuild(table, clustered=False)
