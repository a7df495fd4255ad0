from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import false

from boughs.db import Base
from boughs.kit.types import BigId, JSONDoc, PathString, UTCDateTime


class AccountStatus(StrEnum):
    active = "active"
    suspended = "suspended"
    expired = "expired"
    cancelled = "cancelled"


class InvoiceMode(StrEnum):
    with_parent = "with_parent"
    separate = "separate"


class ParentAccess(StrEnum):
    manage = "manage"
    view = "view"
    none = "none"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        # A subtree is a range of this index: path >= '/1/5/' AND path < '/1/50'. Status
        # and depth ride along so counts and depth checks over a subtree never touch the
        # table. A path ends in its account's id, so paths are unique without a constraint.
        Index("ix_accounts_subtree", "provider_id", "path", "status", "depth"),
        UniqueConstraint("provider_id", "external_id"),
        # parent_id first: it also serves the foreign key's check when an account is deleted.
        Index("ix_accounts_parent_id_provider_id", "parent_id", "provider_id"),
        Index("ix_accounts_provider_id_name", "provider_id", "name"),
        # Whether any account's usage was invoiced, or its chain changed, after a moment:
        # asked by every usage fold, answered from the top of these. Partial, so only a
        # question about these columns can use them: on a one-provider SQLite file, a
        # narrow index on provider_id looks like a cheap way to read "the provider's
        # accounts" for any other query.
        Index(
            "ix_accounts_provider_id_usage_billed_until",
            "provider_id",
            "usage_billed_until",
            sqlite_where=text("usage_billed_until IS NOT NULL"),
            postgresql_where=text("usage_billed_until IS NOT NULL"),
        ),
        Index(
            "ix_accounts_provider_id_chain_since",
            "provider_id",
            "chain_since",
            sqlite_where=text("chain_since IS NOT NULL"),
            postgresql_where=text("chain_since IS NOT NULL"),
        ),
        # The few accounts that narrow their parents' access, found when a scope is built.
        Index("ix_accounts_parent_access_provider_id", "parent_access", "provider_id"),
        # The few accounts held for an unpaid invoice, found in a subtree without reading it.
        Index(
            "ix_accounts_held",
            "provider_id",
            "path",
            sqlite_where=text("dunning_hold = 1"),
            postgresql_where=text("dunning_hold"),
        ),
        CheckConstraint(_in("status", AccountStatus), name="status"),
        CheckConstraint(_in("invoice_mode", InvoiceMode), name="invoice_mode"),
        CheckConstraint(_in("parent_access", ParentAccess), name="parent_access"),
        CheckConstraint("depth >= 0", name="depth"),
        CheckConstraint("billing_anchor_day BETWEEN 1 AND 28", name="billing_anchor_day"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=True
    )
    root_id: Mapped[int] = mapped_column(BigId)
    path: Mapped[str] = mapped_column(PathString)
    depth: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    contact_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    technical_contact_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.active.value)
    expiry_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    invoice_mode: Mapped[str] = mapped_column(String(16), default=InvoiceMode.separate.value)
    parent_access: Mapped[str] = mapped_column(String(8), default=ParentAccess.manage.value)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    features: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    billing_address: Mapped[str | None] = mapped_column(Text, nullable=True)
    billing_tax_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    billing_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    msa_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    msa_accepted_by: Mapped[int | None] = mapped_column(BigId, nullable=True)
    msa_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    aup_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    aup_accepted_by: Mapped[int | None] = mapped_column(BigId, nullable=True)
    aup_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The password a service without its own uses (seed 004), sealed with kit.secrets.
    service_password_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Usage before this instant has been invoiced; usage reported for it arrives late.
    usage_billed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Tax in parts per million of the amount (8.875 % = 88750); null inherits. Exempt wins.
    tax_rate_ppm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tax_exempt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Days from issue to due date; null inherits.
    net_terms_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Billing periods of an invoice owner end the day before this day of the month (1: calendar months).
    billing_anchor_day: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Suspended for an overdue invoice (billing.DunningHold): the account itself, not its subtree.
    dunning_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # When the account's chain of ancestors last changed (it or an ancestor moved); null if
    # it never did. Usage since then pooled along today's path; older usage, along the
    # link history.
    chain_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AccountLink(Base):
    """One interval of an account's place in the tree: parent_id from valid_from to valid_to.

    An account's links tile its life without gaps or overlaps; parent_id is null for
    time spent at top level. parent_id has no foreign key on purpose: history outlives
    deleted parents and billing still needs to know who the parent was.
    """

    __tablename__ = "account_links"
    __table_args__ = (
        # No index leads with provider_id here: without planner statistics SQLite could
        # prefer it to the child's own index and read every link of the provider.
        Index("ix_account_links_child_id_valid_from", "child_id", "valid_from"),
        Index("ix_account_links_parent_id_valid_from", "parent_id", "valid_from"),
        # The links a move closed: a bill run finds the accounts that moved during its period.
        Index(
            "ix_account_links_closed",
            "provider_id",
            "valid_to",
            sqlite_where=text("valid_to IS NOT NULL"),
            postgresql_where=text("valid_to IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    child_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
