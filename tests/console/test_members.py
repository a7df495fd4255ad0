"""The Users, Agreements and Activity tabs, and accepting an invitation in the browser."""

from __future__ import annotations

import re

import httpx

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.memberships import service as memberships
from boughs.memberships.models import AccountRole
from tests.console.conftest import ConsoleClient, MakeConsoleUser, SignIn


def _invitation_path(html: str) -> str:
    found = re.search(
        r'value="http://testserver(/invitations/[^"]+)"[^>]*data-testid="invitation-link"', html
    )
    assert found, "the answer shows no invitation link"
    return found.group(1)


async def test_users_tab_adds_an_existing_user_refuses_a_bad_email_and_removes(
    owner_console: ConsoleClient, make_console_user: MakeConsoleUser, ctx_factory
) -> None:  # type: ignore[no-untyped-def]
    ana = await make_console_user("ana@lofts.example")
    bob = await make_console_user("bob@lofts.example")
    async with ctx_factory() as ctx:
        lofts = await accounts.create(ctx, AccountCreate(name="Harbour Lofts"))
        await memberships.add(ctx, lofts.id, ana.email, AccountRole.admin)
    url = f"/accounts/{lofts.id}/users"

    tab = await owner_console.get(url)
    assert tab.status_code == 200
    assert "ana@lofts.example" in tab.text and "administrator" in tab.text
    assert 'aria-current="page">Users' in tab.text

    bad = await owner_console.submit(url, {"email": "not-an-email", "role": "viewer"})
    assert bad.status_code == 422 and 'data-field-error="email"' in bad.text

    added = await owner_console.submit(url, {"email": bob.email, "role": "technical"})
    assert added.status_code == 303 and added.headers["location"] == url
    async with ctx_factory() as ctx:
        rows = {m["email"]: m for m in await memberships.list_for_account(ctx, lofts.id)}
    assert rows[bob.email]["role"] == "technical"

    again = await owner_console.get(url)
    bob_id = rows[bob.email]["id"]
    assert f"Remove bob ({bob.email}) from Harbour Lofts? They lose the technical role" in again.text
    removed = await owner_console.submit(f"{url}/{bob_id}/remove")
    assert removed.status_code == 303
    async with ctx_factory() as ctx:
        left = [m["email"] for m in await memberships.list_for_account(ctx, lofts.id)]
    assert left == [ana.email]


async def test_an_invitation_link_signs_the_new_user_in_to_their_subtree_only(
    owner_console: ConsoleClient, browser: httpx.AsyncClient, make_console_user: MakeConsoleUser, ctx_factory
) -> None:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        msp = await accounts.create(ctx, AccountCreate(name="Clienticity"))
        unit = await accounts.create(ctx, AccountCreate(name="Clienticity Labs", parent_id=msp.id))
        other = await accounts.create(ctx, AccountCreate(name="Someone Else"))

    invited = await owner_console.submit(
        f"/accounts/{msp.id}/users", {"email": "Cleo@Clienticity.example", "role": "admin"}
    )
    assert invited.status_code == 200 and "Invitation created for cleo@clienticity.example" in invited.text
    link = _invitation_path(invited.text)
    pending = await owner_console.get(f"/accounts/{msp.id}/users")
    assert 'data-testid="pending-invitation"' in pending.text and "cleo@clienticity.example" in pending.text

    form = await browser.get(link)
    assert form.status_code == 200 and "cleo@clienticity.example" in form.text
    assert 'name="confirm_password"' in form.text
    mismatch = await browser.post(
        link, data={"name": "Cleo", "password": "Sturdy-Pass-1", "confirm_password": "Sturdy-Pass-2"}
    )
    assert mismatch.status_code == 422 and 'data-field-error="confirm_password"' in mismatch.text
    weak = await browser.post(link, data={"name": "Cleo", "password": "short", "confirm_password": "short"})
    assert weak.status_code == 422 and 'data-field-error="password"' in weak.text

    accepted = await browser.post(
        link, data={"name": "Cleo", "password": "Sturdy-Pass-1", "confirm_password": "Sturdy-Pass-1"}
    )
    assert accepted.status_code == 303 and accepted.headers["location"] == f"/accounts/{msp.id}"
    own = await browser.get(f"/accounts/{msp.id}/users")
    assert own.status_code == 200 and "cleo@clienticity.example" in own.text and "Welcome, Cleo" in own.text
    assert (await browser.get(f"/accounts/{unit.id}/agreements")).status_code == 200
    assert (await browser.get(f"/accounts/{other.id}/users")).status_code == 404

    # Someone who got a user after being invited confirms with that user's own password.
    later = await owner_console.submit(
        f"/accounts/{unit.id}/users", {"email": "dora@labs.example", "role": "viewer"}
    )
    dora_link = _invitation_path(later.text)
    dora = await make_console_user("dora@labs.example")
    asks = await browser.get(dora_link)
    assert "Your password" in asks.text and 'name="confirm_password"' not in asks.text
    joined = await browser.post(dora_link, data={"password": dora.password})
    assert joined.status_code == 303 and joined.headers["location"] == f"/accounts/{unit.id}"

    spent = await browser.get(link)
    assert spent.status_code == 410 and "already been accepted" in spent.text
    unknown = await browser.get("/invitations/not-a-real-token")
    assert unknown.status_code == 404 and "This invitation link is not valid." in unknown.text


