"""Journey: an operator suspends and unsuspends a child connection and its services follow."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from boughs.accounts import service as accounts
from boughs.accounts.models import InvoiceMode
from boughs.accounts.schemas import AccountCreate
from boughs.db import Database
from boughs.services import connections
from boughs.services.connections_schemas import ChildConnectionCreate
from tests.console.journey_support import PASSWORD, ctx_for, provider_with_owner
from tests.console.live import LiveServer, log_in, screenshot
from tests.services.lifecycle_support import make_plan


def test_suspending_a_child_suspends_its_services_and_unsuspending_restores_them(
    live_server: LiveServer, browser_page: Any
) -> None:
    async def seed(db: Database) -> tuple[int, int, str]:
        staff = await provider_with_owner(db)
        async with db.transaction() as session:
            ctx = ctx_for(session, staff.actor())
            plan = await make_plan(
                ctx, "Home 50", 2500, kind="internet", download_rate=50_000, upload_rate=10_000
            )
            lofts = await accounts.create(
                ctx, AccountCreate(name="Harbourside Lofts", preaccept_agreements=True)
            )
            created = await connections.create(
                ctx,
                lofts.id,
                ChildConnectionCreate(
                    label="Unit 4B", username="lofts-4b", password="Unit-secret-42", plan_id=plan.id,
                    invoice_mode=InvoiceMode.with_parent,
                ),
            )  # fmt: skip
        return lofts.id, created[0].id, staff.email

    lofts_id, unit_id, email = live_server.run(seed)
    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, email, PASSWORD)

    page.goto(f"/accounts/{lofts_id}/children")
    page.get_by_role("button", name="Suspend Unit 4B").click()
    expect(page.get_by_test_id("child-row").first).to_contain_text("suspended")
    page.goto(f"/accounts/{unit_id}/services")
    # A suspended account's services stop, saying why (seed 004).
    expect(page.get_by_test_id("service-status").first).to_contain_text("stopped")
    expect(page.get_by_test_id("service-status").first).to_contain_text("the account is blocked")
    screenshot(page, "child-suspended-services")

    page.goto(f"/accounts/{lofts_id}/children")
    page.get_by_role("button", name="Unsuspend Unit 4B").click()
    expect(page.get_by_test_id("child-row").first).to_contain_text("active")
    page.goto(f"/accounts/{unit_id}/services")
    expect(page.get_by_test_id("service-status").first).to_contain_text("active")
    screenshot(page, "child-unsuspended-services")
