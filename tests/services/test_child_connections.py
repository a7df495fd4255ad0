"""Child connections (seed 000) through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select

from boughs.accounts.models import Account
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.services.models import Service
from tests.conftest import START, Tenant
from tests.services.connections_world import (
    API,
    Catalog,
    add_connection,
    connection,
    fields_named,
    make_account,
    make_catalog,
    member_client,
)

TODAY = START.date()


@pytest.fixture
async def catalog(db: Database, clock: FrozenClock, tenant: Tenant) -> Catalog:
    return await make_catalog(db, clock, tenant)


@pytest.fixture
async def parent(client: httpx.AsyncClient) -> int:
    return await make_account(client, "Landlord", expiry_date=(TODAY + timedelta(days=30)).isoformat())


def url(parent_id: int, suffix: str = "") -> str:
    return f"{API}/accounts/{parent_id}/child-connections{suffix}"


async def rows(client: httpx.AsyncClient, parent_id: int) -> list[dict[str, Any]]:
    r = await client.get(url(parent_id))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def row(client: httpx.AsyncClient, parent_id: int, child_id: int) -> dict[str, Any]:
    r = await client.get(url(parent_id, f"/{child_id}"))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def account_count(db: Database) -> int:
    async with db.transaction(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(Account))).scalar_one())


async def service_count(db: Database, account_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(Service)
    if account_id is not None:
        stmt = stmt.where(Service.account_id == account_id)
    async with db.transaction(write=False) as session:
        return int((await session.execute(stmt)).scalar_one())


# --- creating --------------------------------------------------------------------------


async def test_one_form_makes_the_child_account_and_its_internet_service(
    client: httpx.AsyncClient, catalog: Catalog, parent: int
) -> None:
    body = connection(
        catalog.internet,
        "office2",
        label="Office 2",
        ip_address="10.20.0.7",
        mac_address="AA-BB-CC-00-11-22",
        invoice_mode="separate",
    )
    r = await client.post(url(parent), json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    account, service = created["account"], created["service"]
    assert r.headers["location"] == url(parent, f"/{account['id']}")
    assert account["name"] == "Office 2"
    assert account["parent_id"] == parent
    assert account["invoice_mode"] == "separate"
    assert account["expiry_date"] is None  # blank: inherits the parent's
    # The parent's acceptance carries over: the service could not be provisioned otherwise.
    assert account["msa_accepted_at"] is not None and account["aup_accepted_at"] is not None
    assert service["account_id"] == account["id"]
    assert service["plan_id"] == catalog.internet
    assert service["login"] == "office2"
    assert service["ipv4_mode"] == "permanent"
    assert service["ipv4_address"] == "10.20.0.7"
    assert len(service["mac_addresses"]) == 1
    assert service["mac_addresses"][0].replace(":", "").replace("-", "").lower() == "aabbcc001122"
    assert service["has_password"] is True
    assert "s3cret-pass" not in r.text


async def test_without_an_address_the_connection_is_dynamic(
    client: httpx.AsyncClient, catalog: Catalog, parent: int
) -> None:
    created = await add_connection(client, parent, connection(catalog.internet))
    assert created["service"]["ipv4_mode"] == "dynamic"
    assert created["service"]["ipv4_address"] is None
    assert created["service"]["mac_addresses"] == []


async def _refused(
    client: httpx.AsyncClient, db: Database, parent: int, body: dict[str, Any], status: int
) -> httpx.Response:
    """The form is refused and leaves nothing behind: no account, no service."""
    accounts_before, services_before = await account_count(db), await service_count(db)
    r = await client.post(url(parent), json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "fix" in r.json() or all("fix" in e for e in r.json().get("errors", []))
    assert await account_count(db) == accounts_before
    assert await service_count(db) == services_before
    assert await rows(client, parent) == []
    return r


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"ip_address": "192.0.2.10"}, 422, "ip_address"),  # outside every pool
        ({"ip_address": "not-an-ip"}, 422, "ip_address"),
        ({"mac_address": "zz:zz:zz:zz:zz:zz"}, 422, "mac_address"),
        ({"mac_address": "AA:BB:CC"}, 422, "mac_address"),
        ({"expiry_date": (TODAY - timedelta(days=1)).isoformat()}, 422, "expiry_date"),
        ({"plan_id": 987_654_321}, 422, "plan_id"),
    ],
)
async def test_bad_input_names_the_forms_field_and_changes_nothing(
    client: httpx.AsyncClient,
    db: Database,
    catalog: Catalog,
    parent: int,
    fields: dict[str, Any],
    status: int,
    field: str,
) -> None:
    r = await _refused(client, db, parent, {**connection(catalog.internet), **fields}, status)
    assert field in fields_named(r), r.text


async def test_plans_must_be_offered_and_internet(
    client: httpx.AsyncClient, db: Database, catalog: Catalog, parent: int
) -> None:
    for plan_id in (catalog.private, catalog.voice):
        r = await _refused(client, db, parent, connection(plan_id), 422)
        assert fields_named(r) == ["plan_id"], r.text


async def test_a_login_in_use_is_refused_as_username_after_the_account_was_made(
    client: httpx.AsyncClient, db: Database, catalog: Catalog, parent: int
) -> None:
    await add_connection(client, parent, connection(catalog.internet, "taken", label="First"))
    accounts_before = await account_count(db)
    r = await client.post(url(parent), json=connection(catalog.internet, "taken", label="Second"))
    assert r.status_code == 409, r.text
    assert fields_named(r) == ["username"]
    # The second child account was written before its service failed: it is gone with it.
    assert await account_count(db) == accounts_before
    assert [c["label"] for c in await rows(client, parent)] == ["First"]


async def test_an_address_is_never_assigned_twice(
    client: httpx.AsyncClient, db: Database, catalog: Catalog, parent: int
) -> None:
    await add_connection(client, parent, connection(catalog.internet, ip_address="10.20.0.9"))
    accounts_before = await account_count(db)
    r = await client.post(url(parent), json=connection(catalog.internet, ip_address="10.20.0.9"))
    assert r.status_code in (409, 422), r.text
    assert fields_named(r) == ["ip_address"]
    assert await account_count(db) == accounts_before


async def test_required_fields_are_named(client: httpx.AsyncClient, catalog: Catalog, parent: int) -> None:
    r = await client.post(url(parent), json={})
    assert r.status_code == 422
    assert set(fields_named(r)) == {"label", "username", "password", "plan_id", "invoice_mode"}
    r = await client.post(url(parent), json=connection(catalog.internet, invoice_mode="both"))
    assert r.status_code == 422 and fields_named(r) == ["invoice_mode"]
    r = await client.post(url(parent), json=connection(catalog.internet, login="x"))
    assert r.status_code == 422 and fields_named(r) == ["login"]  # unknown field refused


async def test_a_blocked_parent_or_one_without_agreements_takes_no_connection(
    client: httpx.AsyncClient, db: Database, catalog: Catalog, parent: int
) -> None:
    r = await client.post(f"{API}/accounts/{parent}/suspend", json={"reason": "unpaid"})
    assert r.status_code == 200, r.text
    r = await _refused(client, db, parent, connection(catalog.internet), 409)
    assert "suspended" in r.json()["detail"]

    unsigned = await make_account(client, "Unsigned", agreements=False)
    r = await _refused(client, db, unsigned, connection(catalog.internet), 409)
    assert "agreements" in r.json()["fix"]


async def test_missing_and_unknown_parents_are_404(client: httpx.AsyncClient, catalog: Catalog) -> None:
    r = await client.post(url(987_654_321), json=connection(catalog.internet))
    assert r.status_code == 404
    r = await client.get(url(987_654_321))
    assert r.status_code == 404


# --- who may -----------------------------------------------------------------------------


async def test_members_need_manage_rights_and_the_subaccounts_feature(
    app: Any, db: Database, clock: FrozenClock, tenant: Tenant, client: httpx.AsyncClient, catalog: Catalog
) -> None:
    featured = await make_account(client, "Featured")
    plain = await make_account(client, "Plain", features={})
    for account_id, role, expected in (
        (featured, "admin", 201),
        (plain, "admin", 403),  # no subaccounts feature: as POST /accounts
        (featured, "technical", 403),  # services, but not accounts
        (featured, "billing", 403),
        (featured, "viewer", 403),
    ):
        member = await member_client(app, db, clock, tenant, account_id, role)
        async with member:
            r = await member.post(url(account_id), json=connection(catalog.internet))
            assert r.status_code == expected, (role, r.text)
            listed = await member.get(url(account_id))
            assert listed.status_code == 200
            # Another tree is out of scope: answered as missing.
            other = plain if account_id == featured else featured
            hidden = await member.get(url(other))
            missing = await member.get(url(987_654_321))
            assert hidden.status_code == missing.status_code == 404


# --- the list: status, expiry and where it comes from ------------------------------------


async def test_the_list_shows_each_child_with_its_effective_expiry_and_source(
    client: httpx.AsyncClient, catalog: Catalog, parent: int
) -> None:
    inheriting = (await add_connection(client, parent, connection(catalog.internet, "inherit", label="A")))[
        "account"
    ]["id"]
    own_expiry = (TODAY + timedelta(days=90)).isoformat()
    own = (
        await add_connection(
            client,
            parent,
            connection(catalog.dual, "own", label="B", expiry_date=own_expiry, invoice_mode="separate"),
        )
    )["account"]["id"]
    listed = {r["account_id"]: r for r in await rows(client, parent)}
    parent_expiry = (TODAY + timedelta(days=30)).isoformat()
    assert listed[inheriting] == {
        "account_id": inheriting,
        "label": "A",
        "status": "active",
        "username": "inherit",
        "plan": {"id": catalog.internet, "name": "Home 50"},
        "effective_expiry": {"value": parent_expiry, "source": "inherited", "source_account_id": parent},
        "invoice_mode": "with_parent",
        "service_id": listed[inheriting]["service_id"],
        "ip_address": None,
        "mac_address": None,
    }
    assert listed[inheriting]["service_id"] is not None
    assert listed[own]["effective_expiry"] == {"value": own_expiry, "source": "own", "source_account_id": own}
    assert listed[own]["plan"] == {"id": catalog.dual, "name": "Hotspot Duo"}
    assert listed[own]["invoice_mode"] == "separate"

    # The parent renews: the inheriting child moves with it, the explicit one does not.
    renewed = (TODAY + timedelta(days=60)).isoformat()
    r = await client.post(f"{API}/accounts/{parent}/renew", json={"expiry_date": renewed})
    assert r.status_code == 200, r.text
    listed = {r["account_id"]: r for r in await rows(client, parent)}
    assert listed[inheriting]["effective_expiry"]["value"] == renewed
    assert listed[own]["effective_expiry"]["value"] == own_expiry


async def test_a_child_without_any_expiry_says_none(client: httpx.AsyncClient, catalog: Catalog) -> None:
    parent = await make_account(client, "No expiry")
    child = (await add_connection(client, parent, connection(catalog.internet)))["account"]["id"]
    assert (await row(client, parent, child))["effective_expiry"] == {
        "value": None,
        "source": "none",
        "source_account_id": None,
    }


async def test_the_list_pages_with_a_cursor_in_a_fixed_number_of_queries(
    client: httpx.AsyncClient, db: Database, catalog: Catalog, parent: int
) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    made = [
        (await add_connection(client, parent, connection(catalog.internet, label=f"C{i}")))["account"]["id"]
        for i in range(5)
    ]
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get(url(parent), params=params)
        assert r.status_code == 200, r.text
        seen += [item["account_id"] for item in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == made

    async def queries_for(limit: int) -> int:
        statements.clear()
        for engine in (db.engine, db.read_engine):
            event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            r = await client.get(url(parent), params={"limit": limit})
            assert r.status_code == 200 and len(r.json()["items"]) == min(limit, 5)
        finally:
            for engine in (db.engine, db.read_engine):
                event.remove(engine.sync_engine, "before_cursor_execute", count)
        return len(statements)

    assert await queries_for(1) == await queries_for(5)
    r = await client.get(url(parent), params={"cursor": "nonsense"})
    assert r.status_code == 422 and fields_named(r) == ["cursor"]


# --- per child actions -------------------------------------------------------------------


async def test_suspending_one_child_leaves_its_siblings_and_parent_alone(
    client: httpx.AsyncClient, catalog: Catalog, parent: int
) -> None:
    first = (await add_connection(client, parent, connection(catalog.internet, label="A")))["account"]["id"]
    second = (await add_connection(client, parent, connection(catalog.internet, label="B")))["account"]["id"]
    r = await client.post(url(parent, f"/{first}/suspend"), json={"reason": "moved out"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "suspended"
    listed = {r["account_id"]: r["status"] for r in await rows(client, parent)}
    assert listed == {first: "suspended", second: "active"}
    assert (await client.get(f"{API}/accounts/{parent}")).json()["status"] == "active"
    # The service of the suspended connection stops; the sibling's keeps running.
    services = {
        a: (await client.get(f"{API}/services/{(await row(client, parent, a))['service_id']}")).json()
        for a in (first, second)
    }
    assert services[first]["status"] == "stopped" and services[second]["status"] == "active"

    r = await client.post(url(parent, f"/{second}/unsuspend"))
    assert r.status_code == 409  # not suspended
    r = await client.post(url(parent, f"/{first}/unsuspend"))
    assert r.status_code == 200 and r.json()["status"] == "active"

    # A suspended parent shows every child suspended, without touching their own status.
    await client.post(f"{API}/accounts/{parent}/suspend", json={"reason": "unpaid"})
    assert {r["status"] for r in await rows(client, parent)} == {"suspended"}
    assert (await client.get(f"{API}/accounts/{first}")).json()["status"] == "active"


async def test_editing_a_connection(client: httpx.AsyncClient, catalog: Catalog, parent: int) -> None:
    own_expiry = (TODAY + timedelta(days=90)).isoformat()
    child = (
        await add_connection(client, parent, connection(catalog.internet, "edit-me", expiry_date=own_expiry))
    )["account"]["id"]
    r = await client.patch(
        url(parent, f"/{child}"),
        json={
            "label": "Ground floor",
            "invoice_mode": "separate",
            "ip_address": "10.20.0.50",
            "mac_address": "aabb.ccdd.eeff",
        },
    )
    assert r.status_code == 200, r.text
    edited = r.json()
    assert edited["label"] == "Ground floor"
    assert edited["invoice_mode"] == "separate"
    assert edited["ip_address"] == "10.20.0.50"
    assert edited["mac_address"] is not None
    assert edited["mac_address"].replace(":", "").replace("-", "").replace(".", "").lower() == "aabbccddeeff"
    assert edited["effective_expiry"]["source"] == "own"

    # Clearing the expiry inherits the parent's again; clearing the address makes it dynamic.
    r = await client.patch(url(parent, f"/{child}"), json={"expiry_date": None, "ip_address": None})
    assert r.status_code == 200, r.text
    assert r.json()["effective_expiry"]["source"] == "inherited"
    assert r.json()["effective_expiry"]["source_account_id"] == parent
    assert r.json()["ip_address"] is None
    service = (await client.get(f"{API}/services/{r.json()['service_id']}")).json()
    assert service["ipv4_mode"] == "dynamic"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ip_address": "192.0.2.1"}, "ip_address"),
        ({"mac_address": "nope"}, "mac_address"),
        ({"label": None}, "label"),
        ({"invoice_mode": None}, "invoice_mode"),
        ({"expiry_date": "2020-01-01"}, "expiry_date"),
        ({"plan_id": None}, "plan_id"),
    ],
)
async def test_bad_edits_name_the_field_and_change_nothing(
    client: httpx.AsyncClient, catalog: Catalog, parent: int, body: dict[str, Any], field: str
) -> None:
    child = (await add_connection(client, parent, connection(catalog.internet, label="Stay")))["account"][
        "id"
    ]
    before = await row(client, parent, child)
    r = await client.patch(url(parent, f"/{child}"), json={"label": "Changed", **body})
    assert r.status_code in (409, 422), r.text
    assert field in fields_named(r), r.text
    assert await row(client, parent, child) == before


async def test_changing_the_plan(client: httpx.AsyncClient, catalog: Catalog, parent: int) -> None:
    child = (await add_connection(client, parent, connection(catalog.internet)))["account"]["id"]
    r = await client.patch(url(parent, f"/{child}"), json={"plan_id": catalog.dual})
    assert r.status_code == 200, r.text
    assert r.json()["plan"] == {"id": catalog.dual, "name": "Hotspot Duo"}
    r = await client.patch(url(parent, f"/{child}"), json={"plan_id": catalog.voice})
    assert r.status_code == 422 and fields_named(r) == ["plan_id"]


async def test_a_child_of_another_account_is_answered_as_missing(
    client: httpx.AsyncClient, catalog: Catalog, parent: int
) -> None:
    other = await make_account(client, "Other")
    theirs = (await add_connection(client, other, connection(catalog.internet)))["account"]["id"]
    for method, suffix in (
        ("GET", ""),
        ("PATCH", ""),
        ("POST", "/suspend"),
        ("GET", "/deletion"),
        ("DELETE", ""),
    ):
        body = {"label": "x"} if method == "PATCH" else None
        r = await client.request(method, url(parent, f"/{theirs}{suffix}"), json=body)
        missing = await client.request(method, url(parent, f"/987654321{suffix}"), json=body)
        assert r.status_code == missing.status_code == 404, (method, suffix)
        assert r.json()["detail"].replace(str(theirs), "N") == missing.json()["detail"].replace(
            "987654321", "N"
        )
    assert (await row(client, other, theirs))["status"] == "active"


async def test_deleting_a_connection_is_permanent_and_refused_with_grandchildren(
    client: httpx.AsyncClient, db: Database, catalog: Catalog, parent: int
) -> None:
    child = (await add_connection(client, parent, connection(catalog.internet, label="Going")))["account"]
    child_id = child["id"]
    grandchild = await make_account(client, "Below", parent_id=child_id)

    r = await client.get(url(parent, f"/{child_id}/deletion"))
    assert r.status_code == 200, r.text
    assert r.json()["refused_because"]
    r = await client.delete(url(parent, f"/{child_id}"))
    assert r.status_code == 409, r.text
    assert await service_count(db, child_id) == 1

    r = await client.delete(f"{API}/accounts/{grandchild}")
    assert r.status_code == 200, r.text
    preview = (await client.get(url(parent, f"/{child_id}/deletion"))).json()
    assert preview["refused_because"] == []
    assert preview["removed"]["accounts"] == 1 and preview["removed"]["services"] == 1
    r = await client.delete(url(parent, f"/{child_id}"))
    assert r.status_code == 200, r.text
    assert r.json()["account_id"] == child_id
    assert await service_count(db, child_id) == 0
    assert (await client.get(url(parent, f"/{child_id}"))).status_code == 404
    assert (await client.get(f"{API}/accounts/{child_id}")).status_code == 404
    assert await rows(client, parent) == []


async def test_each_change_is_audited(client: httpx.AsyncClient, catalog: Catalog, parent: int) -> None:
    child = (await add_connection(client, parent, connection(catalog.internet)))["account"]["id"]
    await client.patch(url(parent, f"/{child}"), json={"label": "Renamed"})
    await client.post(url(parent, f"/{child}/suspend"))
    r = await client.get(f"{API}/accounts/{child}/audit")
    assert r.status_code == 200, r.text
    events = r.json()["items"] if isinstance(r.json(), dict) else r.json()
    actions = {(e["entity"], e["action"]) for e in events}
    assert {("account", "created"), ("account", "updated"), ("account", "suspended")} <= actions
    assert any(e["entity"] == "service" for e in events)
    assert "s3cret-pass" not in r.text
