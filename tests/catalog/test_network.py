"""Routers with sealed RADIUS secrets; IPv4 pools and ports owned and shared down the tree."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from boughs.accounts import repository as accounts
from boughs.accounts.models import Account
from boughs.audit.models import AuditEvent
from boughs.authz.scope import scope_of
from boughs.catalog import service as catalog
from boughs.catalog.models import IpPool, Router
from boughs.kit.errors import InvalidInput
from tests.catalog.conftest import World, field_error, names

ROUTERS, POOLS, PORTS = "/api/v1/routers", "/api/v1/ip-pools", "/api/v1/ports"
SECRET = "s3cr3t-radius-Wq9"


async def _audit(world: World, entity: str) -> list[AuditEvent]:
    async with world.db.transaction() as session:
        result = await session.execute(
            select(AuditEvent).where(AuditEvent.entity == entity).order_by(AuditEvent.id)
        )
        return list(result.scalars())


# --- routers ---------------------------------------------------------------------------------


async def test_router_secret_is_sealed_never_shown_and_revealed_on_request(world: World) -> None:
    body = {"name": "nas1", "address": "NAS1.Example.com", "type": "mikrotik", "radius_secret": SECRET}
    r = await world.staff.post(ROUTERS, json=body)
    assert r.status_code == 201, r.text
    router = r.json()
    assert router["address"] == "nas1.example.com"
    url = f"{ROUTERS}/{router['id']}"
    for response in (r, await world.staff.get(url), await world.staff.get(ROUTERS)):
        assert SECRET not in response.text and "radius_secret" not in response.text
    async with world.db.transaction() as session:
        sealed = (await session.execute(select(Router.radius_secret_sealed))).scalar_one()
    assert SECRET not in sealed
    r = await world.staff.patch(url, json={"radius_secret": "another-one", "description": "core"})
    assert r.status_code == 200 and "another-one" not in r.text
    r = await world.staff.post(f"{url}/reveal-secret")
    assert r.status_code == 200, r.text
    assert r.json() == {"router_id": router["id"], "radius_secret": "another-one"}
    events = await _audit(world, "router")
    assert [e.action for e in events] == ["created", "updated", "secret_revealed"]
    dumped = json.dumps([[e.before, e.after] for e in events])
    assert SECRET not in dumped and "another-one" not in dumped
    assert events[1].after == {"description": "core", "radius_secret_changed": True}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"address": "not a host!"}, "address"),
        ({"address": "-bad.example.com"}, "address"),
        ({"type": "zte"}, "type"),
        ({"radius_secret": ""}, "radius_secret"),
        ({"radius_secret": None}, "radius_secret"),
        ({"name": ""}, "name"),
    ],
)
async def test_bad_routers_are_refused(world: World, body: dict[str, object], field: str) -> None:
    full = {"name": "nas", "address": "192.0.2.1", "type": "cisco", "radius_secret": "x", **body}
    field_error(await world.staff.post(ROUTERS, json=full), 422, field)
    assert names(await world.staff.get(ROUTERS)) == set()


async def test_routers_are_staff_only_and_kept_while_services_use_them(world: World) -> None:
    router = await world.create(ROUTERS, {"name": "nas", "address": "2001:db8::1", "type": "accel-ppp",
                                          "radius_secret": SECRET})  # fmt: skip
    url = f"{ROUTERS}/{router['id']}"
    field_error(await world.staff.post(ROUTERS, json={"name": "nas", "address": "192.0.2.9", "type": "other",
                                                      "radius_secret": "y"}), 409, "name")  # fmt: skip
    assert names(await world["admin_root"].get(ROUTERS)) == set()
    assert (await world["admin_root"].get(url)).status_code == 404
    assert (await world["admin_root"].post(f"{url}/reveal-secret")).status_code == 404
    assert (await world["admin_root"].post(ROUTERS, json={})).status_code in (403, 422)
    plan = await world.plan("P")
    await world.service_on("A", plan["id"], router_id=router["id"])
    r = await world.staff.delete(url)
    assert r.status_code == 409 and r.json()["fix"]
    spare = await world.create(ROUTERS, {"name": "spare", "address": "192.0.2.2", "type": "other",
                                         "radius_secret": SECRET})  # fmt: skip
    assert (await world.staff.delete(f"{ROUTERS}/{spare['id']}")).status_code == 204
    assert [e.action for e in await _audit(world, "router")] == ["created", "created", "deleted"]


# --- pools -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cidr", "expected_fix"),
    [
        ("10.0.0.5/24", "10.0.0.0/24"),
        ("192.0.2.0/33", "prefix"),
        ("10.0.0.0/7", "/8"),
        ("10.0.0.0", "/24"),
        ("2001:db8::/64", "192.0.2.0/24"),
        ("banana", "192.0.2.0/24"),
    ],
)
async def test_pool_cidr_must_be_a_strict_ipv4_network(world: World, cidr: str, expected_fix: str) -> None:
    r = await world.staff.post(POOLS, json={"name": "p", "cidr": cidr, "kind": "permanent"})
    problem = field_error(r, 422, "cidr")
    assert expected_fix in problem["fix"], problem
    assert names(await world.staff.get(POOLS)) == set()


async def test_overlapping_pools_are_a_conflict(world: World) -> None:
    await world.create(POOLS, {"name": "big", "cidr": "10.0.0.0/16", "kind": "dynamic"})
    small = await world.create(POOLS, {"name": "other", "cidr": "10.1.0.0/24", "kind": "permanent"})
    for cidr in ("10.0.5.0/24", "10.0.0.0/8", "10.0.255.255/32"):
        r = await world.staff.post(POOLS, json={"name": "x", "cidr": cidr, "kind": "permanent"})
        assert "big" in field_error(r, 409, "cidr")["message"]
    field_error(
        await world.staff.patch(f"{POOLS}/{small['id']}", json={"cidr": "10.0.128.0/24"}), 409, "cidr"
    )
    r = await world.staff.patch(f"{POOLS}/{small['id']}", json={"cidr": "10.2.0.0/24"})
    assert r.status_code == 200 and r.json()["cidr"] == "10.2.0.0/24"
    assert names(await world.staff.get(POOLS)) == {"big", "other"}


async def test_pool_owner_must_exist(world: World) -> None:
    body = {"name": "p", "cidr": "10.0.0.0/24", "kind": "permanent", "owner_account_id": 987654321}
    field_error(await world.staff.post(POOLS, json=body), 422, "owner_account_id")


async def _pools(world: World) -> dict[str, dict[str, object]]:
    """The provider's, A's shared, A's private, A1's own, B's shared."""
    specs = [
        ("provider", "100.64.0.0/24", None, False),
        ("a_shared", "100.64.1.0/24", "A", True),
        ("a_private", "100.64.2.0/24", "A", False),
        ("a1_own", "100.64.3.0/24", "A1", False),
        ("b_shared", "100.64.4.0/24", "B", True),
    ]
    out = {}
    for name, cidr, owner, shared in specs:
        out[name] = await world.create(POOLS, {
            "name": name, "cidr": cidr, "kind": "permanent",
            "owner_account_id": world.ids[owner] if owner else None, "shared_with_descendants": shared,
        })  # fmt: skip
    return out


