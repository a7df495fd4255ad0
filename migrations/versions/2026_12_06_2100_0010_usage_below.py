"""Subtree rollups become rows of the usage below an account: an account's subtree is its
own rows and its below rows together, so an event is written once per account it counts for

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 21:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The account's own row of the same meter and hour as the row being changed.
_OWN = (
    "FROM usage_rollups AS own WHERE own.meter_id = usage_rollups.meter_id AND own.kind = 'account' "
    "AND own.subject_id = usage_rollups.subject_id AND own.hour = usage_rollups.hour"
)


def _kinds(*kinds: str) -> None:
    with op.batch_alter_table("usage_rollups") as batch_op:
        batch_op.drop_constraint(op.f("ck_usage_rollups_kind"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_usage_rollups_kind"), "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"
        )


def upgrade() -> None:
    _kinds("service", "account", "subtree", "below")
    # A subtree row less the account's own: the usage below it. Its peak stays the
    # subtree's, which with the account's own peak still gives the subtree's greatest.
    op.execute(
        f"UPDATE usage_rollups SET total = total - (SELECT own.total {_OWN}), "
        f"events = events - (SELECT own.events {_OWN}) "
        f"WHERE kind = 'subtree' AND EXISTS (SELECT 1 {_OWN})"
    )
    op.execute("DELETE FROM usage_rollups WHERE kind = 'subtree' AND events = 0")
    op.execute("UPDATE usage_rollups SET kind = 'below' WHERE kind = 'subtree'")
    # A subtree's distinct values include the account's own: their union with the
    # account's own values is still the subtree's.
    op.execute("UPDATE usage_unique_values SET kind = 'below' WHERE kind = 'subtree'")
    _kinds("service", "account", "below")


def downgrade() -> None:
    _kinds("service", "account", "subtree", "below")
    op.execute("UPDATE usage_unique_values SET kind = 'subtree' WHERE kind = 'below'")
    op.execute(
        "INSERT INTO usage_unique_values (meter_id, kind, subject_id, hour, value, provider_id, account_id) "
        "SELECT meter_id, 'subtree', subject_id, hour, value, provider_id, account_id "
        "FROM usage_unique_values AS own WHERE own.kind = 'account' AND NOT EXISTS ("
        "SELECT 1 FROM usage_unique_values AS v WHERE v.meter_id = own.meter_id AND v.kind = 'subtree' "
        "AND v.subject_id = own.subject_id AND v.hour = own.hour AND v.value = own.value)"
    )
    op.execute("UPDATE usage_rollups SET kind = 'subtree' WHERE kind = 'below'")
    op.execute(
        f"UPDATE usage_rollups SET total = total + (SELECT own.total {_OWN}), "
        f"events = events + (SELECT own.events {_OWN}), "
        f"peak = CASE WHEN peak > (SELECT own.peak {_OWN}) THEN peak ELSE (SELECT own.peak {_OWN}) END "
        f"WHERE kind = 'subtree' AND EXISTS (SELECT 1 {_OWN})"
    )
    op.execute(
        "INSERT INTO usage_rollups (meter_id, kind, subject_id, hour, provider_id, account_id, total, peak, "
        "events) SELECT meter_id, 'subtree', subject_id, hour, provider_id, account_id, total, peak, events "
        "FROM usage_rollups AS own WHERE own.kind = 'account' AND NOT EXISTS ("
        "SELECT 1 FROM usage_rollups AS s WHERE s.meter_id = own.meter_id AND s.kind = 'subtree' "
        "AND s.subject_id = own.subject_id AND s.hour = own.hour)"
    )
    _kinds("service", "account", "subtree")
