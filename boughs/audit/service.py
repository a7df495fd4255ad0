"""Recording changes. Audit rows are only ever inserted: nothing edits or deletes them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from boughs.audit import repository
from boughs.context import Ctx


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields that differ, so an event reads as what changed."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


def event(
    ctx: Ctx,
    *,
    entity: str,
    entity_id: int | str,
    action: str,
    account_id: int | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return repository.row(
        provider_id=ctx.provider_id,
        actor_user_id=ctx.actor.user_id,
        actor_label=ctx.actor.label,
        acting_account_id=ctx.acting_account_id,
        account_id=account_id,
        entity=entity,
        entity_id=str(entity_id),
        action=action,
        before=_jsonable(before) if before is not None else None,
        after=_jsonable(after) if after is not None else None,
        request_id=ctx.request_id,
        created_at=ctx.now(),
    )


async def record(
    ctx: Ctx,
    *,
    entity: str,
    entity_id: int | str,
    action: str,
    account_id: int | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    row = event(
        ctx,
        entity=entity,
        entity_id=entity_id,
        action=action,
        account_id=account_id,
        before=before,
        after=after,
    )
    await repository.add_many(ctx.session, [row])


async def record_many(ctx: Ctx, rows: list[dict[str, Any]]) -> None:
    await repository.add_many(ctx.session, rows)
