"""An index of the accounts held for an unpaid invoice

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 12:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Moves and status changes look for held accounts in a subtree; without this index
    # they read every account of it to find the few.
    op.create_index(
        "ix_accounts_held",
        "accounts",
        ["provider_id", "path"],
        sqlite_where=sa.text("dunning_hold = 1"),
        postgresql_where=sa.text("dunning_hold"),
    )


def downgrade() -> None:
    op.drop_index("ix_accounts_held", table_name="accounts")
