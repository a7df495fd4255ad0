"""Services through the API (seed 004): adding, options, secrets, status, discounts, lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from boughs.audit.models import AuditEvent
from boughs.db import Database
from boughs.services.models import Service, ServiceStatusChange

API = "/api/v1"
PASSWORD = "s3cret-Pass"
ACCOUNT_PASSWORD = "main-Pass-9"


@dataclass
class World:
    ids: dict[str, int]

    def __getitem__(self, name: str) -> int:
        return self.ids[name]


async def post(client: httpx.AsyncClient, path: str, body: Any, status: int = 201) -> dict[str, Any]:
    r = await client.post(f"{API}{path}", json=body)
    assert r.status_code == status, r.text
    return dict(r.json())


async def build(client: httpx.AsyncClient) -> World:
    """home (agreements accepted, subaccounts) ── kid;  bare (no agreements);  held (suspended) ── heldkid;
    plans: fiber (public internet), voice (public voice), private (internet, not offered);
    pools: static 192.0.2.0/24 (permanent), dyn 10.20.0.0/16 (dynamic); a router; a port."""
    ids: dict[str, int] = {}
    accept = {"preaccept_agreements": True}
    ids["home"] = (
        await post(client, "/accounts", {"name": "Home", "features": {"subaccounts": True}, **accept})
    )["id"]
    ids["kid"] = (await post(client, "/accounts", {"name": "Kid", "parent_id": ids["home"], **accept}))["id"]
    ids["bare"] = (await post(client, "/accounts", {"name": "Bare"}))["id"]
    ids["held"] = (await post(client, "/accounts", {"name": "Held", **accept}))["id"]
    ids["heldkid"] = (
        await post(client, "/accounts", {"name": "Held kid", "parent_id": ids["held"], **accept})
    )["id"]
    await post(client, f"/accounts/{ids['held']}/suspend", {"reason": "tests"}, 200)
    plan = {"price_amount": 3000, "pay_period": "month"}
    ids["fiber"] = (
        await post(client, "/plans", {"name": "Fiber", "kind": "internet", "public": True, **plan})
    )["id"]
    ids["voice"] = (await post(client, "/plans", {"name": "Voice", "kind": "voice", "public": True, **plan}))[
        "id"
    ]
    ids["private"] = (await post(client, "/plans", {"name": "Private", "kind": "internet", **plan}))["id"]
    ids["static"] = (
        await post(client, "/ip-pools", {"name": "Static", "cidr": "192.0.2.0/24", "kind": "permanent"})
    )["id"]
    ids["dyn"] = (
        await post(client, "/ip-pools", {"name": "Dyn", "cidr": "10.20.0.0/16", "kind": "dynamic"})
    )["id"]
    router = {"name": "NAS 1", "address": "198.51.100.1", "type": "mikrotik", "radius_secret": "radius-x"}
    ids["router"] = (await post(client, "/routers", router))["id"]
    ids["port"] = (await post(client, "/ports", {"name": "Port 1", "location": "Rack 1"}))["id"]
    return World(ids)


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    return await build(client)


async def add(
    client: httpx.AsyncClient, world: World, account: str = "home", **fields: Any
) -> dict[str, Any]:
    body = {"plan_id": world["fiber"], **fields}
    return await post(client, f"/accounts/{world[account]}/services", body)


async def audit_rows(db: Database) -> list[AuditEvent]:
    async with db.transaction(write=False) as session:
        return list((await session.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars())


async def test_add_with_defaults(client: httpx.AsyncClient, world: World, db: Database) -> None:
    r = await client.post(f"{API}/accounts/{world['home']}/services", json={"plan_id": world["fiber"]})
    assert r.status_code == 201, r.text
    s = r.json()
    assert r.headers["location"] == f"{API}/services/{s['id']}"
    assert s["status"] == "active" and s["status_reason"] == "manual"
    assert s["start_date"] == "2026-01-15" and s["end_date"] is None
    assert s["plan_name"] == "Fiber" and s["quantity"] == 1 and s["ipv4_mode"] == "none"
    assert s["has_password"] is False and s["password_source"] == "account"
    assert s["ipv4_pool"] is None and s["discounts"] == [] and s["mac_addresses"] == []
    history = (await client.get(f"{API}/services/{s['id']}/status-history")).json()["items"]
    assert [(h["from_status"], h["to_status"], h["reason"]) for h in history] == [(None, "active", "manual")]
    created = [e for e in await audit_rows(db) if e.entity == "service" and e.action == "created"]
    assert (
        len(created) == 1 and created[0].after is not None and created[0].after["plan_id"] == world["fiber"]
    )


async def test_start_date_is_today_in_the_accounts_timezone(client: httpx.AsyncClient, world: World) -> None:
    # 12:00 UTC on the 15th is already the 16th in Kiritimati (UTC+14).
    r = await client.patch(f"{API}/accounts/{world['home']}", json={"timezone": "Pacific/Kiritimati"})
    assert r.status_code == 200, r.text
    s = await add(client, world, account="kid")
    assert s["start_date"] == "2026-01-16"


async def test_internet_options_are_normalised(client: httpx.AsyncClient, world: World) -> None:
    s = await add(
        client,
        world,
        login="alice",
        password=PASSWORD,
        router_id=world["router"],
        port_id=world["port"],
        ipv4_mode="permanent",
        ipv4_address="192.0.2.10",
        additional_networks=["198.51.100.0/28", "198.51.100.0/28"],
        mac_addresses="AA-BB-CC-DD-EE-01, aabb.ccdd.ee02, AABBCCDDEE03, aa:bb:cc:dd:ee:01",
        geo_address="1 Main St",
        latitude=52.5,
        longitude=13.4,
        description="Home fiber",
        quantity=2,
        unit="line",
        unit_price_amount=2500,
        pay_period="quarter",
    )
    assert s["mac_addresses"] == ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02", "aa:bb:cc:dd:ee:03"]
    assert s["additional_networks"] == ["198.51.100.0/28"]
    assert s["ipv4_address"] == "192.0.2.10" and s["login"] == "alice"
    assert s["has_password"] is True and s["password_source"] == "own"
    assert (s["router_id"], s["port_id"], s["pay_period"], s["quantity"]) == (
        world["router"],
        world["port"],
        "quarter",
        2,
    )
    assert "password" not in s and PASSWORD not in str(s)
    dynamic = await add(client, world, login="bob", ipv4_mode="dynamic", ipv4_pool="any")
    assert dynamic["ipv4_pool"] == "any"
    pinned = await add(client, world, login="carol", ipv4_mode="dynamic", ipv4_pool=world["dyn"])
    assert pinned["ipv4_pool"] == world["dyn"]


async def test_secrets_are_shown_only_on_reveal_and_never_audited(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    own = await add(client, world, login="alice", password=PASSWORD)
    shared = await add(client, world, login="bob", password="   ")
    assert shared["password_source"] == "account" and shared["has_password"] is False
    r = await client.put(
        f"{API}/accounts/{world['home']}/service-password", json={"password": ACCOUNT_PASSWORD}
    )
    assert r.status_code == 200 and r.json() == {"account_id": world["home"], "has_service_password": True}
    await client.patch(
        f"{API}/services/{own['id']}", json={"description": "edited", "password": PASSWORD + "2"}
    )

    for path in (
        f"/services/{own['id']}",
        f"/services/{shared['id']}",
        "/services",
        f"/accounts/{world['home']}",
    ):
        text = (await client.get(f"{API}{path}")).text
        assert PASSWORD not in text and ACCOUNT_PASSWORD not in text
    assert (await client.get(f"{API}/services/{shared['id']}")).json()["has_password"] is True

    r = await client.post(f"{API}/services/{own['id']}/reveal-password")
    assert r.status_code == 200 and r.json() == {"password": PASSWORD + "2", "source": "own"}
    r = await client.post(f"{API}/services/{shared['id']}/reveal-password")
    assert r.json() == {"password": ACCOUNT_PASSWORD, "source": "account"}

    async with db.transaction(write=False) as session:
        sealed = (await session.execute(select(Service.password_sealed))).scalars().all()
    events = await audit_rows(db)
    dumped = " ".join(f"{e.before} {e.after}" for e in events)
    for secret in (PASSWORD, ACCOUNT_PASSWORD, *[s for s in sealed if s]):
        assert secret not in dumped
    actions = [e.action for e in events]
    assert actions.count("password_revealed") == 2 and "service_password_set" in actions
    # Clearing the account's password: services without their own have none any more.
    r = await client.put(f"{API}/accounts/{world['home']}/service-password", json={"password": ""})
    assert r.json()["has_service_password"] is False
    r = await client.post(f"{API}/services/{shared['id']}/reveal-password")
    assert r.json() == {"password": None, "source": "account"}


async def test_a_login_is_held_by_live_services_only(client: httpx.AsyncClient, world: World) -> None:
    first = await add(client, world, login="alice")
    r = await client.post(
        f"{API}/accounts/{world['kid']}/services", json={"plan_id": world["fiber"], "login": "alice"}
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "login"
    r = await client.post(
        f"{API}/services/{first['id']}/status", json={"status": "archived", "note": "moved"}
    )
    assert r.status_code == 200 and r.json()["status"] == "archived"
    second = await add(client, world, account="kid", login="alice")
    assert second["login"] == "alice"
    # The archived one cannot come back while its login is taken.
    r = await client.post(f"{API}/services/{first['id']}/status", json={"status": "active"})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "login"
    assert (await client.get(f"{API}/services/{first['id']}")).json()["status"] == "archived"
    # An archived service can be added with a login a live one holds.
    archived = await add(client, world, login="alice", status="archived")
    assert archived["status"] == "archived"


async def test_an_address_is_held_by_live_services_only(client: httpx.AsyncClient, world: World) -> None:
    fields = {"ipv4_mode": "permanent", "ipv4_address": "192.0.2.20"}
    first = await add(client, world, **fields)
    r = await client.post(
        f"{API}/accounts/{world['kid']}/services", json={"plan_id": world["fiber"], **fields}
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "ipv4_address"
    await post(client, f"/services/{first['id']}/status", {"status": "archived"}, 200)
    await add(client, world, account="kid", **fields)
    r = await client.post(f"{API}/services/{first['id']}/status", json={"status": "stopped"})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "ipv4_address"


async def test_unarchive_when_free(client: httpx.AsyncClient, world: World) -> None:
    s = await add(client, world, login="alice", ipv4_mode="permanent", ipv4_address="192.0.2.30")
    await post(client, f"/services/{s['id']}/status", {"status": "archived"}, 200)
    r = await client.post(f"{API}/services/{s['id']}/status", json={"status": "active", "note": "back"})
    assert r.status_code == 200 and r.json()["status"] == "active"


async def test_pending_waits_on_another_service(client: httpx.AsyncClient, world: World) -> None:
    first = await add(client, world, status="pending")
    assert first["status"] == "pending" and first["status_reason"] == "manual"
    waiter = await add(client, world, account="kid", status="pending", waits_on_service_id=first["id"])
    assert (waiter["status"], waiter["status_reason"]) == ("pending", "waiting")
    r = await client.post(f"{API}/services/{first['id']}/status", json={"status": "active"})
    assert r.status_code == 200
    after = (await client.get(f"{API}/services/{waiter['id']}")).json()
    assert (after["status"], after["status_reason"]) == ("active", "activated_with")
    # Waiting on a service that is already active: active at once.
    at_once = await add(client, world, status="pending", waits_on_service_id=first["id"])
    assert (at_once["status"], at_once["status_reason"]) == ("active", "activated_with")


async def test_manual_status_changes_and_history(client: httpx.AsyncClient, world: World) -> None:
    s = await add(client, world)
    for status in ("disabled", "stopped", "active", "archived", "stopped"):
        r = await client.post(
            f"{API}/services/{s['id']}/status", json={"status": status, "note": f"to {status}"}
        )
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["status_reason"]) == (status, "manual")
    for status in ("stopped", "pending"):
        r = await client.post(f"{API}/services/{s['id']}/status", json={"status": status})
        assert r.status_code == 409 and r.json()["errors"][0]["field"] == "status", r.text
    page = (await client.get(f"{API}/services/{s['id']}/status-history?limit=4")).json()
    assert [h["to_status"] for h in page["items"]] == ["stopped", "archived", "active", "stopped"]
    assert page["items"][0]["note"] == "to stopped" and page["next_cursor"]
    rest = (await client.get(f"{API}/services/{s['id']}/status-history?cursor={page['next_cursor']}")).json()
    assert [h["to_status"] for h in rest["items"]] == ["disabled", "active"] and rest["next_cursor"] is None


async def test_edit(client: httpx.AsyncClient, world: World, db: Database) -> None:
    s = await add(client, world, login="alice", mac_addresses=["aabbccddeeff"])
    r = await client.patch(
        f"{API}/services/{s['id']}",
        json={
            "login": "alice2",
            "mac_addresses": "00-11-22-33-44-55",
            "ipv4_mode": "permanent",
            "ipv4_address": "192.0.2.40",
            "end_date": "2026-12-31",
            "unit_price_amount": None,
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["login"] == "alice2" and out["mac_addresses"] == ["00:11:22:33:44:55"]
    assert out["ipv4_address"] == "192.0.2.40" and out["end_date"] == "2026-12-31"
    # Switching to dynamic must drop the address in the same request.
    r = await client.patch(f"{API}/services/{s['id']}", json={"ipv4_mode": "dynamic"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "ipv4_address"
    r = await client.patch(f"{API}/services/{s['id']}", json={"ipv4_mode": "dynamic", "ipv4_address": None})
    assert r.status_code == 200 and r.json()["ipv4_pool"] == "any"
    # The login alice is free again; the old address too.
    await add(client, world, account="kid", login="alice", ipv4_mode="permanent", ipv4_address="192.0.2.40")
    updates = [e for e in await audit_rows(db) if e.action == "updated" and e.entity == "service"]
    assert updates and updates[0].after is not None and updates[0].after["login"] == "alice2"


async def test_edit_refuses_plan_and_status(client: httpx.AsyncClient, world: World) -> None:
    s = await add(client, world)
    r = await client.patch(f"{API}/services/{s['id']}", json={"plan_id": world["voice"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "plan_id"
    assert "change-plan" in r.json()["errors"][0]["fix"]
    r = await client.patch(f"{API}/services/{s['id']}", json={"status": "stopped"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "status"


async def test_discounts(client: httpx.AsyncClient, world: World) -> None:
    s = await add(
        client,
        world,
        end_date="2026-12-31",
        discounts=[
            {"percent": "12.5", "start_date": "2026-02-01", "end_date": "2026-03-31", "description": "promo"}
        ],
    )
    assert [(d["percent"], d["start_date"], d["end_date"]) for d in s["discounts"]] == [
        ("12.50", "2026-02-01", "2026-03-31")
    ]
    r = await client.post(f"{API}/services/{s['id']}/discounts", json={"percent": 100})
    assert r.status_code == 201, r.text
    added = r.json()
    assert added["start_date"] == "2026-01-15" and added["percent"] == "100.00"
    listed = (await client.get(f"{API}/services/{s['id']}/discounts")).json()["items"]
    assert len(listed) == 2
    r = await client.delete(f"{API}/services/{s['id']}/discounts/{added['id']}")
    assert r.status_code == 204
    r = await client.delete(f"{API}/services/{s['id']}/discounts/{added['id']}")
    assert r.status_code == 404
    assert len((await client.get(f"{API}/services/{s['id']}/discounts")).json()["items"]) == 1
    # The service's dates must keep holding its discounts.
    r = await client.patch(f"{API}/services/{s['id']}", json={"end_date": "2026-03-01"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "end_date"
    r = await client.patch(f"{API}/services/{s['id']}", json={"start_date": "2026-02-15"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "start_date"


async def test_delete_removes_the_service_and_its_history(
    client: httpx.AsyncClient, world: World, db: Database
) -> None:
    s = await add(client, world, login="alice", discounts=[{"percent": 5}])
    await post(client, f"/services/{s['id']}/status", {"status": "stopped"}, 200)
    r = await client.delete(f"{API}/services/{s['id']}")
    assert r.status_code == 204
    assert (await client.get(f"{API}/services/{s['id']}")).status_code == 404
    async with db.transaction(write=False) as session:
        left = (await session.execute(select(ServiceStatusChange))).scalars().all()
    assert left == []
    assert any(e.action == "deleted" and e.entity == "service" for e in await audit_rows(db))
    await add(client, world, login="alice")


async def test_deleting_an_account_removes_its_services(client: httpx.AsyncClient, world: World) -> None:
    s = await add(client, world, account="kid", login="kidlogin")
    await add(client, world, account="kid")
    report = (await client.get(f"{API}/accounts/{world['kid']}/deletion")).json()
    assert report["removed"]["services"] == 2
    r = await client.delete(f"{API}/accounts/{world['kid']}")
    assert r.status_code == 200, r.text
    assert (await client.get(f"{API}/services/{s['id']}")).status_code == 404
    await add(client, world, login="kidlogin")


async def test_lists(client: httpx.AsyncClient, world: World) -> None:
    a = await add(client, world, login="alice")
    b = await add(client, world, plan_id=world["voice"])
    c = await add(client, world, account="kid", login="carol", status="stopped")
    home = (await client.get(f"{API}/accounts/{world['home']}/services")).json()
    assert [s["id"] for s in home["items"]] == [a["id"], b["id"]]
    by_plan = (await client.get(f"{API}/accounts/{world['home']}/services?plan_id={world['voice']}")).json()
    assert [s["id"] for s in by_plan["items"]] == [b["id"]]
    first = (await client.get(f"{API}/services?limit=2")).json()
    assert [s["id"] for s in first["items"]] == [a["id"], b["id"]] and first["next_cursor"]
    rest = (await client.get(f"{API}/services?limit=2&cursor={first['next_cursor']}")).json()
    assert [s["id"] for s in rest["items"]] == [c["id"]] and rest["next_cursor"] is None
    for query, expected in (
        ("login=carol", [c["id"]]),
        ("status=stopped", [c["id"]]),
        (f"account_id={world['kid']}", [c["id"]]),
        (f"plan_id={world['fiber']}", [a["id"], c["id"]]),
    ):
        found = (await client.get(f"{API}/services?{query}")).json()["items"]
        assert [s["id"] for s in found] == expected, query
    assert (await client.get(f"{API}/accounts/987654/services")).status_code == 404
    r = await client.get(f"{API}/services?cursor=notacursor")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor"