async def _account(ctx, world: World, name: str) -> Account:  # type: ignore[no-untyped-def]
    found = await accounts.get(ctx.session, await scope_of(ctx), world.ids[name])
    assert found is not None
    return found


async def test_which_pools_an_account_may_use(world: World, ctx_factory) -> None:  # type: ignore[no-untyped-def]
    await _pools(world)
    usable = {
        "A1": {"provider", "a_shared", "a1_own"},
        "A": {"provider", "a_shared", "a_private"},
        "Root": {"provider"},
        "B": {"provider", "b_shared"},
    }
    addresses = {"provider": "100.64.0.7", "a_shared": "100.64.1.7", "a_private": "100.64.2.7",
                 "a1_own": "100.64.3.7", "b_shared": "100.64.4.7"}  # fmt: skip
    async with ctx_factory() as ctx:
        for account_name, allowed in usable.items():
            account = await _account(ctx, world, account_name)
            for pool_name, address in addresses.items():
                if pool_name in allowed:
                    pool = await catalog.check_permanent_address(ctx, account, address)
                    assert pool.name == pool_name
                else:
                    with pytest.raises(InvalidInput) as caught:
                        await catalog.check_permanent_address(ctx, account, address, field="ip_address")
                    assert caught.value.errors[0].field == "ip_address"


