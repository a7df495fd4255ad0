"""The dashboard counts what the actor can reach: the whole provider for staff, a member's subtree."""

from __future__ import annotations

import re
from datetime import date

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.billing.models import BillRun, Invoice
from boughs.catalog import service as catalog
from boughs.catalog.schemas import PlanCreate
from boughs.db import Database
from boughs.jobs.models import Job
from boughs.kit.clock import FrozenClock
from boughs.memberships import service as memberships
from boughs.memberships.models import AccountRole
from boughs.services.models import Service
from tests.conftest import Tenant
from tests.console.conftest import ConsoleClient, MakeConsoleUser, SignIn


def _count(html: str, testid: str) -> int:
    found = re.search(rf'data-testid="{re.escape(testid)}">([\d,]+)<', html)
    assert found, f"no {testid} on the dashboard"
    return int(found.group(1).replace(",", ""))


async def test_the_dashboard_counts_the_provider_for_staff_and_the_subtree_for_a_member(
    owner_console: ConsoleClient,
    sign_in: SignIn,
    make_console_user: MakeConsoleUser,
    ctx_factory,
    db: Database,
    clock: FrozenClock,
    tenant: Tenant,
) -> None:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        north = await accounts.create(ctx, AccountCreate(name="North"))
        north_east = await accounts.create(ctx, AccountCreate(name="North East", parent_id=north.id))
        south = await accounts.create(ctx, AccountCreate(name="South"))
        await accounts.suspend(ctx, north_east.id)
        plan = await catalog.create_plan(ctx, PlanCreate(name="Fibre", kind="internet", price_amount=3000))
    now = clock.now()
    async with db.transaction() as session:
        for account_id, status in ((north.id, "active"), (south.id, "active"), (south.id, "stopped")):
            session.add(
                Service(
                    provider_id=tenant.provider_id,
                    account_id=account_id,
                    plan_id=plan.id,
                    start_date=date(2026, 1, 1),
                    status=status,
                    status_changed_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
        session.add(
            Invoice(
                provider_id=tenant.provider_id,
                owner_account_id=south.id,
                status="finalized",
                number="INV-0007",
                currency="USD",
                period_start=date(2025, 12, 1),
                period_end=date(2025, 12, 31),
                issue_date=date(2025, 12, 31),
                due_date=date(2026, 1, 10),
                subtotal_amount=4250,
                total_amount=4250,
                created_at=now,
                updated_at=now,
                finalized_at=now,
            )
        )
        session.add(
            Job(
                provider_id=tenant.provider_id,
                kind="billing.run",
                status="running",
                progress_done=3,
                progress_total=10,
                created_by_user_id=tenant.owner_id,
                created_at=now,
                started_at=now,
            )
        )
        session.add(
            BillRun(
                provider_id=tenant.provider_id,
                period_end=date(2025, 12, 31),
                status="running",
                roots_total=10,
                roots_done=4,
                created_at=now,
            )
        )

    staff = (await owner_console.get("/")).text
    assert (_count(staff, "accounts-active"), _count(staff, "accounts-suspended")) == (2, 1)
    assert (_count(staff, "services-active"), _count(staff, "services-stopped")) == (2, 1)
    assert _count(staff, "overdue-count") == 1 and 'data-testid="overdue-USD">42.50 USD<' in staff
    assert "INV-0007" in staff and "South" in staff
    assert "billing.run" in staff and 'value="3"' in staff
    assert 'data-testid="card-bill-runs"' in staff and "4 of 10" in staff

    user = await make_console_user("admin@north.test")
    async with ctx_factory() as ctx:
        await memberships.add(ctx, north.id, user.email, AccountRole.admin)
    member = await sign_in(user.id)
    answer = await member.get("/")
    assert answer.status_code == 200
    mine = answer.text
    assert (_count(mine, "accounts-active"), _count(mine, "accounts-suspended")) == (1, 1)
    assert (_count(mine, "services-active"), _count(mine, "services-stopped")) == (1, 0)
    assert _count(mine, "overdue-count") == 0 and "INV-0007" not in mine
    # Someone else's job and the provider's bill runs are not the member's to see.
    assert "billing.run" not in mine and 'data-testid="card-bill-runs"' not in mine
