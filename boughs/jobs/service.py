"""Starting jobs from a unit of work: the row is written now, the message sent on commit."""

from __future__ import annotations

from typing import Any

from boughs.context import Ctx
from boughs.jobs import registry, repository, runtime
from boughs.jobs.models import Job, JobStatus
from boughs.kit.errors import Forbidden, InvalidInput, NotFound


async def enqueue(
    ctx: Ctx, kind: str, args: dict[str, Any] | None = None, *, dedupe_key: str | None = None
) -> Job:
    """A retried request with the same dedupe key gets the job it already started."""
    registry.load_all()
    if kind not in registry.HANDLERS:
        raise ValueError(f"unknown job kind {kind!r}")
    if dedupe_key is not None:
        existing = await repository.by_dedupe_key(ctx.session, ctx.provider_id, dedupe_key)
        if existing is not None:
            return existing
    sender = runtime.current()
    job = Job(
        provider_id=ctx.provider_id,
        kind=kind,
        args=args or {},
        status=JobStatus.queued.value,
        dedupe_key=dedupe_key,
        created_by_user_id=ctx.actor.user_id,
        created_at=ctx.now(),
        # Without a runtime in this process (a CLI command), the next tick of any worker sends it.
        sent_at=ctx.now() if sender is not None else None,
    )
    ctx.session.add(job)
    await ctx.session.flush()
    if sender is not None:
        job_id = job.id
        ctx.after_commit(lambda: sender.send(job_id))
    return job


async def get(ctx: Ctx, job_id: int) -> Job:
    job = await repository.get(ctx.session, ctx.provider_id, job_id)
    # Staff see every job of their provider; account users only the jobs they started.
    if job is not None and not ctx.actor.is_staff and job.created_by_user_id != ctx.actor.user_id:
        job = None
    if job is None:
        raise NotFound(detail=f"There is no job {job_id}.", fix="check the job id")
    return job


async def run_periodic_now(ctx: Ctx, kind: str) -> Job:
    registry.load_all()
    if kind not in registry.PERIODIC:
        raise InvalidInput.on_field(
            "kind",
            f"{kind!r} is not a periodic task",
            f"use one of {', '.join(sorted(registry.PERIODIC))}",
        )
    if ctx.actor.staff_role not in ("owner", "admin"):
        raise Forbidden(
            detail="Only the provider's owner or admins can start periodic tasks.",
            fix="ask an administrator of the provider",
        )
    return await enqueue(ctx, kind)


def _only_own(ctx: Ctx) -> int | None:
    # The same rule as get(): staff see every job of the provider, account users their own.
    return None if ctx.actor.is_staff else ctx.actor.user_id or -1


def list_statement(ctx: Ctx, status: str | None, kind: str | None) -> Any:
    """The jobs the actor may see, filtered, each with its starter's email; the caller orders
    and pages it."""
    return repository.list_statement(ctx.provider_id, status, kind, _only_own(ctx))


async def live(ctx: Ctx, limit: int) -> tuple[dict[str, int], list[Job]]:
    """Counts of queued and running jobs the actor may see, and the ``limit`` newest of them."""
    mine = _only_own(ctx)
    counts = await repository.count_live_by_status(ctx.session, ctx.provider_id, mine)
    return counts, await repository.live(ctx.session, ctx.provider_id, mine, limit)


def periodic_kinds() -> list[str]:
    """The periodic tasks run_periodic_now accepts."""
    registry.load_all()
    return sorted(registry.PERIODIC)


def known_kinds() -> list[str]:
    registry.load_all()
    return sorted(registry.HANDLERS)
