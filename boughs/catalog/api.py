"""Plans, offers, routers, IPv4 pools and ports."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response

from boughs.catalog import service
from boughs.catalog.models import PlanKind, PoolKind
from boughs.catalog.schemas import (
    IpPoolCreate,
    IpPoolOut,
    IpPoolUpdate,
    OfferCreate,
    OfferOut,
    PlanCreate,
    PlanOut,
    PlanUpdate,
    PortCreate,
    PortOut,
    PortUpdate,
    RouterCreate,
    RouterOut,
    RouterSecretOut,
    RouterUpdate,
)
from boughs.deps import CtxDep, Cursor, Limit, domain_router
from boughs.kit.pagination import DEFAULT_LIMIT, Page
from boughs.kit.types import MAX_ID

router = domain_router("", "catalog")


# --- plans ---------------------------------------------------------------------------------


@router.get("/plans", response_model=Page[PlanOut])
async def list_plans(
    ctx: CtxDep,
    kind: PlanKind | None = None,
    account_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only the plans this account may take.")
    ] = None,
    include_retired: Annotated[bool, Query(description="Show retired plans too.")] = False,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[PlanOut]:
    page = await service.list_plans(
        ctx,
        kind=kind.value if kind else None,
        account_id=account_id,
        include_retired=include_retired,
        cursor=cursor,
        limit=limit,
    )
    return Page[PlanOut](items=[PlanOut.of(p) for p in page.items], next_cursor=page.next_cursor)


@router.post("/plans", status_code=201, response_model=PlanOut)
async def create_plan(ctx: CtxDep, body: PlanCreate, response: Response) -> PlanOut:
    plan = await service.create_plan(ctx, body)
    response.headers["Location"] = f"/api/v1/plans/{plan.id}"
    return PlanOut.of(plan)


@router.get("/plans/{plan_id}", response_model=PlanOut)
async def get_plan(ctx: CtxDep, plan_id: int) -> PlanOut:
    return PlanOut.of(await service.get_visible_plan(ctx, plan_id))


@router.patch("/plans/{plan_id}", response_model=PlanOut)
async def update_plan(ctx: CtxDep, plan_id: int, body: PlanUpdate) -> PlanOut:
    """`retired: true` retires the plan: its services keep it, no new ones take it."""
    return PlanOut.of(await service.update_plan(ctx, plan_id, body))


@router.delete("/plans/{plan_id}", status_code=204)
async def delete_plan(ctx: CtxDep, plan_id: int) -> None:
    """Refused while services use the plan: retire it instead."""
    await service.delete_plan(ctx, plan_id)


@router.get("/plans/{plan_id}/offers", response_model=list[OfferOut])
async def list_offers(ctx: CtxDep, plan_id: int) -> list[OfferOut]:
    """The plan's offers to accounts you can see. An offer reaches the account's subtree."""
    return [OfferOut.model_validate(o) for o in await service.list_offers(ctx, plan_id)]


@router.post("/plans/{plan_id}/offers", status_code=201, response_model=OfferOut)
async def add_offer(ctx: CtxDep, plan_id: int, body: OfferCreate) -> OfferOut:
    """Staff offer any plan; an account administrator passes on plans its own accounts have."""
    return OfferOut.model_validate(await service.add_offer(ctx, plan_id, body.account_id))


@router.delete("/plans/{plan_id}/offers/{account_id}", status_code=204)
async def remove_offer(ctx: CtxDep, plan_id: int, account_id: int) -> None:
    await service.remove_offer(ctx, plan_id, account_id)


# --- routers -------------------------------------------------------------------------------


@router.get("/routers", response_model=Page[RouterOut])
async def list_routers(ctx: CtxDep, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT) -> Page[RouterOut]:
    """Provider staff only; account members see none."""
    page = await service.list_routers(ctx, cursor, limit)
    return Page[RouterOut](
        items=[RouterOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor
    )


@router.post("/routers", status_code=201, response_model=RouterOut)
async def create_router(ctx: CtxDep, body: RouterCreate, response: Response) -> RouterOut:
    found = await service.create_router(ctx, body)
    response.headers["Location"] = f"/api/v1/routers/{found.id}"
    return RouterOut.model_validate(found)


@router.get("/routers/{router_id}", response_model=RouterOut)
async def get_router(ctx: CtxDep, router_id: int) -> RouterOut:
    return RouterOut.model_validate(await service.get_router(ctx, router_id))


@router.patch("/routers/{router_id}", response_model=RouterOut)
async def update_router(ctx: CtxDep, router_id: int, body: RouterUpdate) -> RouterOut:
    return RouterOut.model_validate(await service.update_router(ctx, router_id, body))


@router.delete("/routers/{router_id}", status_code=204)
async def delete_router(ctx: CtxDep, router_id: int) -> None:
    await service.delete_router(ctx, router_id)


@router.post("/routers/{router_id}/reveal-secret", response_model=RouterSecretOut)
async def reveal_router_secret(ctx: CtxDep, router_id: int) -> RouterSecretOut:
    """The RADIUS secret in clear; each reveal is audited."""
    secret = await service.reveal_router_secret(ctx, router_id)
    return RouterSecretOut(router_id=router_id, radius_secret=secret)


# --- IPv4 pools ----------------------------------------------------------------------------


@router.get("/ip-pools", response_model=Page[IpPoolOut])
async def list_pools(
    ctx: CtxDep, kind: PoolKind | None = None, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[IpPoolOut]:
    """Staff see every pool; members the pools their accounts may use."""
    page = await service.list_pools(ctx, kind.value if kind else None, cursor, limit)
    return Page[IpPoolOut](
        items=[IpPoolOut.model_validate(p) for p in page.items], next_cursor=page.next_cursor
    )


@router.post("/ip-pools", status_code=201, response_model=IpPoolOut)
async def create_pool(ctx: CtxDep, body: IpPoolCreate, response: Response) -> IpPoolOut:
    pool = await service.create_pool(ctx, body)
    response.headers["Location"] = f"/api/v1/ip-pools/{pool.id}"
    return IpPoolOut.model_validate(pool)


@router.get("/ip-pools/{pool_id}", response_model=IpPoolOut)
async def get_pool(ctx: CtxDep, pool_id: int) -> IpPoolOut:
    return IpPoolOut.model_validate(await service.get_pool(ctx, pool_id))


@router.patch("/ip-pools/{pool_id}", response_model=IpPoolOut)
async def update_pool(ctx: CtxDep, pool_id: int, body: IpPoolUpdate) -> IpPoolOut:
    """cidr and kind cannot change while services hold addresses of the pool or draw from it."""
    return IpPoolOut.model_validate(await service.update_pool(ctx, pool_id, body))


@router.delete("/ip-pools/{pool_id}", status_code=204)
async def delete_pool(ctx: CtxDep, pool_id: int) -> None:
    await service.delete_pool(ctx, pool_id)


# --- ports ---------------------------------------------------------------------------------


@router.get("/ports", response_model=Page[PortOut])
async def list_ports(ctx: CtxDep, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT) -> Page[PortOut]:
    """Staff see every port; members the ports their accounts may use."""
    page = await service.list_ports(ctx, cursor, limit)
    return Page[PortOut](items=[PortOut.model_validate(p) for p in page.items], next_cursor=page.next_cursor)


@router.post("/ports", status_code=201, response_model=PortOut)
async def create_port(ctx: CtxDep, body: PortCreate, response: Response) -> PortOut:
    port = await service.create_port(ctx, body)
    response.headers["Location"] = f"/api/v1/ports/{port.id}"
    return PortOut.model_validate(port)


@router.get("/ports/{port_id}", response_model=PortOut)
async def get_port(ctx: CtxDep, port_id: int) -> PortOut:
    return PortOut.model_validate(await service.get_port(ctx, port_id))


@router.patch("/ports/{port_id}", response_model=PortOut)
async def update_port(ctx: CtxDep, port_id: int, body: PortUpdate) -> PortOut:
    return PortOut.model_validate(await service.update_port(ctx, port_id, body))


@router.delete("/ports/{port_id}", status_code=204)
async def delete_port(ctx: CtxDep, port_id: int) -> None:
    await service.delete_port(ctx, port_id)
