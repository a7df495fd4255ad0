"""Usage batches folded into the rollups after ingest; when each account's chain last changed;
rollups without foreign keys, their key covering the measures on PostgreSQL

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 16:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ROLLUP_TABLES = ("usage_rollups", "usage_unique_values")
FOREIGN_KEYS = (("account_id", "accounts"), ("meter_id", "meters"), ("provider_id", "providers"))
ON_DELETE = {"accounts": "CASCADE", "meters": "RESTRICT", "providers": None}


def upgrade() -> None:
    op.create_table(
        "usage_batches",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("provider_id", BIG_ID, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("first_event_id", sa.BigInteger(), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("folded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["providers.id"], name=op.f("fk_usage_batches_provider_id_providers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_batches")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_usage_batches_pending",
        "usage_batches",
        ["provider_id", "id"],
        sqlite_where=sa.text("folded_at IS NULL"),
        postgresql_where=sa.text("folded_at IS NULL"),
    )
    op.create_index(
        "ix_usage_batches_provider_id_received_at", "usage_batches", ["provider_id", "received_at"]
    )
    # Events taken before batches existed were rolled up as they came: no batch, nothing pending.
    with op.batch_alter_table("usage_events") as batch_op:
        batch_op.add_column(sa.Column("batch_id", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("accounts") as batch_op:
        batch_op.add_column(sa.Column("chain_since", sa.DateTime(timezone=True), nullable=True))
    _backfill_chain_since()
    # Rollups are derived from events that passed these checks already, and only the fold
    # writes them: checking each rollup row again took half the fold's time. Deleting an
    # account deletes its rollups itself, by subject.
    for table in ROLLUP_TABLES:
        with op.batch_alter_table(table) as batch_op:
            for column, referred in FOREIGN_KEYS:
                batch_op.drop_constraint(f"fk_{table}_{column}_{referred}", type_="foreignkey")
            batch_op.drop_index(f"ix_{table}_account_id")
    if op.get_bind().dialect.name == "postgresql":
        # Bill runs sum a subject's hours from the key alone.
        op.execute(
            "ALTER TABLE usage_rollups DROP CONSTRAINT pk_usage_rollups, ADD CONSTRAINT pk_usage_rollups "
            "PRIMARY KEY (meter_id, kind, subject_id, hour) INCLUDE (total, peak, events)"
        )


def _backfill_chain_since() -> None:
    """Every account below a moved account gets the latest such move: its chain changed then."""
    bind = op.get_bind()
    moves = bind.execute(
        sa.text(
            "SELECT a.provider_id, a.path, max(l.valid_from) FROM account_links AS l "
            "JOIN accounts AS a ON a.id = l.child_id "
            "GROUP BY a.provider_id, a.path HAVING count(*) > 1 ORDER BY max(l.valid_from)"
        )
    ).all()
    for provider_id, path, moved_at in moves:
        # Oldest move first: a later move below or above overwrites with its own time.
        bind.execute(
            sa.text(
                "UPDATE accounts SET chain_since = :moved_at "
                "WHERE provider_id = :provider_id AND path >= :path AND path < :upper"
            ),
            {"moved_at": moved_at, "provider_id": provider_id, "path": path, "upper": path[:-1] + "0"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE usage_rollups DROP CONSTRAINT pk_usage_rollups, ADD CONSTRAINT pk_usage_rollups "
            "PRIMARY KEY (meter_id, kind, subject_id, hour)"
        )
    for table in ROLLUP_TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_index(f"ix_{table}_account_id", ["account_id"])
            for column, referred in FOREIGN_KEYS:
                batch_op.create_foreign_key(
                    f"fk_{table}_{column}_{referred}",
                    referred,
                    [column],
                    ["id"],
                    ondelete=ON_DELETE[referred],
                )
    with op.batch_alter_table("accounts") as batch_op:
        batch_op.drop_column("chain_since")
    with op.batch_alter_table("usage_events") as batch_op:
        batch_op.drop_column("batch_id")
    op.drop_index("ix_usage_batches_provider_id_received_at", table_name="usage_batches")
    op.drop_index("ix_usage_batches_pending", table_name="usage_batches")
    op.drop_table("usage_batches")
