from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from boughs.db import Base
from boughs.kit.types import BigId, JSONDoc, UTCDateTime


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_provider_id_account_id_id", "provider_id", "account_id", "id"),
        Index("ix_audit_events_provider_id_created_at", "provider_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    actor_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    # "user:12", "token:4" or "system:expiry-sweep": who did it, even after the user is gone.
    actor_label: Mapped[str] = mapped_column(String(200))
    acting_account_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    account_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
