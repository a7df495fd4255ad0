from __future__ import annotations

from datetime import timedelta
from typing import Any

from boughs.idempotency import repository
from boughs.idempotency.service import KEEP_FOR
from boughs.jobs.registry import job
from boughs.jobs.runtime import JobRun

PRUNE = "idempotency.prune"


@job(PRUNE, every=timedelta(hours=1))
async def prune_keys(run: JobRun) -> dict[str, Any]:
    """Forget idempotency keys older than the retry window."""
    async with run.unit_of_work() as ctx:
        removed = await repository.prune(ctx.session, ctx.provider_id, ctx.now() - KEEP_FOR)
    return {"removed": removed}
