from __future__ import annotations

from fastapi import APIRouter

from boughs.deps import CtxDep
from boughs.jobs import service
from boughs.jobs.schemas import JobOut

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobOut)
async def get_job(ctx: CtxDep, job_id: int) -> JobOut:
    """A background job's status and progress."""
    return JobOut.model_validate(await service.get(ctx, job_id))
