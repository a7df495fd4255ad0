"""Periodic work on usage: raw events past the retention window go; rollups stay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from boughs.jobs.registry import job
from boughs.jobs.runtime import JobRun
from boughs.usage import retention

PURGE_EXPIRED_EVENTS = "usage.purge_expired_events"


@job(PURGE_EXPIRED_EVENTS, every=timedelta(hours=1))
async def purge_expired_events(run: JobRun) -> dict[str, Any]:
    """Delete raw events older than the provider's retention, a chunk per unit of work."""
    purged = 0
    while True:
        async with run.unit_of_work() as ctx:
            batch = await retention.purge_expired(ctx)
        purged += batch
        await run.progress(purged)
        if batch < retention.CHUNK:
            break
    return {"purged": purged}