async def test_agreements_are_accepted_by_an_admin_refused_to_a_viewer_and_logged(
    owner_console: ConsoleClient, sign_in: SignIn, make_console_user: MakeConsoleUser, ctx_factory
) -> None:  # type: ignore[no-untyped-def]
    vic = await make_console_user("vic@lofts.example")
    async with ctx_factory() as ctx:
        lofts = await accounts.create(ctx, AccountCreate(name="Harbour Lofts"))
        await memberships.add(ctx, lofts.id, vic.email, AccountRole.viewer)
    url = f"/accounts/{lofts.id}/agreements"
    viewer = await sign_in(vic.id)

    seen = await viewer.get(url)
    assert seen.status_code == 200 and "not yet accepted" in seen.text
    assert "Accept agreements" not in seen.text
    refused = await viewer.submit(url, {"msa": "on", "aup": "on"})
    assert refused.status_code == 403
    users = await viewer.get(f"/accounts/{lofts.id}/users")
    assert users.status_code == 200 and "Add user" not in users.text and "Remove" not in users.text
    not_theirs = await viewer.submit(
        f"/accounts/{lofts.id}/users", {"email": "x@lofts.example", "role": "admin"}
    )
    assert not_theirs.status_code == 403

    form = await owner_console.get(url)
    assert "I accept the Master Services Agreement" in form.text and "services can be added" not in form.text
    nothing = await owner_console.submit(url, {})
    assert nothing.status_code == 422 and 'data-field-error="msa"' in nothing.text
    done = await owner_console.submit(url, {"msa": "on", "aup": "on"})
    assert done.status_code == 303
    async with ctx_factory() as ctx:
        assert accounts.agreements_of(await accounts.get(ctx, lofts.id))["complete"] is True
    state = await owner_console.get(url)
    msa = state.text.split('data-testid="msa-state"', 1)[1].split("</dd>", 1)[0]
    assert "accepted</span>" in msa and f"by {owner_console.email}" in msa

    activity = await viewer.get(f"/accounts/{lofts.id}/activity")
    assert activity.status_code == 200
    assert "agreements accepted" in activity.text and "<code>msa_accepted_at</code>" in activity.text
    assert "<ins>2026-01-15T12:00:00+00:00</ins>" in activity.text
    only_members = await viewer.get(f"/accounts/{lofts.id}/activity", params={"entity": "membership"})
    assert "agreements accepted" not in only_members.text and "membership" in only_members.text
