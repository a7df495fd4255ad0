"""Services of accounts: options, discounts, status."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response

from boughs.deps import CtxDep, Cursor, IdFilter, Limit, domain_router
from boughs.kit.pagination import DEFAULT_LIMIT, Page
from boughs.services import service
from boughs.services.models import ServiceStatus
from boughs.services.repository import ServiceFilter
from boughs.services.schemas import (
    DiscountCreate,
    DiscountOut,
    RevealedPassword,
    ServiceCreate,
    ServiceOut,
    ServicePasswordOut,
    ServicePasswordSet,
    ServiceUpdate,
    StatusChangeOut,
    StatusChangeRequest,
)

router = domain_router("", "services")


async def _page(ctx: CtxDep, page: service.PageOf) -> Page[ServiceOut]:
    return Page[ServiceOut](items=await service.to_out_many(ctx, page.items), next_cursor=page.next_cursor)


@router.post("/accounts/{account_id}/services", status_code=201, response_model=ServiceOut)
async def create_service(ctx: CtxDep, account_id: int, body: ServiceCreate, response: Response) -> ServiceOut:
    """Add a service to an active account whose MSA and AUP are accepted."""
    created = await service.create(ctx, account_id, body)
    response.headers["Location"] = f"/api/v1/services/{created.id}"
    return await service.to_out(ctx, created)


@router.get("/accounts/{account_id}/services", response_model=Page[ServiceOut])
async def list_account_services(
    ctx: CtxDep,
    account_id: int,
    status: ServiceStatus | None = None,
    plan_id: IdFilter = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[ServiceOut]:
    page = await service.list_for_account(
        ctx, account_id, status.value if status else None, plan_id, cursor, limit
    )
    return await _page(ctx, page)


@router.get("/services", response_model=Page[ServiceOut])
async def list_services(
    ctx: CtxDep,
    login: Annotated[str | None, Query(max_length=128, description="The exact login.")] = None,
    status: ServiceStatus | None = None,
    plan_id: IdFilter = None,
    account_id: IdFilter = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[ServiceOut]:
    """Every service in your scope (the whole provider for staff)."""
    f = ServiceFilter(
        account_id=account_id, status=status.value if status else None, plan_id=plan_id, login=login
    )
    return await _page(ctx, await service.list_services(ctx, f, cursor, limit))


@router.get("/services/{service_id}", response_model=ServiceOut)
async def get_service(ctx: CtxDep, service_id: int) -> ServiceOut:
    return await service.to_out(ctx, await service.get(ctx, service_id))


@router.patch("/services/{service_id}", response_model=ServiceOut)
async def update_service(ctx: CtxDep, service_id: int, body: ServiceUpdate) -> ServiceOut:
    """Edit options and dates; the plan (change-plan) and status (status) have their own routes."""
    return await service.to_out(ctx, await service.update(ctx, service_id, body))


@router.delete("/services/{service_id}", status_code=204)
async def delete_service(ctx: CtxDep, service_id: int) -> Response:
    """Remove the service with its history; archive it instead to keep them."""
    await service.delete(ctx, service_id)
    return Response(status_code=204)


@router.post("/services/{service_id}/status", response_model=ServiceOut)
async def change_status(ctx: CtxDep, service_id: int, body: StatusChangeRequest) -> ServiceOut:
    """Set the status by hand (reason manual). Allowed: pending → active | disabled | stopped |
    archived; active, disabled, stopped → any other of those or archived; archived → active |
    disabled | stopped while its login and address are still free. Never back to pending."""
    changed = await service.change_status(ctx, service_id, body.status, body.note)
    return await service.to_out(ctx, changed)


@router.get("/services/{service_id}/status-history", response_model=Page[StatusChangeOut])
async def status_history(
    ctx: CtxDep, service_id: int, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[StatusChangeOut]:
    """Every status the service has had and why, newest first."""
    page = await service.status_history(ctx, service_id, cursor, limit)
    return Page[StatusChangeOut](
        items=[StatusChangeOut.model_validate(c) for c in page.items], next_cursor=page.next_cursor
    )


@router.get("/services/{service_id}/discounts", response_model=Page[DiscountOut])
async def list_discounts(ctx: CtxDep, service_id: int) -> Page[DiscountOut]:
    found = await service.list_discounts(ctx, service_id)
    return Page[DiscountOut](items=[service.discount_out(d) for d in found], next_cursor=None)


@router.post("/services/{service_id}/discounts", status_code=201, response_model=DiscountOut)
async def add_discount(ctx: CtxDep, service_id: int, body: DiscountCreate) -> DiscountOut:
    return service.discount_out(await service.add_discount(ctx, service_id, body))


@router.delete("/services/{service_id}/discounts/{discount_id}", status_code=204)
async def remove_discount(ctx: CtxDep, service_id: int, discount_id: int) -> Response:
    await service.remove_discount(ctx, service_id, discount_id)
    return Response(status_code=204)


@router.post("/services/{service_id}/reveal-password", response_model=RevealedPassword)
async def reveal_password(ctx: CtxDep, service_id: int) -> RevealedPassword:
    """The password the service uses: its own, or its account's main service password."""
    password, source = await service.reveal_password(ctx, service_id)
    return RevealedPassword(password=password, source=source)


@router.put("/accounts/{account_id}/service-password", response_model=ServicePasswordOut)
async def set_service_password(ctx: CtxDep, account_id: int, body: ServicePasswordSet) -> ServicePasswordOut:
    """The password services of this account use when they have none of their own."""
    account = await service.set_account_password(ctx, account_id, body.password)
    return ServicePasswordOut(
        account_id=account.id, has_service_password=account.service_password_sealed is not None
    )
