"""What a provider sells (plans and their offers) and the network it sells it on."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import false

from boughs.db import Base
from boughs.kit.types import BigId, JSONDoc, UTCDateTime


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class PlanKind(StrEnum):
    internet = "internet"
    voice = "voice"
    custom = "custom"
    sim = "sim"


class PayPeriod(StrEnum):
    day = "day"
    week = "week"
    month = "month"
    quarter = "quarter"
    year = "year"


class CapAction(StrEnum):
    disable = "disable"
    throttle = "throttle"


class PricingModel(StrEnum):
    per_unit = "per_unit"
    graduated = "graduated"
    volume = "volume"
    package = "package"


class ChildBillingMode(StrEnum):
    """How a plan on a parent bills its subtree's usage (m3ter): pooled and shown per child,
    pooled and summed, or each child rated alone."""

    parent_breakdown = "parent_breakdown"
    parent_summary = "parent_summary"
    child = "child"


class PoolKind(StrEnum):
    permanent = "permanent"
    dynamic = "dynamic"


class Plan(Base):
    """A tariff. Rates are in kbit/s; the data cap in bytes per pay period.

    ``usage_charges`` is a list of ``{"meter", "model", "unit_price", "tiers",
    "package_size", "package_amount"}`` documents (see ``catalog.schemas.UsageCharge``);
    the billing domain rates them.
    """

    __tablename__ = "plans"
    __table_args__ = (
        UniqueConstraint("provider_id", "name"),
        CheckConstraint(_in("kind", PlanKind), name="kind"),
        CheckConstraint(_in("pay_period", PayPeriod), name="pay_period"),
        CheckConstraint(f"cap_action IS NULL OR {_in('cap_action', CapAction)}", name="cap_action"),
        CheckConstraint("price_amount >= 0", name="price_amount"),
        CheckConstraint("device_allowance >= 1", name="device_allowance"),
        CheckConstraint(
            f"child_billing_mode IS NULL OR {_in('child_billing_mode', ChildBillingMode)}",
            name="child_billing_mode",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    pay_period: Mapped[str] = mapped_column(String(8))
    # Public plans are open to every account; the others only through an offer.
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    download_rate: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    upload_rate: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    data_cap_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cap_action: Mapped[str | None] = mapped_column(String(8), nullable=True)
    throttle_download_rate: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    throttle_upload_rate: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The data cap applies to the usage of the service's whole subtree, pooled.
    pooled_cap: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    device_allowance: Mapped[int] = mapped_column(Integer, default=1)
    # Null: the plan rates its own account's usage only.
    child_billing_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    usage_charges: Mapped[list[dict[str, Any]]] = mapped_column(JSONDoc, default=list)
    # A retired plan keeps its subscribers but takes no new ones.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Offer(Base):
    """A plan made available to an account and everything below it (seed 003)."""

    __tablename__ = "offers"
    __table_args__ = (
        UniqueConstraint("plan_id", "account_id"),
        Index("ix_offers_account_id", "account_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    created_by_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Router(Base):
    """A NAS. Its RADIUS secret is sealed (kit.secrets): RADIUS needs it back in clear."""

    __tablename__ = "routers"
    __table_args__ = (UniqueConstraint("provider_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    radius_secret_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IpPool(Base):
    """IPv4 addresses owned by the provider (owner_account_id null) or by an account.

    An account may use its own pools, the provider's, and those of its ancestors that
    are ``shared_with_descendants`` (seed 002).
    """

    __tablename__ = "ip_pools"
    __table_args__ = (
        UniqueConstraint("provider_id", "name"),
        Index("ix_ip_pools_owner_account_id", "owner_account_id"),
        CheckConstraint(_in("kind", PoolKind), name="kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    name: Mapped[str] = mapped_column(String(200))
    cidr: Mapped[str] = mapped_column(String(18))
    kind: Mapped[str] = mapped_column(String(16))
    owner_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True
    )
    shared_with_descendants: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Port(Base):
    """A network port; the same ownership and sharing rules as IPv4 pools. Speed in Mbit/s."""

    __tablename__ = "ports"
    __table_args__ = (
        UniqueConstraint("provider_id", "name"),
        Index("ix_ports_owner_account_id", "owner_account_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    name: Mapped[str] = mapped_column(String(200))
    location: Mapped[str] = mapped_column(String(255), default="")
    speed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    owner_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True
    )
    shared_with_descendants: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
