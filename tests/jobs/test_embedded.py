from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from sqlalchemy import select

from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.accounts.schemas import AccountCreate
from boughs.accounts.tasks import EXPIRY_SWEEP
from boughs.config import Settings
from boughs.db import Database
from boughs.jobs import registry
from boughs.jobs import service as jobs
from boughs.jobs.models import Job
from boughs.jobs.runtime import JobRuntime
from boughs.kit.clock import FrozenClock


async def test_expiry_sweep_runs_in_process_worker(
    settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    async with ctx_factory() as ctx:
        parent = await accounts.create(ctx, AccountCreate(name="Parent", expiry_date=date(2026, 1, 20)))
        child = await accounts.create(ctx, AccountCreate(name="Child", parent_id=parent.id))
    runtime = JobRuntime(settings, clock=clock)
    runtime.start_worker(threads=2)
    try:
        clock.advance(timedelta(days=10))
        async with ctx_factory() as ctx:
            job = await jobs.enqueue(ctx, EXPIRY_SWEEP)
        runtime.drain()
        async with db.transaction(write=False) as session:
            done = await session.get(Job, job.id)
            assert done is not None and done.status == "succeeded", done and done.error
            assert done.result == {
                "expired": 2,
                "expired_account_ids": sorted([parent.id, child.id]),
            }
            statuses = dict((await session.execute(select(Account.id, Account.status))).all())
            assert statuses == {parent.id: "expired", child.id: "expired"}
    finally:
        await runtime.stop()


async def test_job_is_not_sent_when_its_transaction_rolls_back(
    settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    runtime = JobRuntime(settings, clock=clock)
    sent: list[int] = []
    runtime.send = lambda job_id, delay_seconds=0: sent.append(job_id)  # type: ignore[method-assign]
    from boughs.jobs import runtime as runtime_module

    runtime_module._current = runtime
    try:
        try:
            async with ctx_factory() as ctx:
                await jobs.enqueue(ctx, EXPIRY_SWEEP)
                raise RuntimeError("the request failed after enqueueing")
        except RuntimeError:
            pass
        async with db.transaction(write=False) as session:
            assert (await session.execute(select(Job))).scalars().all() == []
        assert sent == []
        async with ctx_factory() as ctx:
            job = await jobs.enqueue(ctx, EXPIRY_SWEEP, dedupe_key="once")
            again = await jobs.enqueue(ctx, EXPIRY_SWEEP, dedupe_key="once")
            assert again.id == job.id
        assert sent == [job.id]
    finally:
        runtime_module._current = None


async def test_tick_sends_jobs_never_sent_and_claims_each_schedule_once(
    settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    first, second = JobRuntime(settings, clock=clock), JobRuntime(settings, clock=clock)
    sent: list[int] = []
    for runtime in (first, second):
        runtime.send = lambda job_id, delay_seconds=0: sent.append(job_id)  # type: ignore[method-assign]
    async with ctx_factory() as ctx:
        # Enqueued with no runtime in this process, as a CLI command would.
        orphan = await jobs.enqueue(ctx, EXPIRY_SWEEP)
    assert orphan.sent_at is None
    started_by_first = await first.tick(db)
    started_by_second = await second.tick(db)
    async with db.transaction(write=False) as session:
        all_jobs = (await session.execute(select(Job).order_by(Job.id))).scalars().all()
    by_kind = Counter(j.kind for j in all_jobs)
    # The orphan, plus exactly one run of each periodic task for this provider's slot.
    assert by_kind == {EXPIRY_SWEEP: 2, **{k: 1 for k in registry.PERIODIC if k != EXPIRY_SWEEP}}
    assert orphan.id in started_by_first
    assert started_by_second == []
    assert sorted(sent) == [j.id for j in all_jobs]
    clock.advance(timedelta(minutes=5))
    sent_later = await second.tick(db)
    async with db.transaction(write=False) as session:
        queued = (await session.execute(select(Job.id).order_by(Job.id))).scalars().all()
    # Every periodic task due again within five minutes (the expiry sweep, the one-minute
    # service tasks) starts its next slot once; every job nobody picked up is sent again.
    due_again = sum(p.every <= timedelta(minutes=5) for p in registry.PERIODIC.values())
    assert due_again >= 1
    assert len(queued) == len(all_jobs) + due_again
    assert sent_later == list(queued)
