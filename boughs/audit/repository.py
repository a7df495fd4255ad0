from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.audit.models import AuditEvent


async def add_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(AuditEvent), rows)


def row(
    *,
    provider_id: int,
    actor_user_id: int | None,
    actor_label: str,
    acting_account_id: int | None,
    account_id: int | None,
    entity: str,
    entity_id: str,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    request_id: str | None,
    created_at: datetime,
) -> dict[str, Any]:
    return {
        "provider_id": provider_id,
        "actor_user_id": actor_user_id,
        "actor_label": actor_label,
        "acting_account_id": acting_account_id,
        "account_id": account_id,
        "entity": entity,
        "entity_id": entity_id,
        "action": action,
        "before": before,
        "after": after,
        "request_id": request_id,
        "created_at": created_at,
    }
