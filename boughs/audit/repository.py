from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts.models import Account
from boughs.audit.models import AuditEvent
from boughs.kit.paths import upper_bound

_INSERT = insert(AuditEvent)


async def add_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_INSERT, rows)


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


async def in_subtree(
    session: AsyncSession,
    provider_id: int,
    path: str,
    *,
    actor_user_id: int | None,
    entity: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[AuditEvent]:
    """Events about the accounts now in a subtree, newest first."""
    stmt = (
        select(AuditEvent)
        .join(Account, Account.id == AuditEvent.account_id)
        .where(
            AuditEvent.provider_id == provider_id,
            Account.provider_id == provider_id,
            Account.path >= path,
            Account.path < upper_bound(path),
        )
    )
    if actor_user_id is not None:
        stmt = stmt.where(AuditEvent.actor_user_id == actor_user_id)
    if entity is not None:
        stmt = stmt.where(AuditEvent.entity == entity)
    if since is not None:
        stmt = stmt.where(AuditEvent.created_at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.created_at < until)
    if before_id is not None:
        stmt = stmt.where(AuditEvent.id < before_id)
    result = await session.execute(stmt.order_by(AuditEvent.id.desc()).limit(limit))
    return list(result.scalars())
