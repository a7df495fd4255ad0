"""Services: a plan subscribed by an account (seed 004), with its history."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from boughs.db import Base
from boughs.kit.types import BigId, JSONDoc, UTCDateTime


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class ServiceStatus(StrEnum):
    pending = "pending"
    active = "active"
    disabled = "disabled"
    stopped = "stopped"
    archived = "archived"


class StatusReason(StrEnum):
    """Why a service has its status. Automatic transitions only undo their own reason."""

    manual = "manual"  # an operator chose it
    account = "account"  # the account (or an ancestor) is blocked
    cap = "cap"  # the data cap was reached
    waiting = "waiting"  # pending until another service activates
    scheduled = "scheduled"  # a scheduled change set it
    activated_with = "activated_with"  # the service it waited on activated
    cap_reset = "cap_reset"  # a new period began after the data cap disabled it
    top_up = "top_up"  # a top-up lifted the data cap


class Ipv4Mode(StrEnum):
    none = "none"
    permanent = "permanent"
    dynamic = "dynamic"


class ScheduledChangeState(StrEnum):
    pending = "pending"
    applied = "applied"
    cancelled = "cancelled"


LIVE = "status <> 'archived'"


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (
        Index("ix_services_account_id_status", "account_id", "status"),
        Index("ix_services_plan_id", "plan_id"),
        # A login and a permanent address belong to one live service of a provider; archived
        # services keep theirs for the record without holding them.
        Index(
            "uq_services_live_login",
            "provider_id",
            "login",
            unique=True,
            sqlite_where=text(LIVE),
            postgresql_where=text(LIVE),
        ),
        Index(
            "uq_services_live_ipv4_address",
            "provider_id",
            "ipv4_address",
            unique=True,
            sqlite_where=text(LIVE),
            postgresql_where=text(LIVE),
        ),
        CheckConstraint(_in("status", ServiceStatus), name="status"),
        CheckConstraint(_in("ipv4_mode", Ipv4Mode), name="ipv4_mode"),
        CheckConstraint("quantity >= 1", name="quantity"),
        CheckConstraint("end_date IS NULL OR end_date >= start_date", name="dates"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"))
    description: Mapped[str] = mapped_column(Text, default="")
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    unit: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Overrides of the plan's price and pay period; null uses the plan's.
    unit_price_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    pay_period: Mapped[str | None] = mapped_column(String(8), nullable=True)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str] = mapped_column(String(16), default=StatusReason.manual.value)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A pending service that activates when this one does.
    waits_on_service_id: Mapped[int | None] = mapped_column(
        ForeignKey("services.id", ondelete="SET NULL"), nullable=True
    )
    # When a cap-disabled service comes back by itself: the start of its next period.
    cap_resets_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Held to the plan's throttle rates (its data cap was reached) until this instant.
    throttled_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Internet options.
    router_id: Mapped[int | None] = mapped_column(
        ForeignKey("routers.id", ondelete="RESTRICT"), nullable=True
    )
    login: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Sealed with kit.secrets; null means the account's main service password.
    password_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    ipv4_mode: Mapped[str] = mapped_column(String(16), default=Ipv4Mode.none.value)
    ipv4_address: Mapped[str | None] = mapped_column(String(15), nullable=True)
    additional_networks: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    # Dynamic only: null means any pool the account may use.
    ipv4_pool_id: Mapped[int | None] = mapped_column(
        ForeignKey("ip_pools.id", ondelete="RESTRICT"), nullable=True
    )
    mac_addresses: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    port_id: Mapped[int | None] = mapped_column(ForeignKey("ports.id", ondelete="RESTRICT"), nullable=True)
    geo_address: Mapped[str | None] = mapped_column(Text, nullable=True)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


def is_live() -> ColumnElement[bool]:
    """A service not archived. The status is written as a literal, not a parameter, so that
    PostgreSQL uses the partial indexes on live services and estimates the condition in a
    cached plan too: as a parameter, one such plan scanned every service per login."""
    return Service.status != literal_column(f"'{ServiceStatus.archived.value}'")


class ServiceStatusChange(Base):
    """Every status a service has had, with why: the history its status is computed from."""

    __tablename__ = "service_status_changes"
    __table_args__ = (Index("ix_service_status_changes_service_id_id", "service_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    changed_by_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ServiceDiscount(Base):
    """A percentage off the service between two dates (end null: until the service ends).

    Stored in basis points (1250 = 12.50 %) so it is exact on both engines.
    """

    __tablename__ = "service_discounts"
    __table_args__ = (
        Index("ix_service_discounts_service_id", "service_id"),
        CheckConstraint("percent_bp > 0 AND percent_bp <= 10000", name="percent_bp"),
        CheckConstraint("end_date IS NULL OR end_date >= start_date", name="dates"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    percent_bp: Mapped[int] = mapped_column(Integer)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ServiceScheduledChange(Base):
    """A change that takes effect on a date: applied once by the scheduler, or cancelled."""

    __tablename__ = "service_scheduled_changes"
    __table_args__ = (
        Index("ix_service_scheduled_changes_service_id", "service_id"),
        # The scheduler's scan: what is due and not yet applied.
        Index("ix_service_scheduled_changes_state_effective_date", "state", "effective_date"),
        CheckConstraint(_in("state", ScheduledChangeState), name="state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    effective_date: Mapped[date] = mapped_column(Date)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"), nullable=True)
    unit_price_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # True when unit_price_amount is meant: null then clears the override.
    sets_unit_price: Mapped[bool] = mapped_column(default=False)
    quantity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=ScheduledChangeState.pending.value)
    outcome: Mapped[str] = mapped_column(Text, default="")
    created_by_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ServicePlanChange(Base):
    """A plan (or price) change and the proration it implies, for the billing domain to bill.

    The credit is the unused part of the old price and the charge the remaining part of
    the new one, both for the period the change falls in, in minor units.
    """

    __tablename__ = "service_plan_changes"
    __table_args__ = (Index("ix_service_plan_changes_service_id", "service_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    effective_date: Mapped[date] = mapped_column(Date)
    from_plan_id: Mapped[int] = mapped_column(BigId)
    to_plan_id: Mapped[int] = mapped_column(BigId)
    from_price_amount: Mapped[int] = mapped_column(BigInteger)
    to_price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    credit_amount: Mapped[int] = mapped_column(BigInteger)
    charge_amount: Mapped[int] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    changed_by_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
