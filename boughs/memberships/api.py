from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response

from boughs.deps import CtxDep, domain_router
from boughs.memberships import service
from boughs.memberships.schemas import MembershipAdded, MembershipCreate, MembershipOut, SwitcherAccount

router = domain_router("", "memberships")


@router.get("/accounts/{account_id}/memberships", response_model=list[MembershipOut])
async def list_memberships(ctx: CtxDep, account_id: int) -> list[MembershipOut]:
    """Users with a role on this account itself (roles reach down the subtree)."""
    return [MembershipOut.model_validate(m) for m in await service.list_for_account(ctx, account_id)]


@router.post("/accounts/{account_id}/memberships", status_code=201, response_model=MembershipAdded)
async def add_membership(ctx: CtxDep, account_id: int, body: MembershipCreate) -> MembershipAdded:
    """An existing user gets the role now; any other email gets an invitation link."""
    return MembershipAdded.model_validate(await service.add(ctx, account_id, body.email, body.role))


@router.delete("/memberships/{membership_id}", status_code=204)
async def delete_membership(ctx: CtxDep, membership_id: int) -> Response:
    await service.remove(ctx, membership_id)
    return Response(status_code=204)


@router.get("/me/accounts", response_model=list[SwitcherAccount])
async def my_accounts(
    ctx: CtxDep,
    q: Annotated[str | None, Query(description="Part of the name, or the exact external id.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[SwitcherAccount]:
    """Accounts you may act on, for the account switcher: your own top accounts first."""
    return [SwitcherAccount.model_validate(a) for a in await service.switcher(ctx, q, limit)]
