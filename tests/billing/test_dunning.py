"""Dunning: an overdue invoice suspends exactly the accounts whose charges it carries (its
owner and the with_parent children on it), their services stop, and settling it in full
brings them back; the job is idempotent and takes big providers in batches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from boughs.accounts import service as accounts
from boughs.audit.models import AuditEvent
from boughs.billing import dunning
from boughs.billing.dunning_tasks import DUNNING
from boughs.billing.models import DunningHold, Invoice
from boughs.config import Settings
from boughs.db import Database
from boughs.jobs import registry
from boughs.jobs import service as jobs
from boughs.jobs.models import Job
from boughs.jobs.runtime import JobRuntime
from boughs.kit.clock import FrozenClock
from boughs.services.models import Service
from tests.billing.payments_matrix_cases import make_invoice, payment_body
from tests.services.lifecycle_support import make_account, make_plan, make_service

API = "/api/v1"
OVERDUE = date(2026, 1, 1)  # + 7 days' grace is before 2026-01-15, the clock's today


@dataclass
class Tree:
    """Root ── Landlord ── Unit1, Unit2 (with_parent, on the landlord's invoice), Shop (separate);
    Root ── Sibling ── SiblingKid. One active service on each."""

    ids: dict[str, int]
    services: dict[str, int]


@pytest.fixture
async def tree(ctx_factory: Any) -> Tree:
    async with ctx_factory() as ctx:
        plan = await make_plan(ctx, "Internet")
        ids: dict[str, int] = {}
        for name, parent, mode in (
            ("Root", None, "separate"),
            ("Landlord", "Root", "separate"),
            ("Unit1", "Landlord", "with_parent"),
            ("Unit2", "Landlord", "with_parent"),
            ("Shop", "Landlord", "separate"),
            ("Sibling", "Root", "separate"),
            ("SiblingKid", "Sibling", "with_parent"),
        ):
            ids[name] = await make_account(ctx, name, ids[parent] if parent else None, invoice_mode=mode)
        services = {name: await make_service(ctx, account_id, plan.id) for name, account_id in ids.items()}
    return Tree(ids, services)


ON_THE_INVOICE = ("Landlord", "Unit1", "Unit2")
NOT_ON_IT = ("Root", "Shop", "Sibling", "SiblingKid")


async def consolidated(ctx_factory: Any, tree: Tree, total: int = 9_000, due: date = OVERDUE) -> Invoice:
    async with ctx_factory() as ctx:
        on_it = [tree.ids[n] for n in ON_THE_INVOICE]
        return await make_invoice(ctx, tree.ids["Landlord"], total, due_date=due, account_ids=on_it)


async def service_states(ctx_factory: Any, tree: Tree) -> dict[str, str]:
    async with ctx_factory() as ctx:
        rows = {s.id: s for s in await ctx.session.scalars(select(Service))}
    return {name: rows[sid].status for name, sid in tree.services.items()}


async def statuses(ctx_factory: Any, tree: Tree) -> dict[str, dict[str, Any]]:
    async with ctx_factory() as ctx:
        return {name: (await accounts.effective(ctx, i))["status"] for name, i in tree.ids.items()}


async def run_job(settings: Settings, db: Database, clock: FrozenClock, ctx_factory: Any) -> dict[str, Any]:
    async with ctx_factory() as ctx:
        job_id = (await jobs.enqueue(ctx, DUNNING)).id
    assert await JobRuntime(settings, clock=clock).execute(db, job_id) == "succeeded"
    async with ctx_factory() as ctx:
        job = await ctx.session.get(Job, job_id)
        assert job is not None and job.result is not None
        return job.result


async def count(ctx_factory: Any, model: Any, *where: Any) -> int:
    async with ctx_factory() as ctx:
        return int(await ctx.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def held_everywhere_on_it(states: dict[str, str]) -> bool:
    return all(states[n] == "stopped" for n in ON_THE_INVOICE) and all(
        states[n] == "active" for n in NOT_ON_IT
    )


def test_the_job_is_registered_hourly() -> None:
    registry.load_all()
    assert registry.PERIODIC[DUNNING].every == timedelta(hours=1)


async def test_an_overdue_consolidated_invoice_suspends_only_what_it_bills(
    tree: Tree,
    ctx_factory: Any,
    settings: Settings,
    db: Database,
    clock: FrozenClock,
    client: httpx.AsyncClient,
) -> None:
    invoice = await consolidated(ctx_factory, tree)
    result = await run_job(settings, db, clock, ctx_factory)
    assert (result["invoices_overdue"], result["accounts_held"]) == (1, 3)

    states = await service_states(ctx_factory, tree)
    assert held_everywhere_on_it(states), states
    effective = await statuses(ctx_factory, tree)
    for name in ON_THE_INVOICE:
        assert effective[name] == {
            "value": "suspended", "source_account_id": tree.ids[name], "blocked": True, "reason": "unpaid",
        }  # fmt: skip
    # The separate child under the held landlord, and the sibling's subtree, carry on.
    for name in NOT_ON_IT:
        assert effective[name]["blocked"] is False, name
    async with ctx_factory() as ctx:
        row = await ctx.session.get(Invoice, invoice.id)
        assert row is not None and row.dunning_started_at == clock.now()
        services = list(await ctx.session.scalars(select(Service).where(Service.status == "stopped")))
        assert {s.status_reason for s in services} == {"account"}
    assert (
        await count(ctx_factory, AuditEvent, AuditEvent.entity == "dunning_hold", AuditEvent.action == "held")
        == 3
    )

    # Running it again finds nothing more to do.
    again = await run_job(settings, db, clock, ctx_factory)
    assert (again["invoices_overdue"], again["accounts_held"]) == (0, 0)
    assert await count(ctx_factory, DunningHold) == 3
    assert await count(ctx_factory, AuditEvent, AuditEvent.entity == "dunning_hold") == 3

    # A partial payment lifts nothing.
    landlord = tree.ids["Landlord"]
    r = await client.post(f"{API}/accounts/{landlord}/payments", json=payment_body(8_999))
    assert r.status_code == 201
    assert held_everywhere_on_it(await service_states(ctx_factory, tree))
    assert await count(ctx_factory, DunningHold, DunningHold.lifted_at.is_(None)) == 3

    # Paying the rest lifts every hold, and the services come back.
    r = await client.post(f"{API}/accounts/{landlord}/payments", json=payment_body(1))
    assert r.status_code == 201
    assert set((await service_states(ctx_factory, tree)).values()) == {"active"}
    assert all(not s["blocked"] for s in (await statuses(ctx_factory, tree)).values())
    assert await count(ctx_factory, DunningHold, DunningHold.lifted_at.is_(None)) == 0
    assert (
        await count(
            ctx_factory, AuditEvent, AuditEvent.entity == "dunning_hold", AuditEvent.action == "lifted"
        )
        == 3
    )
    async with ctx_factory() as ctx:
        row = await ctx.session.get(Invoice, invoice.id)
        assert row is not None and (row.status, row.dunning_started_at) == ("paid", None)
    final = await run_job(settings, db, clock, ctx_factory)
    assert final["invoices_overdue"] == 0


async def test_grace_days_count_in_the_provider_timezone(
    tree: Tree, ctx_factory: Any, clock: FrozenClock
) -> None:
    await consolidated(ctx_factory, tree, due=date(2026, 1, 8))
    async with ctx_factory() as ctx:
        assert (await dunning.start_overdue(ctx)).invoice_ids == []
    clock.set(datetime(2026, 1, 15, 23, 59, tzinfo=UTC))
    async with ctx_factory() as ctx:
        assert (await dunning.start_overdue(ctx)).invoice_ids == []
    clock.set(datetime(2026, 1, 16, 0, 0, tzinfo=UTC))
    async with ctx_factory() as ctx:
        assert len((await dunning.start_overdue(ctx)).invoice_ids) == 1


async def test_an_account_stays_held_while_another_invoice_is_overdue(
    tree: Tree, ctx_factory: Any, client: httpx.AsyncClient
) -> None:
    first = await consolidated(ctx_factory, tree, total=1_000, due=date(2025, 12, 1))
    second = await consolidated(ctx_factory, tree, total=2_000)
    async with ctx_factory() as ctx:
        assert sorted((await dunning.start_overdue(ctx)).invoice_ids) == [first.id, second.id]
    landlord = tree.ids["Landlord"]
    body = payment_body(1_000, invoice_ids=[first.id])
    assert (await client.post(f"{API}/accounts/{landlord}/payments", json=body)).status_code == 201
    assert held_everywhere_on_it(await service_states(ctx_factory, tree))
    # A credit note for the whole balance settles it too.
    credit = {"invoice_id": second.id, "reason": "waived", "lines": [{"description": "all", "amount": 2_000}]}
    assert (await client.post(f"{API}/credit-notes", json=credit)).status_code == 201
    assert set((await service_states(ctx_factory, tree)).values()) == {"active"}


async def test_a_refund_reopens_the_invoice_and_the_job_holds_it_again(
    tree: Tree,
    ctx_factory: Any,
    settings: Settings,
    db: Database,
    clock: FrozenClock,
    client: httpx.AsyncClient,
) -> None:
    invoice = await consolidated(ctx_factory, tree)
    await run_job(settings, db, clock, ctx_factory)
    landlord = tree.ids["Landlord"]
    payment = (await client.post(f"{API}/accounts/{landlord}/payments", json=payment_body(9_000))).json()
    assert set((await service_states(ctx_factory, tree)).values()) == {"active"}

    r = await client.post(
        f"{API}/payments/{payment['id']}/refunds", json={"amount": 500, "reason": "bounced"}
    )
    assert r.status_code == 201
    # Owed again, but the refund itself suspends nothing...
    assert set((await service_states(ctx_factory, tree)).values()) == {"active"}
    # ...the job does, since it is long overdue, taking up the same holds again.
    assert (await run_job(settings, db, clock, ctx_factory))["invoices_overdue"] == 1
    assert held_everywhere_on_it(await service_states(ctx_factory, tree))
    assert await count(ctx_factory, DunningHold, DunningHold.invoice_id == invoice.id) == 3


async def test_other_blocks_do_not_undo_a_hold(
    tree: Tree, ctx_factory: Any, client: httpx.AsyncClient
) -> None:
    await consolidated(ctx_factory, tree)
    async with ctx_factory() as ctx:
        await dunning.start_overdue(ctx)
        # Suspending and unsuspending the root sweeps its whole subtree: held accounts stay stopped.
        await accounts.suspend(ctx, tree.ids["Root"])
    assert set((await service_states(ctx_factory, tree)).values()) == {"stopped"}
    async with ctx_factory() as ctx:
        await accounts.unsuspend(ctx, tree.ids["Root"])
    assert held_everywhere_on_it(await service_states(ctx_factory, tree))
    # An operator turning a held account's service on gets it stopped, as on any blocked account.
    r = await client.post(
        f"{API}/services/{tree.services['Unit1']}/status", json={"status": "active", "note": "try"}
    )
    assert r.status_code in (200, 409), r.text
    assert (await service_states(ctx_factory, tree))["Unit1"] == "stopped"


async def test_a_void_invoice_lifts_its_holds_and_the_job_lifts_what_was_settled_elsewhere(
    tree: Tree, ctx_factory: Any, settings: Settings, db: Database, clock: FrozenClock
) -> None:
    from boughs.billing import ledger

    voided = await consolidated(ctx_factory, tree, total=1_000)
    async with ctx_factory() as ctx:
        await dunning.start_overdue(ctx)
        row = await ctx.session.get(Invoice, voided.id)
        assert row is not None
        row.status = "void"
        await ctx.session.flush()
        await ledger.invoice_voided(ctx, row)
    assert set((await service_states(ctx_factory, tree)).values()) == {"active"}

    # Settled by a path that did not lift the holds itself: the next run does.
    other = await consolidated(ctx_factory, tree, total=1_000)
    async with ctx_factory() as ctx:
        await dunning.start_overdue(ctx)
        row = await ctx.session.get(Invoice, other.id)
        assert row is not None
        row.status, row.amount_paid = "paid", 1_000
    assert held_everywhere_on_it(await service_states(ctx_factory, tree))
    result = await run_job(settings, db, clock, ctx_factory)
    assert result["invoices_released"] == 1
    assert set((await service_states(ctx_factory, tree)).values()) == {"active"}


async def test_batches(tree: Tree, ctx_factory: Any) -> None:
    for _ in range(5):
        await consolidated(ctx_factory, tree, total=100)
    async with ctx_factory() as ctx:
        batch = await dunning.start_overdue(ctx, limit=2)
    assert (len(batch.invoice_ids), batch.more) == (2, True)
    done = len(batch.invoice_ids)
    while batch.more:
        async with ctx_factory() as ctx:
            batch = await dunning.start_overdue(ctx, limit=2)
        done += len(batch.invoice_ids)
    assert done == 5
    assert await count(ctx_factory, DunningHold) == 15
