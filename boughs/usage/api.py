"""Meters, usage ingestion, usage queries and data-cap top-ups."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query, Response

from boughs.deps import CtxDep, Cursor, Limit, domain_router
from boughs.kit.pagination import DEFAULT_LIMIT, Page
from boughs.usage import caps, ingest, service
from boughs.usage.schemas import (
    BatchResult,
    CapStateOut,
    EventBatch,
    EventStatus,
    Granularity,
    MeterCreate,
    MeterOut,
    MeterUpdate,
    TopUpCreate,
    TopUpOut,
    UsageOut,
    UsageScope,
)

router = domain_router("", "usage")

MeterCode = Annotated[str, Query(min_length=1, max_length=64, description="The meter's code.")]
From = Annotated[
    datetime | None, Query(alias="from", description="Start (inclusive); default the start of this month.")
]
To = Annotated[
    datetime | None, Query(description="End (exclusive); default the end of the local month `from` falls in.")
]
GranularityQuery = Annotated[Granularity, Query(description="Bucket size: hour (UTC), day or month (local).")]


# --- meters ------------------------------------------------------------------------------------


@router.get("/meters", response_model=Page[MeterOut])
async def list_meters(ctx: CtxDep, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT) -> Page[MeterOut]:
    page = await service.list_meters(ctx, cursor, limit)
    return Page[MeterOut](
        items=[MeterOut.model_validate(m) for m in page.items], next_cursor=page.next_cursor
    )


@router.post("/meters", status_code=201, response_model=MeterOut)
async def create_meter(ctx: CtxDep, data: MeterCreate) -> MeterOut:
    return MeterOut.model_validate(await service.create_meter(ctx, data))


@router.get("/meters/{meter_id}", response_model=MeterOut)
async def get_meter(ctx: CtxDep, meter_id: int) -> MeterOut:
    return MeterOut.model_validate(await service.get_meter(ctx, meter_id))


@router.patch("/meters/{meter_id}", response_model=MeterOut)
async def update_meter(ctx: CtxDep, meter_id: int, data: MeterUpdate) -> MeterOut:
    return MeterOut.model_validate(await service.update_meter(ctx, meter_id, data))


@router.delete("/meters/{meter_id}", status_code=204)
async def delete_meter(ctx: CtxDep, meter_id: int) -> Response:
    """Only a meter no event has used: usage history needs its meter."""
    await service.delete_meter(ctx, meter_id)
    return Response(status_code=204)


# --- ingestion ---------------------------------------------------------------------------------


async def _formed(batch: EventBatch) -> ingest.FormedBatch:
    """Each event's own checks, made before the request's unit of work begins (a dependency
    declared ahead of it): they need no database, and on SQLite a writer holds the one
    write lock for as long as its unit of work lasts."""
    return ingest.check_forms(batch.events)


@router.post("/usage-events", response_model=BatchResult)
async def post_usage_events(sent: Annotated[ingest.FormedBatch, Depends(_formed)], ctx: CtxDep) -> Response:
    """Up to 1,000 events. Each is answered on its own: accepted, duplicate (already taken
    with the same content; stored once), conflict (same id, other content) or rejected
    with its reason. Valid events are kept whatever their neighbours."""
    results = await ingest.take(ctx, sent)
    counts = {status: 0 for status in EventStatus}
    for result in results:
        counts[result.status] += 1
    # The answer is BatchResult's shape, written straight from the outcomes: a model per
    # event cost more than storing it.
    answer = {
        "accepted": counts[EventStatus.accepted],
        "duplicates": counts[EventStatus.duplicate],
        "conflicts": counts[EventStatus.conflict],
        "rejected": counts[EventStatus.rejected],
        "results": [
            {"index": r.index, "id": r.id, "status": r.status, "reason": r.reason, "late": r.late}
            for r in results
        ],
    }
    return Response(
        content=json.dumps(answer, ensure_ascii=False, separators=(",", ":")), media_type="application/json"
    )


# --- queries -----------------------------------------------------------------------------------


@router.get("/accounts/{account_id}/usage", response_model=UsageOut)
async def account_usage(
    ctx: CtxDep,
    account_id: int,
    meter: MeterCode,
    start: From = None,
    to: To = None,
    granularity: GranularityQuery = Granularity.day,
    scope: Annotated[
        UsageScope, Query(description="self: the account's own; subtree: pooled with every descendant's.")
    ] = UsageScope.self,
) -> UsageOut:
    return await service.account_usage(ctx, account_id, meter, start, to, granularity, scope)


@router.get("/services/{service_id}/usage", response_model=UsageOut)
async def service_usage(
    ctx: CtxDep,
    service_id: int,
    meter: MeterCode,
    start: From = None,
    to: To = None,
    granularity: GranularityQuery = Granularity.day,
) -> UsageOut:
    return await service.service_usage(ctx, service_id, meter, start, to, granularity)


# --- data caps ---------------------------------------------------------------------------------


@router.get("/services/{service_id}/cap", response_model=CapStateOut)
async def cap_state(ctx: CtxDep, service_id: int) -> CapStateOut:
    """The service's cap, usage and top-ups in its current period."""
    return await caps.state(ctx, service_id)


@router.get("/services/{service_id}/top-ups", response_model=Page[TopUpOut])
async def list_top_ups(ctx: CtxDep, service_id: int) -> Page[TopUpOut]:
    found = await caps.list_top_ups(ctx, service_id)
    return Page[TopUpOut](items=[TopUpOut.model_validate(t) for t in found], next_cursor=None)


@router.post("/services/{service_id}/top-ups", status_code=201, response_model=TopUpOut)
async def add_top_up(ctx: CtxDep, service_id: int, data: TopUpCreate) -> TopUpOut:
    """Bytes added to the current period's allowance; a service its cap disabled or
    throttled comes back when its usage is under the raised cap."""
    return TopUpOut.model_validate(await caps.add_top_up(ctx, service_id, data))
