"""The Services tab and the service page (seed 004): what they show, what each form changes,
the 422 beside the field when the input is wrong, and who may not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.memberships import service as memberships
from boughs.memberships.models import AccountRole
from boughs.services.models import Service, ServiceDiscount, ServiceScheduledChange
from tests.console.conftest import ConsoleClient, MakeConsoleUser, SignIn
from tests.services.lifecycle_support import load, make_plan, make_service


@dataclass
class World:
    account: int
    bare: int  # an account whose MSA and AUP nobody accepted
    other: int  # a tree the viewer cannot reach
    service: int
    capped: int  # an internet service with a data cap
    other_service: int
    plans: dict[str, int]


@pytest.fixture
async def world(ctx_factory: Any) -> World:
    async with ctx_factory() as ctx:
        basic = await make_plan(ctx, "Basic", 3000)
        better = await make_plan(ctx, "Better", 6200)
        capped = await make_plan(
            ctx, "Capped 1 GB", 5000, kind="internet", data_cap_bytes=10**9, cap_action="disable"
        )
        account = (await accounts.create(ctx, AccountCreate(name="Harbour", preaccept_agreements=True))).id
        bare = (await accounts.create(ctx, AccountCreate(name="Unsigned"))).id
        other = (await accounts.create(ctx, AccountCreate(name="Elsewhere", preaccept_agreements=True))).id
        service = await make_service(
            ctx, account, basic.id, description="Office line", start_date=date(2026, 1, 1)
        )
        capped_service = await make_service(ctx, account, capped.id, login="harbour-1")
        other_service = await make_service(ctx, other, basic.id)
    plans = {"Basic": basic.id, "Better": better.id, "Capped": capped.id}
    return World(account, bare, other, service, capped_service, other_service, plans)


async def count(ctx_factory: Any, model: Any, **where: Any) -> int:
    async with ctx_factory() as ctx:
        query = select(func.count()).select_from(model).filter_by(**where)
        return int(await ctx.session.scalar(query) or 0)


def field_error(html: str, name: str) -> bool:
    return f'data-field-error="{name}"' in html


async def test_the_services_tab_lists_filters_and_sorts(owner_console: ConsoleClient, world: World) -> None:
    tab = await owner_console.get(f"/accounts/{world.account}/services")
    assert tab.status_code == 200, tab.text
    assert 'aria-current="page">Services<' in tab.text
    assert "Office line" in tab.text and "harbour-1" in tab.text and "30.00 USD \u00d7 1" in tab.text
    assert tab.text.count('data-testid="service-status"') == 2
    assert f'href="/accounts/{world.account}/services/new"' in tab.text
    stopped = await owner_console.get(f"/accounts/{world.account}/services", params={"status": "stopped"})
    assert "No service matches." in stopped.text
    found = await owner_console.get(f"/accounts/{world.account}/services", params={"q": "HARBOUR-"})
    assert "harbour-1" in found.text and "Office line" not in found.text
    by_plan = await owner_console.get(
        f"/accounts/{world.account}/services", params={"sort": "plan", "dir": "desc"}
    )
    assert by_plan.text.index("Capped 1 GB") < by_plan.text.index("Office line")
    assert (await owner_console.get(f"/accounts/{world.account}/services?status=gone")).status_code == 422


async def test_adding_a_service_with_good_and_bad_input(
    owner_console: ConsoleClient, world: World, ctx_factory: Any
) -> None:
    url = f"/accounts/{world.account}/services/new"
    form = await owner_console.get(url)
    assert form.status_code == 200 and "Basic · custom · 30.00 USD per month" in form.text
    assert '<button type="submit" class="primary">Add service</button>' in form.text
    before = await count(ctx_factory, Service, account_id=world.account)

    bad = await owner_console.submit(
        url, {"plan_id": world.plans["Basic"], "quantity": "0", "unit_price": "abc"}
    )
    assert bad.status_code == 422 and field_error(bad.text, "unit_price")
    bad = await owner_console.submit(url, {"plan_id": world.plans["Basic"], "quantity": "0"})
    assert bad.status_code == 422 and field_error(bad.text, "quantity")
    # A login belongs to internet plans: the service's refusal lands beside the field.
    bad = await owner_console.submit(url, {"plan_id": world.plans["Basic"], "quantity": "1", "login": "x"})
    assert bad.status_code == 422 and field_error(bad.text, "login") and 'value="x"' in bad.text
    assert await count(ctx_factory, Service, account_id=world.account) == before

    good = await owner_console.submit(
        url, {"plan_id": world.plans["Basic"], "quantity": "2", "unit_price": "12.50", "description": "Desk"}
    )
    assert good.status_code == 303, good.text
    service_id = int(good.headers["location"].rsplit("/", 1)[1])
    async with ctx_factory() as ctx:
        added = await load(ctx, service_id)
    assert (added.account_id, added.quantity, added.unit_price_amount, added.status) == (
        world.account, 2, 1250, "active",
    )  # fmt: skip
    shown = await owner_console.get(good.headers["location"])
    assert f"Service {service_id} added." in shown.text and "12.50 USD \u00d7 2" in shown.text


async def test_an_account_without_agreements_cannot_add_a_service(
    owner_console: ConsoleClient, world: World, ctx_factory: Any
) -> None:
    url = f"/accounts/{world.bare}/services/new"
    form = await owner_console.get(url)
    assert 'data-testid="agreements-needed"' in form.text
    refused = await owner_console.submit(url, {"plan_id": world.plans["Basic"], "quantity": "1"})
    assert refused.status_code == 422
    assert (
        "has not accepted the Master Services Agreement (MSA) and the Acceptable Use Policy (AUP)"
        in refused.text
    )
    assert f'href="/accounts/{world.bare}/agreements"' in refused.text
    assert await count(ctx_factory, Service, account_id=world.bare) == 0


async def test_the_service_page_changes_plan_schedules_and_sets_status(
    owner_console: ConsoleClient, world: World, ctx_factory: Any
) -> None:
    url = f"/services/{world.service}"
    shown = await owner_console.get(url)
    assert shown.status_code == 200
    assert 'data-testid="service-status"><span class="status status-active">active</span>' in shown.text

    moved = await owner_console.submit(f"{url}/change-plan", {"change_plan_id": world.plans["Better"]})
    assert moved.status_code == 303 and moved.headers["location"] == url
    assert "Plan changed (credit" in (await owner_console.get(url)).text

    past = await owner_console.submit(
        f"{url}/scheduled-changes", {"schedule_effective_date": "2026-01-01", "schedule_quantity": "3"}
    )
    assert past.status_code == 422 and field_error(past.text, "schedule_effective_date")
    assert 'value="3"' in past.text  # the form keeps what was typed
    assert await count(ctx_factory, ServiceScheduledChange, service_id=world.service) == 0
    scheduled = await owner_console.submit(
        f"{url}/scheduled-changes", {"schedule_effective_date": "2026-02-01", "schedule_quantity": "3"}
    )
    assert scheduled.status_code == 303
    async with ctx_factory() as ctx:
        change = (await ctx.session.execute(select(ServiceScheduledChange))).scalar_one()
        assert (change.effective_date, change.quantity, change.state) == (date(2026, 2, 1), 3, "pending")
        assert (await load(ctx, world.service)).plan_id == world.plans["Better"]
    cancelled = await owner_console.submit(f"{url}/scheduled-changes/{change.id}/cancel")
    assert cancelled.status_code == 303

    wrong = await owner_console.submit(f"{url}/status", {"status_status": "pending"})
    assert wrong.status_code == 422 and field_error(wrong.text, "status_status")
    stopped = await owner_console.submit(
        f"{url}/status", {"status_status": "stopped", "status_note": "moving"}
    )
    assert stopped.status_code == 303
    page = await owner_console.get(url)
    assert 'data-testid="service-status"><span class="status status-stopped">stopped</span>' in page.text
    assert "moving" in page.text and f"Service {world.service} is now stopped." in page.text


async def test_discounts_are_added_and_removed(
    owner_console: ConsoleClient, world: World, ctx_factory: Any
) -> None:
    url = f"/services/{world.service}"
    bad = await owner_console.submit(f"{url}/discounts", {"discount_percent": "150"})
    assert bad.status_code == 422 and field_error(bad.text, "discount_percent")
    early = await owner_console.submit(
        f"{url}/discounts", {"discount_percent": "10", "discount_start_date": "2025-12-01"}
    )
    assert early.status_code == 422 and field_error(early.text, "discount_start_date")
    assert await count(ctx_factory, ServiceDiscount, service_id=world.service) == 0
    added = await owner_console.submit(
        f"{url}/discounts", {"discount_percent": "12.5", "discount_description": "Loyal"}
    )
    assert added.status_code == 303
    async with ctx_factory() as ctx:
        discount = (await ctx.session.execute(select(ServiceDiscount))).scalar_one()
    assert discount.percent_bp == 1250
    page = await owner_console.get(url)
    assert "12.50%" in page.text and "Remove the 12.50% discount" in page.text
    removed = await owner_console.submit(f"{url}/discounts/{discount.id}/delete")
    assert removed.status_code == 303
    assert await count(ctx_factory, ServiceDiscount, service_id=world.service) == 0


async def test_a_capped_service_shows_its_cap_takes_top_ups_and_edits(
    owner_console: ConsoleClient, world: World, ctx_factory: Any
) -> None:
    url = f"/services/{world.capped}"
    page = await owner_console.get(url)
    assert "0 B used of 1.00 GB" in page.text
    bad = await owner_console.submit(f"{url}/top-ups", {"topup_amount": "-1", "topup_unit": "GB"})
    assert bad.status_code == 422 and field_error(bad.text, "topup_amount")
    good = await owner_console.submit(f"{url}/top-ups", {"topup_amount": "1.5", "topup_unit": "GB"})
    assert good.status_code == 303
    assert "0 B used of 2.50 GB" in (await owner_console.get(url)).text

    form = await owner_console.get(f"{url}/edit")
    assert form.status_code == 200 and 'value="harbour-1"' in form.text
    values = {"quantity": "1", "start_date": "2026-01-15", "ipv4_mode": "none", "login": "harbour-1"}
    bad = await owner_console.submit(f"{url}/edit", {**values, "mac_addresses": "not-a-mac"})
    assert bad.status_code == 422 and field_error(bad.text, "mac_addresses")
    saved = await owner_console.submit(f"{url}/edit", {**values, "login": "harbour-2", "description": "Roof"})
    assert saved.status_code == 303
    async with ctx_factory() as ctx:
        service = await load(ctx, world.capped)
    assert (service.login, service.description, service.mac_addresses) == ("harbour-2", "Roof", [])

    confirm = await owner_console.get(f"{url}/delete")
    assert "Removed for good" in confirm.text and "1 top-up" in confirm.text
    deleted = await owner_console.submit(f"{url}/delete")
    assert deleted.headers["location"] == f"/accounts/{world.account}/services"
    assert await count(ctx_factory, Service, id=world.capped) == 0


async def test_a_viewer_may_look_but_not_change_and_other_trees_do_not_exist(
    sign_in: SignIn, make_console_user: MakeConsoleUser, world: World, ctx_factory: Any
) -> None:
    user = await make_console_user("viewer@harbour.test")
    async with ctx_factory() as ctx:
        await memberships.add(ctx, world.account, user.email, AccountRole.viewer)
    viewer = await sign_in(user.id)
    tab = await viewer.get(f"/accounts/{world.account}/services")
    assert tab.status_code == 200 and "Office line" in tab.text
    assert "/services/new" not in tab.text
    page = await viewer.get(f"/services/{world.service}")
    assert page.status_code == 200 and "Change status" not in page.text
    assert (await viewer.get(f"/accounts/{world.account}/services/new")).status_code == 403
    refused = await viewer.submit(f"/services/{world.service}/status", {"status_status": "stopped"})
    assert refused.status_code == 403
    async with ctx_factory() as ctx:
        assert (await load(ctx, world.service)).status == "active"
    assert (await viewer.get(f"/accounts/{world.other}/services")).status_code == 404
    assert (await viewer.get(f"/services/{world.other_service}")).status_code == 404
