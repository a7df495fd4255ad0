"""Journey: a user switches to a child account through the header's dropdown search."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.db import Database
from tests.console.journey_support import Staff, ctx_for, provider_with_owner
from tests.console.live import LiveServer, log_in, screenshot


def test_switching_to_a_child_through_the_dropdown(live_server: LiveServer, browser_page: Any) -> None:
    async def seed(db: Database) -> tuple[Staff, int]:
        staff = await provider_with_owner(db)
        async with db.transaction() as session:
            ctx = ctx_for(session, staff.actor())
            top = await accounts.create(ctx, AccountCreate(name="Harbourside Lofts", external_id="lofts"))
            child = await accounts.create(
                ctx, AccountCreate(name="Unit 12", external_id="lofts-12", parent_id=top.id)
            )
            await accounts.create(ctx, AccountCreate(name="Unit 14", parent_id=top.id))
        return staff, child.id

    staff, child_id = live_server.run(seed)
    page = browser_page
    log_in(page, staff.email, staff.password)
    box = page.get_by_test_id("switcher-input")
    box.fill("lofts-12")
    # Only the account whose external id matches stays in the list.
    expect(page.get_by_test_id("switcher-option")).to_have_count(1)
    # The keyboard alone: down into the results, Enter opens the account.
    box.press("ArrowDown")
    expect(page.get_by_test_id("switcher-option").filter(has_text="Unit 12")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/accounts/{child_id}")
    focus = page.get_by_test_id("focus-account")
    assert focus.inner_text() == "Unit 12"
    crumbs = page.get_by_role("navigation", name="Breadcrumb")
    assert "Harbourside Lofts" in crumbs.inner_text()
    screenshot(page, "switch-to-child")
