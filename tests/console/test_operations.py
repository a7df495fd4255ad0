"""Operations: the jobs list with progress, one job with its per-item results, and Run now."""

from __future__ import annotations

from sqlalchemy import select, update

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.db import Database
from boughs.jobs.models import Job
from boughs.kit.clock import FrozenClock
from boughs.memberships import service as memberships
from boughs.memberships.models import AccountRole
from tests.conftest import Tenant
from tests.console.conftest import ConsoleClient, MakeConsoleUser, SignIn

RESULT = {
    "transferred": 1,
    "failed": 1,
    "items": [
        {"iccid": "8944500000000000001", "status": "succeeded"},
        {"iccid": "8944500000000000002", "status": "failed", "error": "SIM is terminated"},
    ],
}


async def _seed(db: Database, clock: FrozenClock, tenant: Tenant) -> tuple[int, int]:
    now = clock.now()
    async with db.transaction() as session:
        bulk = Job(
            provider_id=tenant.provider_id, kind="inventory.bulk_transfer", status="running",
            progress_done=3, progress_total=10, created_by_user_id=tenant.owner_id, result=RESULT,
            created_at=now, started_at=now,
        )  # fmt: skip
        sweep = Job(
            provider_id=tenant.provider_id, kind="accounts.expiry_sweep", status="succeeded",
            progress_done=0, result={"expired": 0, "expired_account_ids": []}, created_at=now,
            started_at=now, finished_at=now,
        )  # fmt: skip
        session.add_all([bulk, sweep])
        await session.flush()
        return bulk.id, sweep.id


async def test_the_list_shows_progress_filters_and_refuses_a_member(
    owner_console: ConsoleClient,
    sign_in: SignIn,
    make_console_user: MakeConsoleUser,
    ctx_factory,
    db: Database,
    clock: FrozenClock,
    tenant: Tenant,
) -> None:  # type: ignore[no-untyped-def]
    bulk_id, sweep_id = await _seed(db, clock, tenant)
    listed = await owner_console.get("/operations")
    assert listed.status_code == 200
    assert f'href="/operations/{bulk_id}">inventory.bulk_transfer<' in listed.text
    assert 'value="3"' in listed.text and "3 of 10" in listed.text and tenant.owner_email in listed.text
    # A running job's bar fetches itself again; a finished one does not.
    assert f'hx-get="/operations/{bulk_id}/progress"' in listed.text
    assert f'hx-get="/operations/{sweep_id}/progress"' not in listed.text
    running = await owner_console.get("/operations", params={"status": "running"})
    assert f'href="/operations/{bulk_id}"' in running.text
    assert f'href="/operations/{sweep_id}"' not in running.text
    assert (await owner_console.get("/operations", params={"status": "nonsense"})).status_code == 422

    async with ctx_factory() as ctx:
        mine = await accounts.create(ctx, AccountCreate(name="Member Co"))
    user = await make_console_user("admin@member-ops.test")
    async with ctx_factory() as ctx:
        await memberships.add(ctx, mine.id, user.email, AccountRole.admin)
    member = await sign_in(user.id)
    assert (await member.get("/operations")).status_code == 403
    assert (await member.get(f"/operations/{bulk_id}")).status_code == 404
    assert (await member.submit("/operations/run", {"kind": "accounts.expiry_sweep"})).status_code == 403


async def test_a_job_shows_its_items_and_its_bar_reloads_the_page_when_it_ends(
    owner_console: ConsoleClient, db: Database, clock: FrozenClock, tenant: Tenant
) -> None:
    bulk_id, _ = await _seed(db, clock, tenant)
    detail = await owner_console.get(f"/operations/{bulk_id}")
    assert detail.status_code == 200
    assert 'data-testid="job-status">running<' in detail.text
    assert "SIM is terminated" in detail.text and "8944500000000000002" in detail.text
    assert '<th scope="col">iccid</th>' in detail.text and "transferred" in detail.text
    assert f'hx-get="/operations/{bulk_id}/progress?live=1"' in detail.text

    bar = await owner_console.htmx("GET", f"/operations/{bulk_id}/progress?live=1")
    assert bar.status_code == 200 and "3 of 10" in bar.text and "HX-Refresh" not in bar.headers
    async with db.transaction() as session:
        finished = {"status": "succeeded", "progress_done": 10, "finished_at": clock.now()}
        await session.execute(update(Job).where(Job.id == bulk_id).values(**finished))
    done = await owner_console.htmx("GET", f"/operations/{bulk_id}/progress?live=1")
    assert done.headers["HX-Refresh"] == "true" and "finished" in done.text and "hx-get" not in done.text


async def test_run_now_queues_a_periodic_task_and_refuses_an_unknown_one(
    owner_console: ConsoleClient, db: Database
) -> None:
    page = await owner_console.get("/operations")
    assert 'data-testid="run-now"' in page.text and '<option value="accounts.expiry_sweep"' in page.text
    bad = await owner_console.submit("/operations/run", {"kind": "billing.run"})
    assert bad.status_code == 422 and 'data-field-error="kind"' in bad.text
    started = await owner_console.submit("/operations/run", {"kind": "accounts.expiry_sweep"})
    assert started.status_code == 303
    async with db.transaction() as session:
        [job] = (await session.execute(select(Job))).scalars().all()
    assert (job.kind, job.status) == ("accounts.expiry_sweep", "queued")
    assert started.headers["location"] == f"/operations/{job.id}"
