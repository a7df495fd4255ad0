"""Billing scenarios that travel in time through the public API (an injected clock)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from boughs.billing.models import Invoice
from boughs.config import Settings
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from tests.billing.support import API, bill_run, invoices_of, new_account, new_plan, new_service, run_jobs

JAN1 = date(2026, 1, 1)


async def _landlord(ctx_factory) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """A landlord with six units billed together and one billed separately (seed 000)."""
    async with ctx_factory() as ctx:
        ids = {"landlord": await new_account(ctx, "Landlord")}
        plan = await new_plan(ctx, 3_000, name="Unit 30 Mbit")
        for n in range(1, 7):
            ids[f"unit{n}"] = await new_account(ctx, f"Unit {n}", ids["landlord"], invoice_mode="with_parent")
            await new_service(ctx, ids[f"unit{n}"], plan, JAN1)
        ids["shop"] = await new_account(ctx, "Shop", ids["landlord"], invoice_mode="separate")
        await new_service(ctx, ids["shop"], plan, JAN1)
    return ids


async def test_landlord_with_six_units_billed_together_and_one_separately(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    ids = await _landlord(ctx_factory)
    run = await bill_run(client, settings, db, clock, "2026-01-31")
    assert run["invoices_created"] == 2 and run["total_amount"] == {"USD": 21_000}

    [combined] = await invoices_of(client, ids["landlord"])
    assert combined["status"] == "draft" and combined["number"] is None
    assert (combined["period_start"], combined["period_end"]) == ("2026-01-01", "2026-01-31")
    assert combined["total_amount"] == 18_000 == sum(ln["amount"] for ln in combined["lines"])
    per_unit = Counter(ln["account_id"] for ln in combined["lines"])
    assert per_unit == Counter({ids[f"unit{n}"]: 1 for n in range(1, 7)})
    assert {ln["kind"] for ln in combined["lines"]} == {"recurring"}
    assert sorted(combined["account_ids"]) == sorted(
        [ids["landlord"], *(ids[f"unit{n}"] for n in range(1, 7))]
    )

    [own] = await invoices_of(client, ids["shop"])
    assert own["total_amount"] == 3_000 and [ln["account_id"] for ln in own["lines"]] == [ids["shop"]]
    for n in range(1, 7):
        assert await invoices_of(client, ids[f"unit{n}"]) == []


async def test_rerun_and_dry_run_write_nothing_twice(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    ids = await _landlord(ctx_factory)
    preview = await bill_run(client, settings, db, clock, "2026-01-31", dry_run=True)
    await bill_run(client, settings, db, clock, "2026-01-31")
    again = await bill_run(client, settings, db, clock, "2026-01-31")
    assert again["invoices_created"] == 0 and again["invoices_skipped"] == 2

    def shape(invoice: dict) -> tuple:  # type: ignore[type-arg]
        lines = [
            (ln["kind"], ln["account_id"], ln["amount"], ln["quantity"], ln["period_start"])
            for ln in invoice["lines"]
        ]
        return invoice["owner_account_id"], invoice["total_amount"], invoice["tax_amount"], lines

    real = [*(await invoices_of(client, ids["landlord"])), *(await invoices_of(client, ids["shop"]))]
    assert sorted(shape(p) for p in preview["previews"]) == sorted(shape(r) for r in real)
    async with db.transaction(write=False) as session:
        counted = await session.scalar(
            select(func.count()).select_from(Invoice).where(Invoice.status == "draft")
        )
    assert counted == 2


async def test_join_mid_month_is_prorated_by_day_and_finalized_numbers_are_gapless(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    async with ctx_factory() as ctx:
        home = await new_account(ctx, "Home")
        plan = await new_plan(ctx, 3_100, name="Fibre")
        await new_service(ctx, home, plan, date(2026, 1, 11))
    await bill_run(client, settings, db, clock, "2026-01-31")
    [draft] = await invoices_of(client, home)
    [line] = draft["lines"]
    # 21 of January's 31 days at 31.00 a month.
    assert (line["kind"], line["amount"], line["details"]["days"]) == ("proration", 2_100, 21)

    finalized = (await client.post(f"{API}/invoices/{draft['id']}/finalize")).json()
    assert finalized["status"] == "finalized" and finalized["number"] == "INV-000001"
    assert finalized["due_date"] == (date(2026, 1, 15) + timedelta(days=30)).isoformat()
    refused = await client.post(f"{API}/invoices/{draft['id']}/recalculate")
    assert refused.status_code == 409

    clock.set(clock.now() + timedelta(days=31))
    await bill_run(client, settings, db, clock, "2026-02-28", finalize=True)
    february = [i for i in await invoices_of(client, home) if i["period_end"] == "2026-02-28"]
    assert [(i["number"], i["total_amount"]) for i in february] == [("INV-000002", 3_100)]
    await run_jobs(settings, db, clock)


# --- pooled usage (seed 001) -------------------------------------------------------------------

POOL_TIERS = [{"up_to": 100, "unit_price": "0.10"}, {"up_to": None, "unit_price": "0.05"}]


async def _pool(ctx_factory, mode: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """A parent on a pooled data plan; two children billed with it, one billed separately."""
    from boughs.catalog.schemas import UsageCharge
    from tests.usage.support import event, new_meter, send

    async with ctx_factory() as ctx:
        await new_meter(ctx, "data.mb", unit="MB")
        charge = UsageCharge(meter="data.mb", model="graduated", tiers=POOL_TIERS)
        pooled = await new_plan(
            ctx, 0, name=f"Pooled data ({mode})", usage_charges=[charge], child_billing_mode=mode
        )
        ids = {"parent": await new_account(ctx, "Parent")}
        await new_service(ctx, ids["parent"], pooled, JAN1)
        ids["a"] = await new_account(ctx, "A", ids["parent"], invoice_mode="with_parent")
        ids["b"] = await new_account(ctx, "B", ids["parent"], invoice_mode="with_parent")
        ids["c"] = await new_account(ctx, "C", ids["parent"], invoice_mode="separate")
        at = "2026-01-10T10:00:00Z"
        used = {"a": 80, "b": 60, "c": 40}
        events = [event(f"{k}-1", str(q), at, meter="data.mb", account_id=ids[k]) for k, q in used.items()]
        assert {r.status.value for r in await send(ctx, events)} == {"accepted"}
    return ids


async def test_pooled_graduated_tiers_in_breakdown(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    ids = await _pool(ctx_factory, "parent_breakdown")
    await bill_run(client, settings, db, clock, "2026-01-31")
    [invoice] = await invoices_of(client, ids["parent"])
    # 180 MB pooled: 100 at 0.10 and 80 at 0.05 = 14.00, shared 80:60:40 by largest remainder.
    assert invoice["total_amount"] == 1_400 and invoice["layout"] == "breakdown"
    shares = {ln["account_id"]: ln["amount"] for ln in invoice["lines"]}
    assert shares == {ids["a"]: 622, ids["b"]: 467, ids["c"]: 311}
    allocation = invoice["lines"][0]["details"]["allocation"]
    assert (allocation["pool_quantity"], allocation["pool_amount"]) == ("180", 1_400)
    assert [i["total_amount"] for i in await invoices_of(client, ids["c"])] == []


async def test_pooled_graduated_tiers_in_summary(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    ids = await _pool(ctx_factory, "parent_summary")
    await bill_run(client, settings, db, clock, "2026-01-31")
    [invoice] = await invoices_of(client, ids["parent"])
    assert invoice["layout"] == "summary"
    [line] = invoice["lines"]
    assert (line["quantity"], line["amount"], line["account_id"]) == ("180", 1_400, ids["parent"])
    assert line["details"]["accounts"] == 3


async def test_child_mode_rates_each_child_alone_on_its_own_bill(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    ids = await _pool(ctx_factory, "child")
    await bill_run(client, settings, db, clock, "2026-01-31")
    [parent] = await invoices_of(client, ids["parent"])
    # Each child alone stays in the first tier: 80 x 0.10 and 60 x 0.10 with the parent, 40 x 0.10 alone.
    assert {ln["account_id"]: ln["amount"] for ln in parent["lines"]} == {ids["a"]: 800, ids["b"]: 600}
    [separate] = await invoices_of(client, ids["c"])
    assert [ln["amount"] for ln in separate["lines"]] == [400]


# --- changes during the period -----------------------------------------------------------------


async def test_move_mid_period_splits_the_charge_between_the_owners(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    from boughs.accounts import service as accounts

    clock.set(clock.now() - timedelta(days=30))
    async with ctx_factory() as ctx:
        first = await new_account(ctx, "First landlord")
        second = await new_account(ctx, "Second landlord")
        unit = await new_account(ctx, "Unit", first, invoice_mode="with_parent")
        await new_service(ctx, unit, await new_plan(ctx, 3_100), JAN1)
    clock.set(clock.now() + timedelta(days=30))  # 2026-01-15 12:00
    async with ctx_factory() as ctx:
        await accounts.move(ctx, unit, second)
    await bill_run(client, settings, db, clock, "2026-01-31")
    [before] = await invoices_of(client, first)
    [after] = await invoices_of(client, second)
    # Days 1-15 (the move happened during the 15th) stay with the first, 16-31 go to the second.
    assert [(ln["period_start"], ln["period_end"], ln["amount"]) for ln in before["lines"]] == [
        ("2026-01-01", "2026-01-15", 1_500)
    ]
    assert [(ln["period_start"], ln["period_end"], ln["amount"]) for ln in after["lines"]] == [
        ("2026-01-16", "2026-01-31", 1_600)
    ]


async def test_plan_change_mid_period_and_a_scheduled_change_are_prorated(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    from boughs.services import changes

    async with ctx_factory() as ctx:
        home = await new_account(ctx, "Home")
        small, big = await new_plan(ctx, 3_100, name="Small"), await new_plan(ctx, 6_200, name="Big")
        service = await new_service(ctx, home, small, JAN1)
    clock.set(clock.now() + timedelta(days=1))  # 2026-01-16
    async with ctx_factory() as ctx:
        await changes.change_plan(ctx, service, changes.ChangePlanRequest(plan_id=big))
        await changes.schedule_change(
            ctx, service, changes.ScheduledChangeCreate(effective_date=date(2026, 2, 10), plan_id=small)
        )
    await bill_run(client, settings, db, clock, "2026-01-31")
    [january] = await invoices_of(client, home)
    lines = [(ln["kind"], ln["period_start"], ln["amount"]) for ln in january["lines"]]
    assert lines == [("proration", "2026-01-01", 1_500), ("proration", "2026-01-16", 3_200)]
    # February billed in advance: the scheduled change back to Small on the 10th is on it.
    await bill_run(client, settings, db, clock, "2026-02-28")
    [february] = [i for i in await invoices_of(client, home) if i["period_end"] == "2026-02-28"]
    lines = [(ln["period_start"], ln["period_end"], ln["amount"]) for ln in february["lines"]]
    assert lines == [("2026-02-01", "2026-02-09", 1_993), ("2026-02-10", "2026-02-28", 2_104)]


# --- late usage, crashes, and what a finalized invoice is ------------------------------------------


async def test_late_usage_becomes_an_adjustment_on_the_next_invoice(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    from boughs.catalog.schemas import UsageCharge
    from tests.usage.support import event, new_meter, send

    async with ctx_factory() as ctx:
        await new_meter(ctx, "data.mb", unit="MB")
        charge = UsageCharge(meter="data.mb", model="per_unit", unit_price="0.10")
        home = await new_account(ctx, "Home")
        await new_service(ctx, home, await new_plan(ctx, 1_000, usage_charges=[charge]), JAN1)
        await send(ctx, [event("jan-1", "50", "2026-01-10T10:00:00Z", meter="data.mb", account_id=home)])
    clock.set(datetime(2026, 2, 1, 9, 0, tzinfo=UTC))
    await bill_run(client, settings, db, clock, "2026-01-31", finalize=True)
    [january] = await invoices_of(client, home)
    assert [(ln["kind"], ln["amount"]) for ln in january["lines"]] == [("recurring", 1_000), ("usage", 500)]

    async with ctx_factory() as ctx:
        [late] = await send(
            ctx, [event("jan-2", "30", "2026-01-20T10:00:00Z", meter="data.mb", account_id=home)]
        )
    assert late.status.value == "accepted"
    await bill_run(client, settings, db, clock, "2026-02-28")
    february = next(i for i in await invoices_of(client, home) if i["period_end"] == "2026-02-28")
    adjustment = [ln for ln in february["lines"] if ln["kind"] == "adjustment"]
    assert [(ln["period_start"], ln["quantity"], ln["amount"]) for ln in adjustment] == [
        ("2026-01-01", "30", 300)
    ]
    assert (await client.get(f"{API}/invoices/{january['id']}")).json() == january
    # Billed once: finalizing February marks the late event, so March does not bill it again.
    await client.post(f"{API}/invoices/{february['id']}/finalize")
    await bill_run(client, settings, db, clock, "2026-03-31")
    march = next(i for i in await invoices_of(client, home) if i["period_end"] == "2026-03-31")
    assert [ln["kind"] for ln in march["lines"]] == ["recurring"]


async def test_a_run_that_crashes_midway_resumes_without_duplicates(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory, monkeypatch
) -> None:
    from boughs.billing import engine, tasks

    async with ctx_factory() as ctx:
        plan = await new_plan(ctx, 2_000)
        homes = [await new_account(ctx, f"Home {n}") for n in range(4)]
        for home in homes:
            await new_service(ctx, home, plan, JAN1)
    monkeypatch.setattr(tasks, "ROOTS_PER_UNIT", 1)
    real_rate, calls = engine.Engine.rate, []

    async def crash_on_third_root(self, roots):  # type: ignore[no-untyped-def]
        calls.append(roots)
        if len(calls) == 3:
            raise RuntimeError("the worker died")
        return await real_rate(self, roots)

    monkeypatch.setattr(engine.Engine, "rate", crash_on_third_root)
    started = (await client.post(f"{API}/bill-runs", json={"period_end": "2026-01-31"})).json()
    await run_jobs(settings, db, clock)
    halfway = (await client.get(f"{API}/bill-runs/{started['id']}")).json()
    assert (halfway["status"], halfway["roots_done"], halfway["invoices_created"]) == ("running", 2, 2)
    clock.set(clock.now() + timedelta(minutes=10))  # past the retry delay
    await run_jobs(settings, db, clock)
    done = (await client.get(f"{API}/bill-runs/{started['id']}")).json()
    assert (done["status"], done["roots_done"], done["invoices_created"]) == ("succeeded", 4, 4)
    for home in homes:
        assert [i["total_amount"] for i in await invoices_of(client, home)] == [2_000]


async def test_the_database_refuses_to_change_an_issued_invoice(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    from sqlalchemy import delete, update
    from sqlalchemy.exc import DBAPIError

    from boughs.billing.models import InvoiceLine

    async with ctx_factory() as ctx:
        home = await new_account(ctx, "Home")
        await new_service(ctx, home, await new_plan(ctx, 2_000), JAN1)
    await bill_run(client, settings, db, clock, "2026-01-31", finalize=True)
    [issued] = await invoices_of(client, home)
    attempts = [
        update(Invoice).where(Invoice.id == issued["id"]).values(total_amount=1),
        update(Invoice).where(Invoice.id == issued["id"]).values(number="INV-999999"),
        update(Invoice).where(Invoice.id == issued["id"]).values(status="draft"),
        delete(Invoice).where(Invoice.id == issued["id"]),
        update(InvoiceLine).where(InvoiceLine.invoice_id == issued["id"]).values(amount=1),
        delete(InvoiceLine).where(InvoiceLine.invoice_id == issued["id"]),
    ]
    for statement in attempts:
        try:
            async with db.transaction() as session:
                await session.execute(statement)
        except DBAPIError as refused:
            assert "issued invoice cannot be changed" in str(refused)
        else:
            raise AssertionError(f"the database allowed {statement}")
    assert (await client.get(f"{API}/invoices/{issued['id']}")).json() == issued
    # What may change still can: the payment state.
    async with db.transaction() as session:
        await session.execute(
            update(Invoice).where(Invoice.id == issued["id"]).values(amount_paid=2_000, status="paid")
        )


# --- collecting ----------------------------------------------------------------------------------


async def test_dunning_suspends_only_the_owing_subtree_and_payment_lifts_it(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    from boughs.billing.dunning_tasks import DUNNING
    from boughs.jobs import service as jobs

    ids = await _landlord(ctx_factory)
    await bill_run(client, settings, db, clock, "2026-01-31", finalize=True)
    [combined] = await invoices_of(client, ids["landlord"])
    [shop_invoice] = await invoices_of(client, ids["shop"])
    assert combined["due_date"] == "2026-02-14"
    # The shop pays its own; the landlord does not, past its due date and the 7 days of grace.
    paid = await client.post(
        f"{API}/accounts/{ids['shop']}/payments",
        json={
            "method": "card",
            "amount": 3_000,
            "currency": "USD",
            "received_on": "2026-01-15",
            "reference": "shop-1",
        },
    )
    assert paid.status_code == 201, paid.text
    clock.set(datetime(2026, 2, 23, 9, 0, tzinfo=UTC))

    async def dunning() -> None:
        async with ctx_factory() as ctx:
            await jobs.enqueue(ctx, DUNNING)
        await run_jobs(settings, db, clock)

    async def status(name: str) -> str:
        return (await client.get(f"{API}/accounts/{ids[name]}/effective")).json()["status"]["value"]

    await dunning()
    assert await status("landlord") == "suspended"
    held = (await client.get(f"{API}/accounts/{ids['unit3']}/effective")).json()["status"]
    assert (held["reason"], held["source_account_id"]) == ("unpaid", ids["unit3"])
    assert {await status(f"unit{n}") for n in range(1, 7)} == {"suspended"}
    assert await status("shop") == "active"  # billed separately: not on the overdue invoice
    units = (await client.get(f"{API}/accounts/{ids['unit1']}/services")).json()["items"]
    assert [s["status"] for s in units] == ["stopped"]

    half = await client.post(
        f"{API}/accounts/{ids['landlord']}/payments",
        json={
            "method": "manual",
            "amount": 9_000,
            "currency": "USD",
            "received_on": "2026-02-23",
            "reference": "ll-1",
        },
    )
    assert half.status_code == 201, half.text
    assert await status("unit1") == "suspended"  # a part payment does not lift it
    rest = await client.post(
        f"{API}/accounts/{ids['landlord']}/payments",
        json={
            "method": "manual",
            "amount": 9_000,
            "currency": "USD",
            "received_on": "2026-02-23",
            "reference": "ll-2",
        },
    )
    assert rest.status_code == 201, rest.text
    assert (await client.get(f"{API}/invoices/{combined['id']}")).json()["status"] == "paid"
    assert {await status(n) for n in ("landlord", "unit1", "unit6")} == {"active"}
    units = (await client.get(f"{API}/accounts/{ids['unit1']}/services")).json()["items"]
    assert [s["status"] for s in units] == ["active"]
    ledger = (await client.get(f"{API}/accounts/{ids['landlord']}/transactions")).json()
    assert ledger["balance"] == 0 and [e["kind"] for e in ledger["items"]] == [
        "payment",
        "payment",
        "invoice",
    ]
    assert shop_invoice["total_amount"] == 3_000


async def test_an_account_that_owes_cannot_be_deleted_and_its_invoices_outlive_it(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    async with ctx_factory() as ctx:
        home = await new_account(ctx, "Home", billing_address="1 Quay Street")
        await new_service(ctx, home, await new_plan(ctx, 2_000), JAN1)
    await bill_run(client, settings, db, clock, "2026-01-31", finalize=True)
    [issued] = await invoices_of(client, home)
    refused = await client.delete(f"{API}/accounts/{home}")
    assert refused.status_code == 409 and "owes 2000" in refused.json()["detail"]
    assert (await client.get(f"{API}/accounts/{home}")).status_code == 200

    paid = await client.post(
        f"{API}/accounts/{home}/payments",
        json={
            "method": "manual",
            "amount": 2_000,
            "currency": "USD",
            "received_on": "2026-01-15",
            "reference": "p1",
        },
    )
    assert paid.status_code == 201, paid.text
    deleted = await client.delete(f"{API}/accounts/{home}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["kept"]["issued_invoices"] == 1 and deleted.json()["kept"]["payments"] == 1
    async with db.transaction(write=False) as session:
        kept = await session.get(Invoice, issued["id"])
        assert kept is not None and kept.status == "paid" and kept.number == issued["number"]
        assert kept.bill_to == {"name": "Deleted account", "account_id": home}
        assert kept.total_amount == 2_000


async def test_a_second_office_pays_its_own_bill_on_the_parents_shared_card(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    async with ctx_factory() as ctx:
        acme = await new_account(ctx, "Acme", billing_address="1 Dock Road", billing_tax_id="GB123")
        warehouse = await new_account(ctx, "Warehouse office", acme, invoice_mode="separate",
                                      billing_address="9 Yard Lane")  # fmt: skip
        plan = await new_plan(ctx, 5_000)
        await new_service(ctx, acme, plan, JAN1)
        await new_service(ctx, warehouse, plan, JAN1)
    card = {"kind": "card", "label": "Company Visa", "last_four": "4242", "holder": "Acme Ltd",
            "token_reference": "tok_acme", "is_default": True, "shared_with_children": True}  # fmt: skip
    created = await client.post(f"{API}/accounts/{acme}/payment-methods", json=card)
    assert created.status_code == 201, created.text
    await bill_run(client, settings, db, clock, "2026-01-31")
    [own] = await invoices_of(client, warehouse)
    # Its own invoice, its own address, the inherited tax id, paid with the parent's shared card.
    assert own["payer"]["id"] == created.json()["id"] and own["payer"]["account_id"] == acme
    assert own["bill_to"]["address"] == "9 Yard Lane" and own["bill_to"]["tax_id"] == "GB123"
    assert [ln["account_id"] for ln in own["lines"]] == [warehouse]
    [parent] = await invoices_of(client, acme)
    assert [ln["account_id"] for ln in parent["lines"]] == [acme]
    pdf = await client.get(f"{API}/invoices/{own['id']}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    html = (await client.get(f"{API}/invoices/{own['id']}.html")).text
    assert "Warehouse office" in html and "4242" in html and "9 Yard Lane" in html


async def test_usage_reported_on_the_account_itself_is_billed_with_its_first_service(
    client: httpx.AsyncClient, settings: Settings, db: Database, clock: FrozenClock, ctx_factory
) -> None:
    from boughs.catalog.schemas import UsageCharge
    from tests.usage.support import event, new_meter, send

    async with ctx_factory() as ctx:
        await new_meter(ctx, "data.mb", unit="MB")
        charge = UsageCharge(meter="data.mb", model="per_unit", unit_price="0.10")
        plan = await new_plan(ctx, 1_000, usage_charges=[charge])
        home = await new_account(ctx, "Home")  # one service
        home_line = await new_service(ctx, home, plan, JAN1)
        office = await new_account(ctx, "Office")  # two services
        desk = await new_service(ctx, office, plan, JAN1)
        lobby = await new_service(ctx, office, plan, JAN1)
        at = "2026-01-10T10:00:00Z"
        await send(
            ctx,
            [
                event("h-service", "40", at, meter="data.mb", service_id=home_line),
                event("h-account", "2", at, meter="data.mb", account_id=home),
                event("o-desk", "10", at, meter="data.mb", service_id=desk),
                event("o-lobby", "20", at, meter="data.mb", service_id=lobby),
                event("o-account", "5", at, meter="data.mb", account_id=office),
            ],
        )
    clock.set(datetime(2026, 2, 1, 9, 0, tzinfo=UTC))
    await bill_run(client, settings, db, clock, "2026-01-31")

    def usage(invoice: dict[str, Any]) -> list[tuple[int, str, int]]:
        return [
            (ln["service_id"], ln["quantity"], ln["amount"])
            for ln in invoice["lines"]
            if ln["kind"] == "usage"
        ]

    [home_invoice] = await invoices_of(client, home)
    [office_invoice] = await invoices_of(client, office)
    # The account's own usage goes with its first service; nothing is billed twice.
    assert usage(home_invoice) == [(home_line, "42", 420)]
    assert sorted(usage(office_invoice)) == [(desk, "15", 150), (lobby, "20", 200)]
