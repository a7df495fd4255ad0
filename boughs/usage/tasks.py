"""Background work on usage: folding ingested batches into the rollups and caps (asked for
after every ingest, and by every scheduler tick for what waits); raw events past the
retention window go, rollups stay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from boughs.auth.actor import Actor
from boughs.context import Ctx
from boughs.db import Database
from boughs.jobs.registry import job
from boughs.jobs.runtime import JobRun
from boughs.kit.clock import Clock
from boughs.kit.secrets import SecretBox, default_box
from boughs.usage import fold, retention

PURGE_EXPIRED_EVENTS = "usage.purge_expired_events"
FOLD_PENDING = "usage.fold_pending"


async def fold_pending(
    db: Database,
    provider_id: int,
    clock: Clock,
    secrets: SecretBox | None = None,
    *,
    next_fold_coming: Callable[[], bool] | None = None,
) -> int:
    """Fold the provider's pending batches, a fold per unit of work, until none is left;
    how many events were folded.

    ``next_fold_coming`` tells whether another fold has been asked for already: then,
    after the first fold, batches that arrived meanwhile wait for it unless a whole fold's
    worth is pending. Under steady ingestion a fold that went on taking them at once would
    fold a few batches at a time, and a small fold writes nearly as many pages as a large.
    """
    actor = Actor.system(provider_id, FOLD_PENDING)
    box = secrets or default_box()

    def ctx_of(session: AsyncSession) -> Ctx:
        return Ctx(session=session, clock=clock, actor=actor, secrets=box)

    folded = 0
    while True:
        whole_only = folded > 0 and next_fold_coming is not None and next_fold_coming()
        if db.is_sqlite:
            # Its one writer at a time: the sums are read and grouped before the write lock.
            async with db.pinned() as pinned:
                async with pinned.transaction(write=False) as session:
                    staged = await fold.stage(ctx_of(session), whole_only=whole_only)
                if staged is None:
                    return folded
                async with pinned.transaction() as session:
                    events = await fold.fold_once(ctx_of(session), whole_only=whole_only, staged=staged)
        else:
            async with db.transaction() as session:
                events = await fold.fold_once(ctx_of(session), whole_only=whole_only)
        if not events:
            return folded
        folded += events


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
