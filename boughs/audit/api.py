from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query

from boughs.accounts import service as accounts
from boughs.audit import repository
from boughs.audit.schemas import AuditEventOut
from boughs.deps import CtxDep, domain_router
from boughs.kit.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor, encode_cursor

router = domain_router("", "audit")


@router.get("/accounts/{account_id}/audit", response_model=Page[AuditEventOut])
async def list_audit(
    ctx: CtxDep,
    account_id: int,
    actor_user_id: int | None = None,
    entity: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = DEFAULT_LIMIT,
) -> Page[AuditEventOut]:
    """Changes to the account and everything below it, newest first."""
    check_limit(limit)
    account = await accounts.get(ctx, account_id)
    before_id = decode_cursor(cursor)
    rows = await repository.in_subtree(
        ctx.session, ctx.provider_id, account.path,
        actor_user_id=actor_user_id, entity=entity, since=since, until=until,
        before_id=before_id if isinstance(before_id, int) else None, limit=limit + 1,
    )  # fmt: skip
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return Page[AuditEventOut](
        items=[AuditEventOut.model_validate(r) for r in rows[:limit]], next_cursor=next_cursor
    )
