from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
