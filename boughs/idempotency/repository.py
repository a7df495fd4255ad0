from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.idempotency.models import IdempotencyKey


async def find(
    session: AsyncSession, provider_id: int, user_id: int | None, key: str
) -> IdempotencyKey | None:
    result = await session.execute(
        select(IdempotencyKey).where(
            IdempotencyKey.provider_id == provider_id,
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.key == key,
        )
    )
    return result.scalar_one_or_none()


async def prune(session: AsyncSession, provider_id: int, older_than: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.provider_id == provider_id, IdempotencyKey.created_at < older_than
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
