"""Metered usage: what is measured (meters), what was reported (events), and the hourly
rollups that answer usage questions without reading events.

Quantities are integers in the meter's smallest step (``10**-precision`` of its unit),
so sums are exact on both engines and nothing is rounded on the way in.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from boughs.db import Base
from boughs.kit.types import BigId, JSONDoc, UTCDateTime, UTCHour


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Aggregation(StrEnum):
    sum = "sum"
    max = "max"
    count = "count"  # type: ignore[assignment]  # shadows str.count, harmlessly
    unique_count = "unique_count"


class RollupKind(StrEnum):
    """Whose usage a rollup row holds: one service's, one account's own (its services and
    events reported on the account itself), or the usage below an account: of its
    descendants as they stood when the usage happened. An account's subtree is its own
    rows and its below rows together, so an event is never written twice for one account
    (most accounts are leaves, with no below rows at all)."""

    service = "service"
    account = "account"
    below = "below"


class Meter(Base):
    """Something the provider measures and may bill: bytes, minutes, SIM data, API calls."""

    __tablename__ = "meters"
    __table_args__ = (
        UniqueConstraint("provider_id", "code"),
        CheckConstraint(_in("aggregation", Aggregation), name="aggregation"),
        CheckConstraint("precision >= 0 AND precision <= 6", name="precision"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(String(32))
    aggregation: Mapped[str] = mapped_column(String(16))
    # Decimal places a quantity may carry; quantities are stored as integers of that step.
    precision: Mapped[int] = mapped_column(Integer, default=0)
    # unique_count meters count distinct values of this event property.
    unique_property: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Usage of this meter counts toward plans' data caps (bytes).
    counts_toward_cap: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsageEvent(Base):
    """One reported measurement, stored once: ``event_key`` is the sender's id."""

    __tablename__ = "usage_events"
    __table_args__ = (
        UniqueConstraint("provider_id", "event_key"),
        Index("ix_usage_events_provider_id_occurred_at", "provider_id", "occurred_at"),
        Index("ix_usage_events_account_id_occurred_at", "account_id", "occurred_at"),
        # Only late events are looked up by lateness (billing's adjustments): a partial index.
        Index(
            "ix_usage_events_late_account_id",
            "account_id",
            sqlite_where=text("late"),
            postgresql_where=text("late"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    event_key: Mapped[str] = mapped_column(String(200))
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id", ondelete="RESTRICT"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    service_id: Mapped[int | None] = mapped_column(
        ForeignKey("services.id", ondelete="SET NULL"), nullable=True
    )
    quantity: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A digest of what the sender sent: the same id with other content is a conflict.
    fingerprint: Mapped[str] = mapped_column(String(32))
    # The batch that brought it (null: taken before batches were recorded, and rolled up).
    batch_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Reported after the period it belongs to was invoiced: billed as an adjustment.
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    # The invoice that billed this late event as an adjustment.
    late_invoice_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, nullable=True)


class UsageBatch(Base):
    """The events one request (or one chunk of an import) brought in, until the fold has
    added them to the rollups.

    Ingest only stores events; the fold adds whole batches to the rollups later, in a
    transaction that also marks them folded, so each event is added exactly once.
    Readers add the events of batches not yet folded, so answers are exact meanwhile.
    ``first_event_id``..``last_event_id`` bound the batch's events (which carry its id), so
    the fold finds them by a primary-key range. ``earliest_at``, the time of its earliest
    event, lets the fold skip looking for accounts invoiced or moved since (none, most
    of the time); batches from before it was kept have none, and are looked through.
    """

    __tablename__ = "usage_batches"
    __table_args__ = (
        Index(
            "ix_usage_batches_pending",
            "provider_id",
            "id",
            sqlite_where=text("folded_at IS NULL"),
            postgresql_where=text("folded_at IS NULL"),
        ),
        Index("ix_usage_batches_provider_id_received_at", "provider_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    events: Mapped[int] = mapped_column(Integer)
    first_event_id: Mapped[int] = mapped_column(BigInteger)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    earliest_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    folded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class UsageRollup(Base):
    """The usage of one meter in one UTC hour, for a service, an account or a subtree.

    Subtree rows are written for the account and each of its ancestors as the tree stood
    when the usage happened, so a later move never rewrites where past usage pooled.
    Only the fold writes rollups, from events that passed their references' checks, so
    the rows carry no foreign keys of their own (checking them again took half the fold's
    time); an account's rollups go with it by subject (``repository.forget_account``).
    """

    __tablename__ = "usage_rollups"
    __table_args__ = (
        # On PostgreSQL the key carries the measures too, so a bill run sums a subject's hours
        # from the index alone, without visiting each row (half the time of its usage reads).
        PrimaryKeyConstraint(
            "meter_id", "kind", "subject_id", "hour", postgresql_include=["total", "peak", "events"]
        ),
        CheckConstraint(_in("kind", RollupKind), name="kind"),
        # On SQLite the table is its key's B-tree: a fold writes each row once, not the row
        # and its key's index, and a read by key finds every column there.
        {"sqlite_with_rowid": False},
    )

    meter_id: Mapped[int] = mapped_column(BigId)
    kind: Mapped[str] = mapped_column(String(8))
    subject_id: Mapped[int] = mapped_column(BigId)
    hour: Mapped[datetime] = mapped_column(UTCHour)
    provider_id: Mapped[int] = mapped_column(BigId)
    # The account the row belongs to: the service's account, the account, the subtree's top.
    account_id: Mapped[int] = mapped_column(BigId)
    total: Mapped[int] = mapped_column(BigInteger)
    peak: Mapped[int] = mapped_column(BigInteger)
    events: Mapped[int] = mapped_column(BigInteger)


class UsageUniqueValue(Base):
    """The distinct values a unique_count meter saw in an hour, per rollup subject (no
    foreign keys, as the rollups)."""

    __tablename__ = "usage_unique_values"
    __table_args__ = (
        PrimaryKeyConstraint("meter_id", "kind", "subject_id", "hour", "value"),
        {"sqlite_with_rowid": False},
    )

    meter_id: Mapped[int] = mapped_column(BigId)
    kind: Mapped[str] = mapped_column(String(8))
    subject_id: Mapped[int] = mapped_column(BigId)
    hour: Mapped[datetime] = mapped_column(UTCHour)
    value: Mapped[str] = mapped_column(String(200))
    provider_id: Mapped[int] = mapped_column(BigId)
    account_id: Mapped[int] = mapped_column(BigId)


class CapUsage(Base):
    """Bytes a capped service (or, for a pooled cap, its subtree) used in one pay period."""

    __tablename__ = "cap_usage"
    __table_args__ = (PrimaryKeyConstraint("service_id", "period_start"),)

    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    period_start: Mapped[date] = mapped_column(Date)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    used_bytes: Mapped[int] = mapped_column(BigInteger)


class CapAlert(Base):
    """A cap threshold crossed in a period: written once, whatever the number of workers.

    ``cap_bytes`` is part of the key: a top-up raises the cap, and crossing the raised cap
    is a new crossing.
    """

    __tablename__ = "cap_alerts"
    __table_args__ = (
        UniqueConstraint("service_id", "period_start", "threshold_percent", "cap_bytes"),
        Index("ix_cap_alerts_provider_id_created_at", "provider_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    period_start: Mapped[date] = mapped_column(Date)
    threshold_percent: Mapped[int] = mapped_column(Integer)
    cap_bytes: Mapped[int] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger)
    # What the cap action did: warned, disabled, throttled or unchanged.
    outcome: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TopUp(Base):
    """Bytes added to a capped service's allowance for one pay period."""

    __tablename__ = "top_ups"
    __table_args__ = (
        Index("ix_top_ups_service_id_period_start", "service_id", "period_start"),
        CheckConstraint("bytes > 0", name="bytes"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    period_start: Mapped[date] = mapped_column(Date)
    bytes: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
