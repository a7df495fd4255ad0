"""Building blocks for billing scenarios: accounts, plans and services through the domain
services, bill runs through the API, and the jobs they start run to completion here."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

import httpx
from sqlalchemy import or_, select

from boughs.catalog import service as catalog
from boughs.catalog.schemas import PlanCreate
from boughs.config import Settings
from boughs.context import Ctx
from boughs.db import Database
from boughs.jobs.models import Job, JobStatus
from boughs.jobs.runtime import JobRuntime
from boughs.kit.clock import Clock
from boughs.services import service as services
from boughs.services.schemas import ServiceCreate
from tests.usage.support import new_account

API = "/api/v1"
_serial = itertools.count(1)

__all__ = ["new_account"]


async def new_plan(ctx: Ctx, price_amount: int, name: str | None = None, **fields: Any) -> int:
    data = PlanCreate(
        name=name or f"Plan {next(_serial)}", kind=fields.pop("kind", "custom"), price_amount=price_amount,
        currency=fields.pop("currency", "USD"), public=True, **fields,
    )  # fmt: skip
    return (await catalog.create_plan(ctx, data)).id


async def new_service(ctx: Ctx, account_id: int, plan_id: int, start: date, **fields: Any) -> int:
    data = ServiceCreate(plan_id=plan_id, start_date=start, **fields)
    return (await services.create(ctx, account_id, data)).id


async def run_jobs(settings: Settings, db: Database, clock: Clock) -> None:
    """Run every due job, and those they queue, in this process."""
    runtime = JobRuntime(settings, clock=clock)
    for _ in range(1000):
        async with db.transaction(write=False) as session:
            queued = list(
                await session.scalars(
                    select(Job.id)
                    .where(
                        Job.status == JobStatus.queued.value,
                        or_(Job.run_after.is_(None), Job.run_after <= clock.now()),
                    )
                    .order_by(Job.id)
                )
            )
        if not queued:
            return
        for job_id in queued:
            await runtime.execute(db, job_id)
    async with db.transaction(write=False) as session:
        left = (
            await session.execute(select(Job.id, Job.kind, Job.status, Job.run_after, Job.attempts))
        ).all()
    raise AssertionError(f"jobs kept queueing more jobs: {left} at {clock.now()}")


async def bill_run(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: Clock, period_end: str, **options: Any
) -> dict[str, Any]:
    response = await client.post(f"{API}/bill-runs", json={"period_end": period_end, **options})
    assert response.status_code == 202, response.text
    await run_jobs(settings, db, clock)
    run = (await client.get(f"{API}/bill-runs/{response.json()['id']}")).json()
    assert run["status"] == "succeeded", run
    return run


async def invoices_of(client: httpx.AsyncClient, account_id: int) -> list[dict[str, Any]]:
    listed = (await client.get(f"{API}/invoices", params={"account_id": account_id})).json()["items"]
    return [(await client.get(f"{API}/invoices/{i['id']}")).json() for i in listed]
