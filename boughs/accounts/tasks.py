"""Background work on accounts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from boughs.accounts import service
from boughs.jobs.registry import job
from boughs.jobs.runtime import JobRun

EXPIRY_SWEEP = "accounts.expiry_sweep"


@job(EXPIRY_SWEEP, every=timedelta(minutes=5))
async def expiry_sweep(run: JobRun) -> dict[str, Any]:
    """Accounts whose effective expiry has passed become expired, each with an audit event."""
    async with run.unit_of_work() as ctx:
        expired = await service.sweep_expired(ctx)
    await run.progress(len(expired), len(expired))
    return {"expired_account_ids": expired[:1000], "expired": len(expired)}
