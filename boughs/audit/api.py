from __future__ import annotations

from datetime import datetime

from boughs.accounts import service as accounts
from boughs.audit import repository
from boughs.audit.schemas import AuditEventOut
from boughs.deps import CtxDep, Cursor, Limit, domain_router
from boughs.kit.pagination import DEFAULT_LIMIT, Page, check_limit, id_cursor, page_of

router = domain_router("", "audit")


@router.get("/accounts/{account_id}/audit", response_model=Page[AuditEventOut])
async def list_audit(
    ctx: CtxDep,
    account_id: int,
    actor_user_id: int | None = None,
    entity: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[AuditEventOut]:
    """Changes to the account and everything below it, newest first."""
    check_limit(limit)
    account = await accounts.get(ctx, account_id)
    rows = await repository.in_subtree(
        ctx.session, ctx.provider_id, account.path,
        actor_user_id=actor_user_id, entity=entity, since=since, until=until,
        before_id=id_cursor(cursor), limit=limit + 1,
    )  # fmt: skip
    page = page_of(rows, limit)
    return Page[AuditEventOut](
        items=[AuditEventOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor
    )
