"""Journey: a child's expiry inherited from its parent shows where it comes from, and a link
there; once the child has its own, it says so."""

from __future__ import annotations

from datetime import date
from typing import Any

from playwright.sync_api import expect

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.db import Database
from tests.console.journey_support import PASSWORD, ctx_for, provider_with_owner
from tests.console.live import LiveServer, log_in, screenshot


def test_an_inherited_expiry_names_the_parent_it_comes_from(
    live_server: LiveServer, browser_page: Any
) -> None:
    async def seed(db: Database) -> tuple[int, int, str]:
        staff = await provider_with_owner(db)
        async with db.transaction() as session:
            ctx = ctx_for(session, staff.actor())
            school = await accounts.create(
                ctx, AccountCreate(name="Riverside School", expiry_date=date(2027, 7, 31))
            )
            staff_wifi = await accounts.create(ctx, AccountCreate(name="Staff Wi-Fi", parent_id=school.id))
        return school.id, staff_wifi.id, staff.email

    school_id, child_id, email = live_server.run(seed)
    page = browser_page
    log_in(page, email, PASSWORD)
    page.goto(f"/accounts/{child_id}")
    expiry = page.get_by_test_id("effective-expiry")
    expect(expiry).to_contain_text("2027-07-31")
    expect(expiry).to_contain_text("inherited from Riverside School")
    screenshot(page, "inherited-expiry-source")
    expiry.get_by_role("link", name="Riverside School").click()
    page.wait_for_url(f"**/accounts/{school_id}")
    expect(page.get_by_test_id("effective-expiry")).to_contain_text("own")
