"""Periodic work on services: scheduled changes and data caps that roll over."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from boughs.jobs.registry import job
from boughs.jobs.runtime import JobRun
from boughs.services import changes, lifecycle

APPLY_SCHEDULED_CHANGES = "services.apply_scheduled_changes"
RESET_DATA_CAPS = "services.reset_data_caps"


@job(APPLY_SCHEDULED_CHANGES, every=timedelta(minutes=1))
async def apply_scheduled_changes(run: JobRun) -> dict[str, Any]:
    """Changes due today or before (in each account's timezone) are applied, each exactly once.

    A batch per unit of work: a crash keeps what committed, and the rest is still pending.
    """
    applied: list[int] = []
    after: tuple[date, int] | None = None
    while True:
        async with run.unit_of_work() as ctx:
            batch = await changes.apply_due_changes(ctx, after)
        applied += batch.applied
        after = batch.after
        await run.progress(len(applied))
        if not batch.more:
            break
    return {"applied": len(applied), "applied_change_ids": applied[:1000]}


@job(RESET_DATA_CAPS, every=timedelta(minutes=1))
async def reset_data_caps(run: JobRun) -> dict[str, Any]:
    """Services their data cap disabled come back when their next period begins."""
    reset: list[int] = []
    while True:
        async with run.unit_of_work() as ctx:
            batch = await lifecycle.reset_caps(ctx)
        reset += batch
        await run.progress(len(reset))
        if len(batch) < lifecycle.CHUNK:
            break
    return {"reset": len(reset), "reset_service_ids": reset[:1000]}
