from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from boughs.db import Base
from boughs.kit.types import BigId, UTCDateTime


class Provider(Base):
    __tablename__ = "providers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    default_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    default_currency: Mapped[str] = mapped_column(String(3), default="USD")
    # The deepest an account may sit (top level is depth 0); null means no cap.
    max_account_depth: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Raw usage events older than this are deleted (and refused); rollups are kept forever.
    usage_retention_days: Mapped[int] = mapped_column(Integer, default=400, server_default="400")
    default_tax_rate_ppm: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    default_net_terms_days: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    # Days past the due date before an unpaid invoice suspends what it bills.
    dunning_grace_days: Mapped[int] = mapped_column(Integer, default=7, server_default="7")
    invoice_number_prefix: Mapped[str] = mapped_column(String(16), default="INV-", server_default="INV-")
    last_invoice_number: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    credit_note_number_prefix: Mapped[str] = mapped_column(String(16), default="CN-", server_default="CN-")
    last_credit_note_number: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
