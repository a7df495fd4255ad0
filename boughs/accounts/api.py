from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Response

from boughs.accounts import service
from boughs.accounts.models import AccountStatus
from boughs.accounts.repository import MAX_DEPTH, AccountFilter
from boughs.accounts.schemas import (
    AccountCreate,
    AccountCreated,
    AccountLinkOut,
    AccountOut,
    AccountUpdate,
    AdministratorAdded,
    AgreementsAccept,
    AgreementsOut,
    DeletionReport,
    EffectiveOut,
    MoveRequest,
    RenewRequest,
    StatusChange,
    SubtreeSummaryOut,
)
from boughs.deps import CtxDep, Cursor, IdFilter, Limit, domain_router
from boughs.kit.pagination import DEFAULT_LIMIT, Page
from boughs.memberships import service as memberships

router = domain_router("/accounts", "accounts")


def _page(page: service.PageOf) -> Page[AccountOut]:
    return Page[AccountOut](
        items=[AccountOut.model_validate(a) for a in page.items], next_cursor=page.next_cursor
    )


@router.post("", status_code=201, response_model=AccountCreated)
async def create_account(ctx: CtxDep, body: AccountCreate, response: Response) -> AccountCreated:
    """Top level (staff) or under `parent_id`; `administrators` get the admin role or an invitation."""
    account, added = await memberships.create_account(ctx, body)
    response.headers["Location"] = f"/api/v1/accounts/{account.id}"
    created = AccountCreated.model_validate(account)
    created.administrators = [_administrator(a) for a in added]
    return created


def _administrator(added: dict[str, Any]) -> AdministratorAdded:
    if added.get("membership"):
        m = added["membership"]
        return AdministratorAdded(membership_id=m["id"], email=m["email"])
    i = added["invitation"]
    return AdministratorAdded(invitation_id=i["id"], email=i["email"], link=i["link"])


@router.get("", response_model=Page[AccountOut])
async def list_accounts(
    ctx: CtxDep,
    q: Annotated[str | None, Query(description="Part of the name, or the exact external id.")] = None,
    status: AccountStatus | None = None,
    parent_id: IdFilter = None,
    top_level: bool | None = None,
    depth: Annotated[int | None, Query(ge=0, le=MAX_DEPTH)] = None,
    root_id: IdFilter = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[AccountOut]:
    f = AccountFilter(
        q=q,
        status=status.value if status else None,
        parent_id=parent_id,
        top_level=top_level,
        depth=depth,
        root_id=root_id,
    )
    return _page(await service.list_accounts(ctx, f, cursor, limit))


@router.get("/{account_id}", response_model=AccountOut)
async def get_account(ctx: CtxDep, account_id: int) -> AccountOut:
    return AccountOut.model_validate(await service.get(ctx, account_id))


@router.patch("/{account_id}", response_model=AccountOut)
async def update_account(ctx: CtxDep, account_id: int, body: AccountUpdate) -> AccountOut:
    return AccountOut.model_validate(await service.update(ctx, account_id, body))


@router.get("/{account_id}/deletion", response_model=DeletionReport)
async def preview_deletion(ctx: CtxDep, account_id: int) -> DeletionReport:
    """What DELETE would remove and keep, and whether it would be refused."""
    return DeletionReport.model_validate(await service.deletion_report(ctx, account_id))


@router.delete("/{account_id}", response_model=DeletionReport)
async def delete_account(ctx: CtxDep, account_id: int) -> DeletionReport:
    return DeletionReport.model_validate(await service.delete(ctx, account_id))


@router.get("/{account_id}/children", response_model=Page[AccountOut])
async def list_children(
    ctx: CtxDep, account_id: int, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[AccountOut]:
    return _page(await service.children(ctx, account_id, cursor, limit))


@router.get("/{account_id}/descendants", response_model=Page[AccountOut])
async def list_descendants(
    ctx: CtxDep, account_id: int, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[AccountOut]:
    """The whole subtree below the account, in tree order."""
    return _page(await service.descendants(ctx, account_id, cursor, limit))


@router.get("/{account_id}/ancestors", response_model=list[AccountOut])
async def list_ancestors(ctx: CtxDep, account_id: int) -> list[AccountOut]:
    """Root first."""
    return [AccountOut.model_validate(a) for a in await service.ancestors(ctx, account_id)]


@router.get("/{account_id}/subtree-summary", response_model=SubtreeSummaryOut)
async def subtree_summary(ctx: CtxDep, account_id: int) -> SubtreeSummaryOut:
    summary = await service.subtree_summary(ctx, account_id)
    return SubtreeSummaryOut.model_validate(summary)


@router.get("/{account_id}/effective", response_model=EffectiveOut)
async def get_effective(ctx: CtxDep, account_id: int) -> EffectiveOut:
    """Each inheritable attribute's value and the account it comes from."""
    return EffectiveOut.model_validate(await service.effective(ctx, account_id))


@router.get("/{account_id}/links", response_model=list[AccountLinkOut])
async def list_links(ctx: CtxDep, account_id: int) -> list[AccountLinkOut]:
    """The account's parent history, oldest first."""
    return [AccountLinkOut.model_validate(link) for link in await service.links(ctx, account_id)]


@router.post("/{account_id}/agreements", response_model=AgreementsOut)
async def accept_agreements(ctx: CtxDep, account_id: int, body: AgreementsAccept) -> AgreementsOut:
    """Record acceptance of the MSA and AUP (who, when, which version)."""
    result = await service.accept_agreements(ctx, account_id, msa=body.msa, aup=body.aup)
    return AgreementsOut.model_validate(result)


@router.post("/{account_id}/move", response_model=AccountOut)
async def move_account(ctx: CtxDep, account_id: int, body: MoveRequest) -> AccountOut:
    return AccountOut.model_validate(await service.move(ctx, account_id, body.parent_id))


@router.post("/{account_id}/renew", response_model=AccountOut)
async def renew_account(ctx: CtxDep, account_id: int, body: RenewRequest) -> AccountOut:
    return AccountOut.model_validate(await service.renew(ctx, account_id, body))


@router.post("/{account_id}/suspend", response_model=AccountOut)
async def suspend_account(ctx: CtxDep, account_id: int, body: StatusChange | None = None) -> AccountOut:
    reason = body.reason if body else ""
    return AccountOut.model_validate(await service.suspend(ctx, account_id, reason))


@router.post("/{account_id}/unsuspend", response_model=AccountOut)
async def unsuspend_account(ctx: CtxDep, account_id: int, body: StatusChange | None = None) -> AccountOut:
    reason = body.reason if body else ""
    return AccountOut.model_validate(await service.unsuspend(ctx, account_id, reason))


@router.post("/{account_id}/cancel", response_model=AccountOut)
async def cancel_account(ctx: CtxDep, account_id: int, body: StatusChange | None = None) -> AccountOut:
    reason = body.reason if body else ""
    return AccountOut.model_validate(await service.cancel(ctx, account_id, reason))
