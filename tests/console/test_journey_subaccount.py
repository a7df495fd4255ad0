"""Journey: an MSP's admin creates a subaccount with an administrator, who then signs in and
sees that subtree and nothing else."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.db import Database
from boughs.memberships import service as memberships
from boughs.memberships.models import AccountRole
from tests.console.journey_support import PASSWORD, add_user, ctx_for, provider_with_owner
from tests.console.live import LiveServer, log_in, screenshot, sign_out


def test_a_subaccount_administrator_sees_only_their_subtree(
    live_server: LiveServer, browser_page: Any
) -> None:
    async def seed(db: Database) -> tuple[int, int]:
        staff = await provider_with_owner(db)
        await add_user(db, staff.provider_id, "ops@northwind.example")
        async with db.transaction() as session:
            ctx = ctx_for(session, staff.actor())
            msp = await accounts.create(
                ctx,
                AccountCreate(
                    name="Northwind MSP", features={"subaccounts": True}, preaccept_agreements=True
                ),
            )
            await accounts.create(ctx, AccountCreate(name="Contoso Direct"))
            await memberships.add(ctx, msp.id, "ops@northwind.example", AccountRole.admin)
        return msp.id, staff.provider_id

    msp_id, _ = live_server.run(seed)
    page = browser_page
    log_in(page, "ops@northwind.example", PASSWORD)
    page.goto(f"/accounts/{msp_id}/children")
    page.get_by_test_id("new-subaccount").click()
    form = page.locator("main")
    form.get_by_role("textbox", name="Name", exact=True).fill("Fabrikam")
    form.get_by_label("External ID").fill("fab-1")
    form.get_by_label("Administrators").fill("it@fabrikam.example")
    page.get_by_role("button", name="Create").click()
    link = page.get_by_test_id("invitation-link")
    expect(link).to_have_count(1)
    invitation = link.get_attribute("href")
    assert invitation and "/invitations/" in invitation
    sign_out(page)

    page.goto(invitation)
    page.get_by_label("Your name").fill("Fabrikam IT")
    page.get_by_label("Choose a password").fill("Fabrikam-Pass-2026")
    page.get_by_label("Confirm password").fill("Fabrikam-Pass-2026")
    page.get_by_role("button", name="Accept invitation").click()
    expect(page.get_by_test_id("focus-account")).to_have_text("Fabrikam")
    fabrikam_url = page.url

    page.goto("/accounts")
    listed = page.locator("main table tbody tr")
    expect(listed).to_have_count(1)
    expect(listed.first).to_contain_text("Fabrikam")
    screenshot(page, "subaccount-admin-sees-own-subtree")
    # Upward and sideways are not there at all.
    assert page.goto(f"/accounts/{msp_id}").status == 404
    assert page.goto(fabrikam_url).status == 200
