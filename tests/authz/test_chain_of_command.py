"""Roles reach down the tree, never up or sideways; parent_access narrows them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from boughs.auth import service as auth
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.memberships.models import Membership
from tests.conftest import Tenant


@dataclass
class World:
    ids: dict[str, int]
    clients: dict[str, httpx.AsyncClient]
    staff: httpx.AsyncClient


async def _user(
    db: Database, clock: FrozenClock, tenant: Tenant, name: str, memberships: dict[int, str]
) -> str:
    async with db.transaction() as session:
        user = await auth.create_user(session, tenant.provider_id, f"{name}@tree.example", None, clock.now())
        for account_id, role in memberships.items():
            session.add(
                Membership(
                    provider_id=tenant.provider_id,
                    user_id=user.id,
                    account_id=account_id,
                    role=role,
                    created_at=clock.now(),
                )
            )
        return (await auth.issue_token(session, user, "tests", clock.now())).token


@pytest.fixture
async def world(
    app, db: Database, clock: FrozenClock, tenant: Tenant, client: httpx.AsyncClient
) -> AsyncIterator[World]:  # type: ignore[no-untyped-def]
    ids: dict[str, int] = {}

    async def make(name: str, parent: str | None = None, **extra: object) -> None:
        body = {"name": name, "parent_id": ids[parent] if parent else None, **extra}
        r = await client.post("/api/v1/accounts", json=body)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]

    await make("Root", features={"subaccounts": True})
    await make("A", "Root")
    await make("A1", "A")
    await make("B", "Root")
    await make("Other")
    people = {
        "admin_root": {ids["Root"]: "admin"},
        "viewer_root": {ids["Root"]: "viewer"},
        "billing_root": {ids["Root"]: "billing"},
        "admin_a": {ids["A"]: "admin"},
        "admin_b": {ids["B"]: "admin"},
        "nobody": {},
    }
    clients: dict[str, httpx.AsyncClient] = {}
    transport = httpx.ASGITransport(app=app)
    for name, memberships in people.items():
        token = await _user(db, clock, tenant, name, memberships)
        clients[name] = httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"Authorization": f"Bearer {token}"}
        )
    yield World(ids, clients, client)
    for c in clients.values():
        await c.aclose()


def _visible(r: httpx.Response) -> set[str]:
    return {a["name"] for a in r.json()["items"]}


async def test_roles_reach_down_never_up_or_sideways(world: World) -> None:
    ids, as_ = world.ids, world.clients
    assert _visible(await as_["admin_a"].get("/api/v1/accounts")) == {"A", "A1"}
    assert _visible(await as_["admin_root"].get("/api/v1/accounts")) == {"Root", "A", "A1", "B"}
    assert _visible(await as_["nobody"].get("/api/v1/accounts")) == set()
    for who, target in (("admin_a", "Root"), ("admin_a", "B"), ("admin_b", "A1"), ("admin_root", "Other")):
        r = await as_[who].get(f"/api/v1/accounts/{ids[target]}")
        assert r.status_code == 404, (who, target)
        assert r.json()["detail"] == f"There is no account {ids[target]}."
    missing = await as_["admin_a"].get("/api/v1/accounts/999999")
    assert missing.json()["detail"] == "There is no account 999999."
    ancestors = await as_["admin_a"].get(f"/api/v1/accounts/{ids['A1']}/ancestors")
    assert [a["name"] for a in ancestors.json()] == ["A"]


async def test_each_role_may_do_what_it_says(world: World) -> None:
    ids, as_ = world.ids, world.clients
    a1 = f"/api/v1/accounts/{ids['A1']}"
    assert (await as_["viewer_root"].get(a1)).status_code == 200
    for who in ("viewer_root", "billing_root"):
        r = await as_[who].patch(a1, json={"description": "x"})
        assert r.status_code == 403, who
        assert r.headers["content-type"] == "application/problem+json"
        assert (await as_[who].post(f"{a1}/suspend")).status_code == 403
    assert (await as_["admin_root"].patch(a1, json={"description": "by root admin"})).status_code == 200
    assert (await as_["admin_a"].post(f"{a1}/suspend")).status_code == 200
    assert (await world.staff.get(a1)).json()["status"] == "suspended"


async def test_parent_access_view_and_none_narrow_exactly(world: World) -> None:
    ids, as_ = world.ids, world.clients
    a, a1 = f"/api/v1/accounts/{ids['A']}", f"/api/v1/accounts/{ids['A1']}"
    assert (await as_["admin_a"].patch(a, json={"parent_access": "view"})).status_code == 200
    assert (await as_["admin_root"].get(a1)).status_code == 200
    assert (await as_["admin_root"].patch(a1, json={"description": "x"})).status_code == 403
    assert (
        await as_["admin_root"].patch(f"/api/v1/accounts/{ids['B']}", json={"description": "x"})
    ).status_code == 200
    assert (await as_["admin_a"].patch(a1, json={"description": "still mine"})).status_code == 200

    assert (await as_["admin_a"].patch(a, json={"parent_access": "none"})).status_code == 200
    assert (await as_["admin_root"].get(a)).status_code == 404
    assert (await as_["admin_root"].get(a1)).status_code == 404
    assert _visible(await as_["admin_root"].get("/api/v1/accounts")) == {"Root", "B"}
    summary = await as_["admin_root"].get(f"/api/v1/accounts/{ids['Root']}/descendants")
    assert _visible(summary) == {"B"}
    assert _visible(await as_["admin_a"].get("/api/v1/accounts")) == {"A", "A1"}
    assert (await world.staff.get(a1)).status_code == 200


async def test_subaccounts_feature_and_staff_only_fields(world: World) -> None:
    ids, as_ = world.ids, world.clients
    r = await as_["admin_a"].post("/api/v1/accounts", json={"name": "A2", "parent_id": ids["A"]})
    assert r.status_code == 403
    assert "subaccounts" in r.json()["fix"]
    r = await as_["admin_a"].patch(f"/api/v1/accounts/{ids['A']}", json={"features": {"subaccounts": True}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "features"
    r = await world.staff.patch(f"/api/v1/accounts/{ids['A']}", json={"features": {"subaccounts": True}})
    assert r.status_code == 200
    r = await as_["admin_a"].post("/api/v1/accounts", json={"name": "A2", "parent_id": ids["A"]})
    assert r.status_code == 201, r.text
    top = await as_["admin_a"].post("/api/v1/accounts", json={"name": "Mine"})
    assert top.status_code == 422 and top.json()["errors"][0]["field"] == "parent_id"
    detach = await as_["admin_root"].post(f"/api/v1/accounts/{ids['A']}/move", json={"parent_id": None})
    assert detach.status_code == 422
    sideways = await as_["admin_a"].post(f"/api/v1/accounts/{ids['A1']}/move", json={"parent_id": ids["B"]})
    assert sideways.status_code == 422 and sideways.json()["errors"][0]["field"] == "parent_id"


async def test_memberships_are_managed_by_admins_below_them_only(world: World) -> None:
    ids, as_ = world.ids, world.clients
    added = await as_["admin_a"].post(
        f"/api/v1/accounts/{ids['A1']}/memberships",
        json={"email": "viewer_root@tree.example", "role": "admin"},
    )
    assert added.status_code == 201, added.text
    assert added.json()["membership"]["role"] == "admin"
    listed = await as_["admin_a"].get(f"/api/v1/accounts/{ids['A1']}/memberships")
    assert [m["email"] for m in listed.json()] == ["viewer_root@tree.example"]
    up = await as_["admin_a"].post(
        f"/api/v1/accounts/{ids['Root']}/memberships",
        json={"email": "admin_a@tree.example", "role": "admin"},
    )
    assert up.status_code == 404
    by_viewer = await as_["viewer_root"].post(
        f"/api/v1/accounts/{ids['B']}/memberships",
        json={"email": "viewer_root@tree.example", "role": "admin"},
    )
    assert by_viewer.status_code == 403
    bad_role = await as_["admin_a"].post(
        f"/api/v1/accounts/{ids['A1']}/memberships", json={"email": "x@tree.example", "role": "owner"}
    )
    assert bad_role.status_code == 422 and bad_role.json()["errors"][0]["field"] == "role"
    membership_id = added.json()["membership"]["id"]
    assert (await as_["admin_b"].delete(f"/api/v1/memberships/{membership_id}")).status_code == 404
    assert (await as_["admin_a"].delete(f"/api/v1/memberships/{membership_id}")).status_code == 204
    assert (await as_["admin_a"].get(f"/api/v1/accounts/{ids['A1']}/memberships")).json() == []


async def test_switcher_lists_own_accounts_first_with_their_path(world: World) -> None:
    as_ = world.clients
    mine = (await as_["admin_a"].get("/api/v1/me/accounts")).json()
    assert [a["name"] for a in mine] == ["A", "A1"]
    assert mine[0]["path_names"] == ["…", "A"]
    assert mine[1]["path_names"] == ["…", "A", "A1"]
    assert mine[0]["roles"] == ["admin"]
    found = (await as_["admin_root"].get("/api/v1/me/accounts", params={"q": "a1"})).json()
    assert [a["name"] for a in found] == ["A1"]
    assert found[0]["path_names"] == ["Root", "A", "A1"]


async def test_agreements_block_until_accepted(world: World, db: Database, ctx_factory) -> None:  # type: ignore[no-untyped-def]
    from boughs.accounts import service as accounts
    from boughs.kit.errors import Conflict

    ids, as_ = world.ids, world.clients
    effective = (await as_["admin_a"].get(f"/api/v1/accounts/{ids['A']}/effective")).json()
    assert effective["agreements"]["complete"] is False
    async with ctx_factory() as ctx:
        with pytest.raises(Conflict):
            accounts.require_agreements(await accounts.get(ctx, ids["A"]))
    assert (
        await as_["viewer_root"].post(f"/api/v1/accounts/{ids['A']}/agreements", json={"msa": True})
    ).status_code == 403
    r = await as_["admin_a"].post(f"/api/v1/accounts/{ids['A']}/agreements", json={"msa": True, "aup": True})
    assert r.status_code == 200 and r.json()["complete"] is True
    async with ctx_factory() as ctx:
        accounts.require_agreements(await accounts.get(ctx, ids["A"]))
    child = await world.staff.post(
        "/api/v1/accounts", json={"name": "Pre", "parent_id": ids["A"], "preaccept_agreements": True}
    )
    assert child.status_code == 201
    effective = (await world.staff.get(f"/api/v1/accounts/{child.json()['id']}/effective")).json()
    assert effective["agreements"]["complete"] is True


async def test_audit_lists_the_subtree_only_for_those_who_may_see_it(world: World) -> None:
    ids, as_ = world.ids, world.clients
    await as_["admin_a"].patch(f"/api/v1/accounts/{ids['A1']}", json={"description": "changed"})
    await world.staff.patch(f"/api/v1/accounts/{ids['B']}", json={"description": "changed"})
    events = (await as_["admin_a"].get(f"/api/v1/accounts/{ids['A']}/audit")).json()["items"]
    assert {e["account_id"] for e in events} == {ids["A"], ids["A1"]}
    assert events[0]["action"] == "updated" and events[0]["after"] == {"description": "changed"}
    assert events[0]["request_id"]
    page = await as_["admin_root"].get(f"/api/v1/accounts/{ids['Root']}/audit", params={"limit": 2})
    assert len(page.json()["items"]) == 2 and page.json()["next_cursor"]
    rest = await as_["admin_root"].get(
        f"/api/v1/accounts/{ids['Root']}/audit", params={"cursor": page.json()["next_cursor"], "limit": 500}
    )
    seen = [e["id"] for e in page.json()["items"] + rest.json()["items"]]
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))
    assert (await as_["admin_a"].get(f"/api/v1/accounts/{ids['Root']}/audit")).status_code == 404
    only_updates = await as_["admin_root"].get(
        f"/api/v1/accounts/{ids['Root']}/audit", params={"entity": "membership"}
    )
    assert only_updates.json()["items"] == []


async def test_subaccount_with_administrators_who_then_see_only_that_subtree(
    world: World, app, db: Database
) -> None:  # type: ignore[no-untyped-def]
    ids, as_ = world.ids, world.clients
    created = await as_["admin_root"].post(
        "/api/v1/accounts",
        json={
            "name": "Clienticity",
            "external_id": "clienticity",
            "parent_id": ids["Root"],
            "administrators": ["admin_b@tree.example", "new.admin@clienticity.example"],
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    existing, invited = body["administrators"]
    assert existing["membership_id"] and existing["link"] is None
    assert invited["invitation_id"] and invited["link"].startswith("/invitations/")
    token = invited["link"].rsplit("/", 1)[1]
    anon = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    accepted = await anon.post(
        f"/api/v1/invitations/{token}/accept", json={"name": "New Admin", "password": "Clienticity-2026!"}
    )
    assert accepted.status_code in (200, 201), accepted.text
    again = await anon.post(
        f"/api/v1/invitations/{token}/accept", json={"name": "New Admin", "password": "Clienticity-2026!"}
    )
    assert again.status_code == 410
    issued = await anon.post(
        "/api/v1/auth/tokens",
        json={"email": "new.admin@clienticity.example", "password": "Clienticity-2026!", "name": "t"},
    )
    assert issued.status_code in (200, 201), issued.text
    newcomer = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {issued.json()['token']}"},
    )
    visible = await newcomer.get("/api/v1/accounts")
    assert {a["name"] for a in visible.json()["items"]} == {"Clienticity"}
    assert (await newcomer.get(f"/api/v1/accounts/{ids['Root']}")).status_code == 404
    sees = (await as_["admin_b"].get("/api/v1/accounts")).json()["items"]
    assert {a["name"] for a in sees} == {"B", "Clienticity"}
    await anon.aclose()
    await newcomer.aclose()


async def test_audit_records_the_account_acted_as(world: World) -> None:
    ids, as_ = world.ids, world.clients
    await as_["admin_a"].post(
        f"/api/v1/accounts/{ids['A1']}/memberships",
        json={"email": "viewer_root@tree.example", "role": "viewer"},
    )
    events = (await as_["admin_a"].get(f"/api/v1/accounts/{ids['A1']}/audit")).json()["items"]
    granted = next(e for e in events if e["entity"] == "membership")
    assert granted["acting_account_id"] == ids["A1"]
    assert granted["actor_user_id"] is not None


async def test_staff_switcher_starts_at_the_top_of_every_tree(world: World) -> None:
    listed = (await world.staff.get("/api/v1/me/accounts", params={"limit": 3})).json()
    # Top-level accounts first, alphabetical within a level, then the levels below.
    assert [(a["name"], a["depth"]) for a in listed] == [("Other", 0), ("Root", 0), ("A", 1)]
