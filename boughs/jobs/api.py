from __future__ import annotations

from boughs.deps import CtxDep, domain_router
from boughs.jobs import service
from boughs.jobs.schemas import JobOut, JobStart

router = domain_router("/jobs", "jobs")


@router.get("/{job_id}", response_model=JobOut)
async def get_job(ctx: CtxDep, job_id: int) -> JobOut:
    """A background job's status and progress."""
    return JobOut.model_validate(await service.get(ctx, job_id))


@router.post("", status_code=202, response_model=JobOut)
async def start_job(ctx: CtxDep, body: JobStart) -> JobOut:
    """Run a periodic task now instead of waiting for its next turn."""
    return JobOut.model_validate(await service.run_periodic_now(ctx, body.kind))
