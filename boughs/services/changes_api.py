"""Plan changes, scheduled changes and data caps."""

from __future__ import annotations

from fastapi import Response

from boughs.deps import CtxDep, Cursor, Limit, domain_router
from boughs.kit.pagination import DEFAULT_LIMIT, Page
from boughs.kit.schema import Output
from boughs.services import changes
from boughs.services import service as services
from boughs.services.changes import (
    ChangePlanRequest,
    PlanChangeOut,
    ScheduledChangeCreate,
    ScheduledChangeOut,
)
from boughs.services.schemas import ServiceOut

router = domain_router("", "services")


class PlanChanged(Output):
    service: ServiceOut
    plan_change: PlanChangeOut


class CapReached(Output):
    service: ServiceOut
    # disabled | throttled | unchanged (the service was not active)
    outcome: str


@router.post("/services/{service_id}/change-plan", response_model=PlanChanged)
async def change_plan(ctx: CtxDep, service_id: int, body: ChangePlanRequest) -> PlanChanged:
    """Move the service to another plan now; the answer carries the proration recorded for billing."""
    service, change = await changes.change_plan(ctx, service_id, body)
    return PlanChanged(
        service=await services.to_out(ctx, service), plan_change=PlanChangeOut.model_validate(change)
    )


@router.get("/services/{service_id}/scheduled-changes", response_model=Page[ScheduledChangeOut])
async def list_scheduled_changes(
    ctx: CtxDep, service_id: int, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[ScheduledChangeOut]:
    page = await changes.list_scheduled(ctx, service_id, cursor, limit)
    return Page[ScheduledChangeOut](
        items=[ScheduledChangeOut.model_validate(c) for c in page.items], next_cursor=page.next_cursor
    )


@router.post("/services/{service_id}/scheduled-changes", status_code=201, response_model=ScheduledChangeOut)
async def schedule_change(
    ctx: CtxDep, service_id: int, body: ScheduledChangeCreate, response: Response
) -> ScheduledChangeOut:
    """Change plan, price, quantity or status on a date (today or later, in the account's timezone)."""
    change = await changes.schedule_change(ctx, service_id, body)
    response.headers["Location"] = f"/api/v1/services/{service_id}/scheduled-changes"
    return ScheduledChangeOut.model_validate(change)


@router.delete("/services/{service_id}/scheduled-changes/{change_id}", response_model=ScheduledChangeOut)
async def cancel_scheduled_change(ctx: CtxDep, service_id: int, change_id: int) -> ScheduledChangeOut:
    """Cancel a pending change; an applied or cancelled one answers 409."""
    return ScheduledChangeOut.model_validate(await changes.cancel_scheduled(ctx, service_id, change_id))


@router.post("/services/{service_id}/cap-reached", response_model=CapReached)
async def cap_reached(ctx: CtxDep, service_id: int) -> CapReached:
    """An outside system reports the service used its plan's data cap: disabled until its
    next period, or throttled. Usage posted to /usage-events counts toward caps by itself;
    a top-up is POST /services/{id}/top-ups."""
    service, _ = await changes.writable(ctx, service_id, "report this service's data cap")
    outcome = await changes.cap_reached(ctx, service)
    return CapReached(service=await services.to_out(ctx, service), outcome=outcome)