async def test_permanent_address_checks(world: World, ctx_factory) -> None:  # type: ignore[no-untyped-def]
    await world.create(POOLS, {"name": "p24", "cidr": "198.51.100.0/24", "kind": "permanent"})
    await world.create(POOLS, {"name": "p31", "cidr": "203.0.113.0/31", "kind": "permanent"})
    await world.create(POOLS, {"name": "p32", "cidr": "203.0.113.8/32", "kind": "permanent"})
    await world.create(POOLS, {"name": "dyn", "cidr": "192.0.2.0/24", "kind": "dynamic"})
    async with ctx_factory() as ctx:
        a = await _account(ctx, world, "A")
        for good in ("198.51.100.1", "198.51.100.254", "203.0.113.0", "203.0.113.1", "203.0.113.8"):
            await catalog.check_permanent_address(ctx, a, good)
        for bad in ("198.51.100.0", "198.51.100.255", "192.0.2.10", "10.9.9.9", "300.1.1.1", "x", "::1"):
            with pytest.raises(InvalidInput) as caught:
                await catalog.check_permanent_address(ctx, a, bad)
            assert caught.value.errors[0].field == "ipv4_address" and caught.value.errors[0].fix


async def test_dynamic_pools_ports_and_routers_checks(world: World, ctx_factory) -> None:  # type: ignore[no-untyped-def]
    dyn = await world.create(POOLS, {"name": "dyn", "cidr": "192.0.2.0/24", "kind": "dynamic"})
    perm = await world.create(POOLS, {"name": "perm", "cidr": "198.51.100.0/24", "kind": "permanent"})
    b_dyn = await world.create(POOLS, {"name": "bdyn", "cidr": "10.0.0.0/24", "kind": "dynamic",
                                       "owner_account_id": world.ids["B"]})  # fmt: skip
    port = await world.create(PORTS, {"name": "olt-1/1", "owner_account_id": world.ids["A"],
                                      "shared_with_descendants": True})  # fmt: skip
    b_port = await world.create(PORTS, {"name": "b-port", "owner_account_id": world.ids["B"]})
    router = await world.create(ROUTERS, {"name": "nas", "address": "192.0.2.1", "type": "other",
                                          "radius_secret": SECRET})  # fmt: skip
    async with ctx_factory() as ctx:
        a1 = await _account(ctx, world, "A1")
        assert (await catalog.check_dynamic_pool(ctx, a1, dyn["id"])).name == "dyn"
        assert (await catalog.check_port(ctx, a1, port["id"])).name == "olt-1/1"
        assert (await catalog.check_router(ctx, router["id"])).name == "nas"
        for pool_id in (perm["id"], b_dyn["id"], 987654321):
            with pytest.raises(InvalidInput) as caught:
                await catalog.check_dynamic_pool(ctx, a1, pool_id)
            assert caught.value.errors[0].field == "ipv4_pool"
        for port_id in (b_port["id"], 987654321):
            with pytest.raises(InvalidInput) as caught:
                await catalog.check_port(ctx, a1, port_id)
            assert caught.value.errors[0].field == "port_id"
        with pytest.raises(InvalidInput) as caught:
            await catalog.check_router(ctx, 987654321)
        assert caught.value.errors[0].field == "router_id"


