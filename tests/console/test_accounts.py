"""The accounts console: list, tree, overview, child accounts, the three new-child forms,
dual device users, and what a viewer or a stranger to an account is refused."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest

from boughs.accounts import service as accounts
from boughs.accounts.repository import AccountFilter
from boughs.accounts.schemas import AccountCreate
from boughs.console import accounts as console_accounts
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.kit.errors import NotFound
from boughs.memberships import service as memberships
from boughs.memberships.models import AccountRole
from boughs.services import connections
from boughs.services.connections_schemas import ChildConnectionCreate
from tests.conftest import Tenant
from tests.console.conftest import ConsoleClient, MakeConsoleUser, SignIn
from tests.services.connections_world import make_catalog

Factory = Any


async def _landlord(ctx_factory: Factory, **fields: Any) -> tuple[int, int]:
    """Harbourside Lofts with one unit, Unit 4B, both with agreements accepted."""
    async with ctx_factory() as ctx:
        top = await accounts.create(
            ctx,
            AccountCreate(
                name="Harbourside Lofts", external_id="lofts", features={"subaccounts": True},
                preaccept_agreements=True, **fields,
            ),
        )  # fmt: skip
        unit = await accounts.create(
            ctx, AccountCreate(name="Unit 4B", parent_id=top.id, preaccept_agreements=True)
        )
        return top.id, unit.id


async def _account(ctx_factory: Factory, account_id: int) -> Any:
    async with ctx_factory() as ctx:
        return await accounts.get(ctx, account_id)


def _error_beside(html: str, field: str) -> str:
    found = re.search(rf'data-field-error="{re.escape(field)}">([^<]*)<', html)
    assert found, f"no error shown beside {field}"
    return found.group(1)


async def test_the_list_searches_filters_offers_a_new_account_and_dual_device_users(
    owner_console: ConsoleClient, ctx_factory: Factory
) -> None:
    top_id, unit_id = await _landlord(ctx_factory)
    async with ctx_factory() as ctx:
        await accounts.create(ctx, AccountCreate(name="Quayside Offices"))
    everything = await owner_console.get("/accounts")
    assert everything.status_code == 200 and 'href="/accounts/new"' in everything.text
    assert everything.text.count('data-testid="account-row"') == 3
    found = await owner_console.get("/accounts", params={"q": "unit"})
    assert f'href="/accounts/{unit_id}">Unit 4B<' in found.text and "Quayside" not in found.text
    by_external = await owner_console.get("/accounts", params={"q": "lofts"})
    assert "Harbourside Lofts" in by_external.text and "Quayside" not in by_external.text
    nested = await owner_console.get("/accounts", params={"depth": "1", "sort": "created", "dir": "desc"})
    assert nested.text.count('data-testid="account-row"') == 1 and "Unit 4B" in nested.text
    children = await owner_console.get("/accounts", params={"parent": str(top_id)})
    assert "Children of" in children.text and children.text.count('data-testid="account-row"') == 1

    blank = await owner_console.submit("/accounts/new", {"name": "", "administrators": "not-an-email"})
    assert blank.status_code == 422
    assert _error_beside(blank.text, "name") and _error_beside(blank.text, "administrators")
    made = await owner_console.submit("/accounts/new", {"name": "Pier Café", "subaccounts": "on"})
    assert made.status_code == 303
    new_id = int(made.headers["location"].rsplit("/", 1)[1])
    created = await _account(ctx_factory, new_id)
    assert created.parent_id is None and created.features == {"subaccounts": True}

    # Dual Device Users: the customers with child accounts (seed 000), searchable.
    async with ctx_factory() as ctx:
        await accounts.create(ctx, AccountCreate(name="Floor 2", parent_id=new_id))
    dual = await owner_console.get("/dual-device-users")
    assert dual.status_code == 200 and dual.text.count('data-testid="dual-device-row"') == 2
    assert "Quayside" not in dual.text
    found = await owner_console.get("/dual-device-users", params={"q": "harbour"})
    assert found.text.count('data-testid="dual-device-row"') == 1
    assert f'<a href="/accounts/{top_id}/children">1</a>' in found.text


async def test_the_tree_loads_children_lazily_a_page_at_a_time(
    owner_console: ConsoleClient, ctx_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console_accounts, "TREE_PAGE", 2)
    top_id, _ = await _landlord(ctx_factory)
    async with ctx_factory() as ctx:
        for name in ("Unit 5A", "Unit 6C"):
            await accounts.create(ctx, AccountCreate(name=name, parent_id=top_id))
    tree = await owner_console.get("/accounts/tree")
    assert tree.status_code == 200
    assert f'hx-get="/accounts/{top_id}/tree-children"' in tree.text and "3 children" in tree.text
    assert "Unit 4B" not in tree.text  # nothing below the roots until a node opens
    first = await owner_console.htmx("GET", f"/accounts/{top_id}/tree-children")
    assert first.status_code == 200 and "<html" not in first.text
    assert "Unit 4B" in first.text and "Unit 5A" in first.text and "Unit 6C" not in first.text
    more = re.search(r'hx-get="([^"]+)"[^>]*data-testid="tree-more"', first.text)
    assert more, "a node with more children than a page offers a way to load them"
    rest = await owner_console.htmx("GET", more.group(1).replace("&amp;", "&"))
    assert "Unit 6C" in rest.text and 'data-testid="tree-more"' not in rest.text


async def test_the_overview_shows_an_inherited_expiry_and_its_source(
    owner_console: ConsoleClient, ctx_factory: Factory
) -> None:
    top_id, unit_id = await _landlord(ctx_factory, expiry_date=date(2026, 12, 31))
    child = await owner_console.get(f"/accounts/{unit_id}")
    assert child.status_code == 200
    row = re.search(r'data-testid="effective-expiry">(.*?)</tr>', child.text, re.S)
    assert row is not None
    text = re.sub(r"<[^>]+>|\s+", " ", row.group(1))
    assert "Expires 2026-12-31 — inherited from Harbourside Lofts" in re.sub(r" +", " ", text)
    assert f'<a href="/accounts/{top_id}">Harbourside Lofts</a>' in row.group(1)
    assert f'Parent: <a href="/accounts/{top_id}">Harbourside Lofts</a>' in child.text
    parent = await owner_console.get(f"/accounts/{top_id}")
    own = re.search(r'data-testid="effective-expiry">(.*?)</tr>', parent.text, re.S)
    assert own is not None and "— own" in re.sub(r"\s+", " ", own.group(1))


async def test_editing_refuses_a_bad_field_beside_it_and_saves_a_good_one(
    owner_console: ConsoleClient, ctx_factory: Factory
) -> None:
    _, unit_id = await _landlord(ctx_factory)
    form = await owner_console.get(f"/accounts/{unit_id}/edit")
    assert form.status_code == 200 and 'value="Unit 4B"' in form.text
    bad = await owner_console.submit(
        f"/accounts/{unit_id}/edit",
        {"name": "Unit 4B (renamed)", "contact_email": "not-an-email", "invoice_mode": "separate"},
    )
    assert bad.status_code == 422 and "email" in _error_beside(bad.text, "contact_email")
    assert (await _account(ctx_factory, unit_id)).name == "Unit 4B"
    good = await owner_console.submit(
        f"/accounts/{unit_id}/edit",
        {"name": "Unit 4B (renamed)", "invoice_mode": "with_parent", "parent_access": "manage",
         "billing_anchor_day": "1", "expiry_date": "2027-01-31"},
    )  # fmt: skip
    assert good.status_code == 303 and good.headers["location"] == f"/accounts/{unit_id}"
    saved = await _account(ctx_factory, unit_id)
    assert (saved.name, saved.invoice_mode, saved.expiry_date) == (
        "Unit 4B (renamed)", "with_parent", date(2027, 1, 31),
    )  # fmt: skip


async def test_suspending_and_unsuspending_from_the_overview_and_the_children_tab(
    owner_console: ConsoleClient, ctx_factory: Factory
) -> None:
    top_id, unit_id = await _landlord(ctx_factory)
    overview = await owner_console.get(f"/accounts/{top_id}")
    assert ">Suspend Harbourside Lofts</button>" in overview.text and "data-confirm=" in overview.text
    done = await owner_console.submit(f"/accounts/{top_id}/suspend")
    assert done.status_code == 303 and (await _account(ctx_factory, top_id)).status == "suspended"
    tab = await owner_console.get(f"/accounts/{top_id}/children")
    # The unit's own status is untouched, but its parent blocks it.
    assert 'data-testid="child-status">suspended<' in tab.text and "(own: active)" in tab.text
    await owner_console.submit(f"/accounts/{top_id}/unsuspend")
    assert (await _account(ctx_factory, top_id)).status == "active"

    tab = await owner_console.get(f"/accounts/{top_id}/children")
    assert ">Suspend Unit 4B</button>" in tab.text and 'data-testid="child-row"' in tab.text
    one = await owner_console.submit(f"/accounts/{top_id}/children/{unit_id}/suspend")
    assert one.status_code == 303 and one.headers["location"] == f"/accounts/{top_id}/children"
    assert (await _account(ctx_factory, unit_id)).status == "suspended"
    assert (await _account(ctx_factory, top_id)).status == "active"
    await owner_console.submit(f"/accounts/{top_id}/children/{unit_id}/unsuspend")
    assert (await _account(ctx_factory, unit_id)).status == "active"


async def test_deleting_says_what_goes_and_stays_and_removing_a_child_detaches_it(
    owner_console: ConsoleClient, ctx_factory: Factory
) -> None:
    top_id, unit_id = await _landlord(ctx_factory)
    async with ctx_factory() as ctx:
        moving = await accounts.create(ctx, AccountCreate(name="Unit 9", parent_id=top_id))
    refused = await owner_console.get(f"/accounts/{top_id}/delete")
    assert refused.status_code == 200 and "cannot be deleted yet" in refused.text
    assert "it has child accounts" in refused.text and 'data-testid="confirm-delete"' not in refused.text
    confirm = await owner_console.get(f"/accounts/{unit_id}/delete")
    assert "What is removed" in confirm.text and "What is kept" in confirm.text
    assert (
        "0 service(s)" in confirm.text
        and "issued invoice(s), with the bill-to details anonymised" in confirm.text
    )
    assert ">Delete Unit 4B permanently</button>" in confirm.text
    gone = await owner_console.submit(f"/accounts/{unit_id}/delete")
    assert gone.status_code == 303 and gone.headers["location"] == f"/accounts/{top_id}/children"
    with pytest.raises(NotFound):
        await _account(ctx_factory, unit_id)

    # Remove child (seed 001): it leaves its parent and bills on its own.
    tab = await owner_console.get(f"/accounts/{top_id}/children")
    assert ">Remove child Unit 9</button>" in tab.text
    assert "It becomes a top-level account with its own billing" in tab.text
    detached = await owner_console.submit(f"/accounts/{moving.id}/detach")
    assert detached.status_code == 303 and detached.headers["location"] == f"/accounts/{top_id}/children"
    assert (await _account(ctx_factory, moving.id)).parent_id is None
    after = await owner_console.get(f"/accounts/{top_id}/children")
    assert 'data-testid="child-row"' not in after.text and "has no child accounts" in after.text


async def test_a_new_connection_creates_the_child_and_its_login(
    owner_console: ConsoleClient, ctx_factory: Factory, db: Database, clock: FrozenClock, tenant: Tenant
) -> None:
    catalog = await make_catalog(db, clock, tenant)
    top_id, _ = await _landlord(ctx_factory, expiry_date=date(2026, 6, 30))
    form = await owner_console.get(f"/accounts/{top_id}/children/new-connection")
    assert form.status_code == 200 and "Home 50" in form.text and "Voice" not in form.text
    good = {
        "label": "Unit 7",
        "username": "unit7",
        "password": "s3cret-pass",
        "plan_id": str(catalog.internet),
        "invoice_mode": "with_parent",
    }
    missing = await owner_console.submit(
        f"/accounts/{top_id}/children/new-connection", {**good, "username": ""}
    )
    assert missing.status_code == 422 and _error_beside(missing.text, "username")

    made = await owner_console.submit(f"/accounts/{top_id}/children/new-connection", good)
    assert made.status_code == 303, made.text
    child_id = int(made.headers["location"].rsplit("/", 1)[1])
    tab = await owner_console.get(f"/accounts/{top_id}/children")
    row = re.search(rf'data-account-id="{child_id}">(.*?)</tr>', tab.text, re.S)
    assert row is not None
    assert "unit7" in row.group(1) and "Home 50" in row.group(1) and "with parent" in row.group(1)
    assert "2026-06-30" in row.group(1) and "inherited from" in row.group(1)

    edit = await owner_console.get(f"/accounts/{top_id}/children/{child_id}/edit")
    assert edit.status_code == 200 and 'value="Unit 7"' in edit.text
    renamed = await owner_console.submit(
        f"/accounts/{top_id}/children/{child_id}/edit",
        {"label": "Unit 7 (garden)", "plan_id": str(catalog.internet), "invoice_mode": "with_parent"},
    )
    assert renamed.status_code == 303 and (await _account(ctx_factory, child_id)).name == "Unit 7 (garden)"


async def test_a_refused_connection_leaves_nothing_behind(
    owner_console: ConsoleClient, ctx_factory: Factory, db: Database, clock: FrozenClock, tenant: Tenant
) -> None:
    catalog = await make_catalog(db, clock, tenant)
    top_id, _ = await _landlord(ctx_factory)
    # The child account is written before the plan is found not offered: the page must undo it.
    private = await owner_console.submit(
        f"/accounts/{top_id}/children/new-connection",
        {"label": "Unit 7", "username": "unit7", "password": "s3cret-pass", "plan_id": str(catalog.private),
         "invoice_mode": "with_parent"},
    )  # fmt: skip
    assert private.status_code == 422 and "not offered" in _error_beside(private.text, "plan_id")
    tab = await owner_console.get(f"/accounts/{top_id}/children")
    assert 'data-testid="child-row"' in tab.text and "Unit 7" not in tab.text


async def test_a_new_child_account_accepts_the_agreements_now_or_leaves_them(
    owner_console: ConsoleClient, ctx_factory: Factory
) -> None:
    top_id, _ = await _landlord(ctx_factory)
    url = f"/accounts/{top_id}/children/new-account"
    assert (await owner_console.get(url)).status_code == 200
    unchosen = await owner_console.submit(url, {"name": "Finance"})
    assert unchosen.status_code == 422 and _error_beside(unchosen.text, "agreements")
    bad = await owner_console.submit(
        url, {"name": "Finance", "agreements": "leave", "technical_contact_email": "nope"}
    )
    assert bad.status_code == 422 and _error_beside(bad.text, "technical_contact_email")
    made = await owner_console.submit(
        url, {"name": "Finance", "description": "Finance team", "agreements": "preaccept",
              "technical_contact_email": "it@lofts.example.com"},
    )  # fmt: skip
    assert made.status_code == 303, re.findall(r'data-field-error="[^"]*">[^<]*|form-error">[^<]*', made.text)
    child = await _account(ctx_factory, int(made.headers["location"].rsplit("/", 1)[1]))
    assert child.parent_id == top_id and child.technical_contact_email == "it@lofts.example.com"
    assert child.msa_accepted_at is not None and child.aup_accepted_at is not None
    left = await owner_console.submit(url, {"name": "Sales", "agreements": "leave"})
    later = await _account(ctx_factory, int(left.headers["location"].rsplit("/", 1)[1]))
    assert later.msa_accepted_at is None


async def test_a_new_subaccount_names_its_administrators_and_shows_invitation_links(
    owner_console: ConsoleClient, ctx_factory: Factory, make_console_user: MakeConsoleUser
) -> None:
    top_id, _ = await _landlord(ctx_factory)
    existing = await make_console_user("ops@clienticity.example.com")
    url = f"/accounts/{top_id}/children/new-subaccount"
    bad = await owner_console.submit(url, {"name": "Clienticity", "administrators": "not-an-email"})
    assert bad.status_code == 422 and _error_beside(bad.text, "administrators")
    none = await owner_console.submit(url, {"name": "Clienticity"})
    assert none.status_code == 422 and "at least one administrator" in _error_beside(
        none.text, "administrators"
    )
    made = await owner_console.submit(
        url,
        {
            "name": "Clienticity",
            "external_id": "cl-1",
            "administrators": f"new@clienticity.example.com\n{existing.email}",
        },
    )
    assert made.status_code == 201
    link = re.search(r'<a href="([^"]+)" data-testid="invitation-link">', made.text)
    assert link and "/invitations/" in link.group(1)
    assert "new@clienticity.example.com" in made.text and existing.email in made.text
    async with ctx_factory() as ctx:
        page = await accounts.list_accounts(ctx, AccountFilter(q="cl-1"), None, 5)
        created = page.items[0]
        members = await memberships.list_for_account(ctx, created.id)
    assert created.parent_id == top_id and [m["email"] for m in members] == [existing.email]


async def test_a_viewer_is_refused_changes_and_other_accounts_are_not_found(
    sign_in: SignIn, make_console_user: MakeConsoleUser, ctx_factory: Factory, tenant: Tenant
) -> None:
    top_id, unit_id = await _landlord(ctx_factory)
    async with ctx_factory() as ctx:
        other = await accounts.create(ctx, AccountCreate(name="Quayside Offices"))
    viewer = await make_console_user("viewer@lofts.test")
    async with ctx_factory() as ctx:
        await memberships.add(ctx, top_id, viewer.email, AccountRole.viewer)
    console = await sign_in(viewer.id)
    page = await console.get(f"/accounts/{top_id}")
    assert page.status_code == 200 and "Suspend Harbourside Lofts" not in page.text
    tab = await console.get(f"/accounts/{top_id}/children")
    assert "Unit 4B" in tab.text and "Suspend Unit 4B" not in tab.text and "New connection" not in tab.text
    assert (await console.submit(f"/accounts/{top_id}/suspend")).status_code == 403
    assert (await console.submit(f"/accounts/{top_id}/children/{unit_id}/suspend")).status_code == 403
    assert (await console.get(f"/accounts/{unit_id}/edit")).status_code == 403
    assert (await _account(ctx_factory, top_id)).status == "active"
    assert (await console.get(f"/accounts/{other.id}")).status_code == 404
    assert (await console.get(f"/accounts/{other.id}/children")).status_code == 404
    listed = await console.get("/accounts")
    assert "Harbourside Lofts" in listed.text and "Quayside" not in listed.text
    tree = await console.get("/accounts/tree")
    assert f'data-account-id="{top_id}"' in tree.text and "Quayside" not in tree.text


async def test_a_landlord_admin_adds_a_connection_under_their_own_account(
    sign_in: SignIn, make_console_user: MakeConsoleUser, ctx_factory: Factory,
    db: Database, clock: FrozenClock, tenant: Tenant,
) -> None:  # fmt: skip
    catalog = await make_catalog(db, clock, tenant)
    top_id, _ = await _landlord(ctx_factory)
    admin = await make_console_user("landlord@lofts.test")
    async with ctx_factory() as ctx:
        await memberships.add(ctx, top_id, admin.email, AccountRole.admin)
        await connections.create(
            ctx, top_id,
            ChildConnectionCreate(label="Unit 1", username="unit1", password="pw-123456",
                                  plan_id=catalog.internet, invoice_mode="with_parent"),
        )  # fmt: skip
    console = await sign_in(admin.id)
    tab = await console.get(f"/accounts/{top_id}/children")
    assert "New connection" in tab.text and "unit1" in tab.text
    # Only staff move accounts to the top level.
    assert "Remove child" not in tab.text
    made = await console.submit(
        f"/accounts/{top_id}/children/new-connection",
        {"label": "Unit 2", "username": "unit2", "password": "pw-123456", "plan_id": str(catalog.internet),
         "invoice_mode": "with_parent"},
    )  # fmt: skip
    assert made.status_code == 303
