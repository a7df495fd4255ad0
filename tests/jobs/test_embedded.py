from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.accounts.schemas import AccountCreate
from boughs.accounts.tasks import EXPIRY_SWEEP
from boughs.config import Settings
from boughs.db import Database
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