async def test_members_read_the_pools_and_ports_their_accounts_may_use(world: World) -> None:
    await _pools(world)
    assert names(await world["admin_a"].get(POOLS)) == {"provider", "a_shared", "a_private", "a1_own"}
    assert names(await world["admin_a1"].get(POOLS)) == {"provider", "a_shared", "a1_own"}
    assert names(await world["admin_root"].get(POOLS)) == {
        "provider", "a_shared", "a_private", "a1_own", "b_shared",
    }  # fmt: skip
    assert names(await world["nobody"].get(POOLS)) == set()
    async with world.db.transaction() as session:
        a_private = (await session.execute(select(IpPool.id).where(IpPool.name == "a_private"))).scalar_one()
    assert (await world["admin_a1"].get(f"{POOLS}/{a_private}")).status_code == 404
    assert (await world["admin_a"].get(f"{POOLS}/{a_private}")).status_code == 200
    assert (await world["admin_a"].patch(f"{POOLS}/{a_private}", json={"name": "x"})).status_code == 403
    assert (await world["admin_a"].delete(f"{POOLS}/{a_private}")).status_code == 403
    assert names(await world.staff.get(POOLS, params={"kind": "dynamic"})) == set()
    await world.create(
        PORTS, {"name": "shared", "owner_account_id": world.ids["A"], "shared_with_descendants": True}
    )
    await world.create(PORTS, {"name": "mine", "owner_account_id": world.ids["A"]})
    await world.create(PORTS, {"name": "provider", "location": "POP 1", "speed": 10_000})
    assert names(await world["admin_a1"].get(PORTS)) == {"shared", "provider"}
    assert names(await world["admin_a"].get(PORTS)) == {"shared", "mine", "provider"}
    assert names(await world["admin_b"].get(PORTS)) == {"provider"}


async def test_pools_in_use_keep_their_shape(world: World) -> None:
    perm = await world.create(POOLS, {"name": "perm", "cidr": "198.51.100.0/24", "kind": "permanent"})
    dyn = await world.create(POOLS, {"name": "dyn", "cidr": "192.0.2.0/24", "kind": "dynamic"})
    plan = await world.plan("P")
    await world.service_on("A", plan["id"], ipv4_mode="permanent", ipv4_address="198.51.100.20")
    await world.service_on("A", plan["id"], ipv4_mode="dynamic", ipv4_pool_id=dyn["id"])
    for pool in (perm, dyn):
        url = f"{POOLS}/{pool['id']}"
        field_error(await world.staff.patch(url, json={"cidr": "10.9.0.0/24"}), 409, "cidr")
        other_kind = "dynamic" if pool["kind"] == "permanent" else "permanent"
        field_error(await world.staff.patch(url, json={"kind": other_kind}), 409, "kind")
        assert (await world.staff.delete(url)).status_code == 409
        r = await world.staff.patch(
            url, json={"name": f"{pool['name']}-renamed", "shared_with_descendants": True}
        )
        assert r.status_code == 200, r.text
    # An archived service no longer holds its address.
    spare = await world.create(POOLS, {"name": "spare", "cidr": "203.0.113.0/24", "kind": "permanent"})
    await world.service_on(
        "B", plan["id"], status="archived", ipv4_mode="permanent", ipv4_address="203.0.113.9"
    )
    assert (await world.staff.delete(f"{POOLS}/{spare['id']}")).status_code == 204
    actions = [e.action for e in await _audit(world, "ip_pool")]
    assert actions == ["created", "created", "updated", "updated", "created", "deleted"]


async def test_ports_crud_and_in_use(world: World) -> None:
    port = await world.create(PORTS, {"name": "p1", "location": "Rack 4", "speed": 1000})
    url = f"{PORTS}/{port['id']}"
    field_error(await world.staff.post(PORTS, json={"name": "p1"}), 409, "name")
    field_error(await world.staff.post(PORTS, json={"name": "p2", "speed": 0}), 422, "speed")
    field_error(await world.staff.post(PORTS, json={"name": "p2", "owner_account_id": 987654321}), 422,
                "owner_account_id")  # fmt: skip
    field_error(await world.staff.patch(url, json={"name": None}), 422, "name")
    r = await world.staff.patch(url, json={"owner_account_id": world.ids["B"], "speed": None})
    assert (
        r.status_code == 200 and r.json()["owner_account_id"] == world.ids["B"] and r.json()["speed"] is None
    )
    plan = await world.plan("P")
    await world.service_on("B", plan["id"], port_id=port["id"])
    assert (await world.staff.delete(url)).status_code == 409
    assert (await world["admin_root"].post(PORTS, json={"name": "x"})).status_code == 403
    assert [e.action for e in await _audit(world, "port")] == ["created", "updated"]
