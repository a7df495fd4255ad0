"""Journey: a landlord's admin adds three unit connections billed with the parent, and after
a bill run the landlord sees one combined invoice with a section per unit."""

from __future__ import annotations

import calendar
from datetime import date
from typing import Any

from playwright.sync_api import expect

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.db import Database
from boughs.memberships import service as memberships
from boughs.memberships.models import AccountRole
from tests.console.journey_support import PASSWORD, add_user, ctx_for, provider_with_owner
from tests.console.live import LiveServer, log_in, screenshot, sign_out
from tests.services.lifecycle_support import make_plan

UNITS = ("Unit 1A", "Unit 1B", "Unit 2A")


def test_three_units_billed_with_the_landlord_make_one_invoice(
    live_server: LiveServer, browser_page: Any
) -> None:
    async def seed(db: Database) -> tuple[int, str, str]:
        staff = await provider_with_owner(db)
        landlord_admin = "manager@harbourside.example"
        await add_user(db, staff.provider_id, landlord_admin)
        async with db.transaction() as session:
            ctx = ctx_for(session, staff.actor())
            await make_plan(
                ctx, "Home Fibre 100", 2500, kind="internet", download_rate=100_000, upload_rate=20_000
            )
            lofts = await accounts.create(
                ctx,
                AccountCreate(
                    name="Harbourside Lofts", features={"subaccounts": True}, preaccept_agreements=True
                ),
            )
            await memberships.add(ctx, lofts.id, landlord_admin, AccountRole.admin)
        return lofts.id, landlord_admin, staff.email

    lofts_id, landlord_admin, owner_email = live_server.run(seed)
    page = browser_page
    log_in(page, landlord_admin, PASSWORD)
    for number, unit in enumerate(UNITS, start=1):
        page.goto(f"/accounts/{lofts_id}/children")
        page.get_by_test_id("new-connection").click()
        page.get_by_label("Label").fill(unit)
        page.get_by_label("Username").fill(f"lofts-unit-{number}")
        page.get_by_label("Password").fill("Unit-secret-42")
        page.get_by_label("Plan").select_option(index=1)
        page.get_by_label("With parent").check()
        page.get_by_role("button", name="Create connection").click()
        page.wait_for_url(lambda url: "new-connection" not in url)
    page.goto(f"/accounts/{lofts_id}/children")
    expect(page.get_by_test_id("child-row")).to_have_count(3)
    sign_out(page)

    today = date.today()
    month_end = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    log_in(page, owner_email, PASSWORD)
    page.goto("/bill-runs")
    page.get_by_label("Period end date").fill(month_end.isoformat())
    page.get_by_role("button", name="Start bill run").click()
    # The bar follows the run and the page shows its invoices when it is done.
    expect(page.get_by_test_id("invoice-row")).to_have_count(1, timeout=60_000)
    sign_out(page)

    log_in(page, landlord_admin, PASSWORD)
    page.goto(f"/accounts/{lofts_id}/invoices")
    rows = page.get_by_test_id("invoice-row")
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link").first.click()
    document = page.frame_locator("iframe")
    for unit in UNITS:
        expect(document.get_by_text(unit).first).to_be_visible()
    screenshot(page, "landlord-combined-invoice")
