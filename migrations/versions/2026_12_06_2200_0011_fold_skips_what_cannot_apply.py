"""Usage batches keep the time of their earliest event, and accounts are indexed by when
their usage was last invoiced and their chain last changed: a fold asks whether any of
either happened after a batch's earliest event before it looks through the batch

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 22:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_batches") as batch_op:
        batch_op.add_column(sa.Column("earliest_at", sa.DateTime(timezone=True), nullable=True))
    for column in ("usage_billed_until", "chain_since"):
        op.create_index(
            f"ix_accounts_provider_id_{column}",
            "accounts",
            ["provider_id", column],
            sqlite_where=sa.text(f"{column} IS NOT NULL"),
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )


def downgrade() -> None:
    op.drop_index("ix_accounts_provider_id_chain_since", table_name="accounts")
    op.drop_index("ix_accounts_provider_id_usage_billed_until", table_name="accounts")
    with op.batch_alter_table("usage_batches") as batch_op:
        batch_op.drop_column("earliest_at")
