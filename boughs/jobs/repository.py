from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.jobs.models import Job, JobStatus, Schedule


async def get(session: AsyncSession, provider_id: int, job_id: int) -> Job | None:
    result = await session.execute(select(Job).where(Job.provider_id == provider_id, Job.id == job_id))
    return result.scalar_one_or_none()


async def get_any(session: AsyncSession, job_id: int) -> Job | None:
    result = await session.execute(select(Job).where(Job.id == job_id))
    return result.scalar_one_or_none()


async def by_dedupe_key(session: AsyncSession, provider_id: int, key: str) -> Job | None:
    result = await session.execute(select(Job).where(Job.provider_id == provider_id, Job.dedupe_key == key))
    return result.scalar_one_or_none()


async def claim(
    session: AsyncSession, job_id: int, worker: str, now: datetime, stale_before: datetime
) -> bool:
    """Compare-and-set: queued (and due), or running with a dead heartbeat, becomes ours."""
    result = await session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            or_(
                and_(
                    Job.status == JobStatus.queued.value,
                    or_(Job.run_after.is_(None), Job.run_after <= now),
                ),
                and_(Job.status == JobStatus.running.value, Job.heartbeat_at < stale_before),
            ),
        )
        .values(
            status=JobStatus.running.value,
            worker=worker,
            attempts=Job.attempts + 1,
            started_at=now,
            heartbeat_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def set_fields(session: AsyncSession, job_id: int, worker: str | None, **values: Any) -> bool:
    """Update a job we still own (a worker that lost its claim must not overwrite it)."""
    stmt = update(Job).where(Job.id == job_id)
    if worker is not None:
        stmt = stmt.where(Job.worker == worker, Job.status == JobStatus.running.value)
    result = await session.execute(stmt.values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1  # type: ignore[attr-defined]


async def needing_send(
    session: AsyncSession, now: datetime, resend_before: datetime, stale_before: datetime
) -> list[int]:
    """Jobs nobody is working on that should be: never sent, lost, or whose worker died."""
    result = await session.execute(
        select(Job.id)
        .where(
            or_(
                and_(
                    Job.status == JobStatus.queued.value,
                    or_(Job.run_after.is_(None), Job.run_after <= now),
                    or_(Job.sent_at.is_(None), Job.sent_at < resend_before),
                ),
                and_(Job.status == JobStatus.running.value, Job.heartbeat_at < stale_before),
            )
        )
        .order_by(Job.id)
        .limit(1000)
    )
    return list(result.scalars())


async def mark_sent(session: AsyncSession, ids: list[int], now: datetime) -> None:
    if ids:
        await session.execute(
            update(Job).where(Job.id.in_(ids)).values(sent_at=now)
            .execution_options(synchronize_session=False)
        )  # fmt: skip


async def schedules(session: AsyncSession) -> list[Schedule]:
    result = await session.execute(select(Schedule).order_by(Schedule.id))
    return list(result.scalars())


async def claim_schedule(
    session: AsyncSession,
    schedule_id: int,
    expected_next: datetime,
    new_next: datetime,
    now: datetime,
) -> bool:
    result = await session.execute(
        update(Schedule)
        .where(Schedule.id == schedule_id, Schedule.next_run_at == expected_next)
        .values(next_run_at=new_next, last_run_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def count_live(session: AsyncSession, job_ids: list[int]) -> int:
    """How many of these jobs are still queued or running."""
    if not job_ids:
        return 0
    found = await session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.id.in_(job_ids), Job.status.in_((JobStatus.queued.value, JobStatus.running.value)))
    )
    return int(found or 0)


# --- the console's operations list and the dashboard ------------------------------------------

LIVE_STATUSES = (JobStatus.queued.value, JobStatus.running.value)


def _mine(stmt: Any, provider_id: int, created_by_user_id: int | None) -> Any:
    stmt = stmt.where(Job.provider_id == provider_id)
    return stmt if created_by_user_id is None else stmt.where(Job.created_by_user_id == created_by_user_id)


def list_statement(
    provider_id: int, status: str | None, kind: str | None, created_by_user_id: int | None = None
) -> Any:
    """Jobs with the email of whoever started them (null for the scheduler), unordered: the
    console orders and cuts the page. ``created_by_user_id`` narrows it to one user's jobs."""
    from boughs.auth.models import User

    stmt = _mine(
        select(Job, User.email).outerjoin(User, User.id == Job.created_by_user_id),
        provider_id,
        created_by_user_id,
    )
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    return stmt


async def live(
    session: AsyncSession, provider_id: int, created_by_user_id: int | None, limit: int
) -> list[Job]:
    """Queued and running jobs, newest first (the status index finds them among many finished)."""
    stmt = _mine(select(Job).where(Job.status.in_(LIVE_STATUSES)), provider_id, created_by_user_id)
    result = await session.execute(stmt.order_by(Job.id.desc()).limit(limit))
    return list(result.scalars())


async def count_live_by_status(
    session: AsyncSession, provider_id: int, created_by_user_id: int | None
) -> dict[str, int]:
    stmt = _mine(
        select(Job.status, func.count()).where(Job.status.in_(LIVE_STATUSES)), provider_id, created_by_user_id
    )
    result = await session.execute(stmt.group_by(Job.status))
    return {str(status): int(count) for status, count in result.all()}
