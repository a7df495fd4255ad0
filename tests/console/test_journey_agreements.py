"""Journey: an account without accepted agreements cannot add a service until its admin accepts them."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.db import Database
from boughs.memberships import service as memberships
from boughs.memberships.models import AccountRole
from tests.console.journey_support import PASSWORD, add_user, ctx_for, provider_with_owner
from tests.console.live import LiveServer, log_in, screenshot
from tests.services.lifecycle_support import make_plan


def test_a_service_waits_for_the_admin_to_accept_the_agreements(
    live_server: LiveServer, browser_page: Any
) -> None:
    async def seed(db: Database) -> tuple[int, str]:
        staff = await provider_with_owner(db)
        email = "admin@cafe-luna.example"
        await add_user(db, staff.provider_id, email)
        async with db.transaction() as session:
            ctx = ctx_for(session, staff.actor())
            await make_plan(ctx, "Guest Wi-Fi", 2500)
            cafe = await accounts.create(ctx, AccountCreate(name="Cafe Luna"))
            await memberships.add(ctx, cafe.id, email, AccountRole.admin)
        return cafe.id, email

    cafe_id, email = live_server.run(seed)
    page = browser_page
    log_in(page, email, PASSWORD)

    page.goto(f"/accounts/{cafe_id}/services/new")
    page.get_by_label("Plan").select_option(index=1)
    page.get_by_role("button", name="Add service").click()
    refusal = page.get_by_test_id("agreements-needed")
    expect(refusal).to_contain_text("has not accepted the Master Services Agreement")
    page.goto(f"/accounts/{cafe_id}/services")
    expect(page.get_by_test_id("service-status")).to_have_count(0)

    page.goto(f"/accounts/{cafe_id}/agreements")
    page.get_by_label("I accept the Master Services Agreement").check()
    page.get_by_label("I accept the Acceptable Use Policy").check()
    page.get_by_role("button", name="Accept agreements").click()
    expect(page.locator("#flash")).to_contain_text("ccept")

    page.goto(f"/accounts/{cafe_id}/services/new")
    expect(page.get_by_test_id("agreements-needed")).to_have_count(0)
    page.get_by_label("Plan").select_option(index=1)
    page.get_by_role("button", name="Add service").click()
    page.goto(f"/accounts/{cafe_id}/services")
    expect(page.get_by_test_id("service-status")).to_have_count(1)
    screenshot(page, "agreements-then-service")
