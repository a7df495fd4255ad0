"""GET /api/v1/dual-device-users (seed 000), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import event

from boughs.db import Database
from boughs.kit.clock import FrozenClock
from tests.conftest import Tenant
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

URL = f"{API}/dual-device-users"


@pytest.fixture
async def catalog(db: Database, clock: FrozenClock, tenant: Tenant) -> Catalog:
    return await make_catalog(db, clock, tenant)


async def listed(client: httpx.AsyncClient, **params: Any) -> dict[int, dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(50):
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get(URL, params=query)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    ids = [item["account_id"] for item in items]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    return {item["account_id"]: item for item in items}


async def add_service(client: httpx.AsyncClient, account_id: int, plan_id: int, macs: list[str]) -> None:
    body = {"plan_id": plan_id, "login": f"svc-{account_id}-{plan_id}-{len(macs)}", "mac_addresses": macs}
    r = await client.post(f"{API}/accounts/{account_id}/services", json=body)
    assert r.status_code == 201, r.text


@pytest.fixture
async def scene(client: httpx.AsyncClient, catalog: Catalog) -> dict[str, int]:
    """A landlord with two connections, a hotspot customer with a companion plan, and bystanders."""
    landlord = await make_account(client, "Landlord")
    await add_connection(client, landlord, connection(catalog.internet, label="Unit 1"))
    unit2 = (await add_connection(client, landlord, connection(catalog.dual, label="Unit 2")))["account"][
        "id"
    ]
    hotspot = await make_account(client, "Hotspot Hal")
    await add_service(client, hotspot, catalog.dual, ["aa:bb:cc:00:00:01", "AABB.CC00.0002"])
    # A single-device plan does not make a dual device user.
    single = await make_account(client, "Single Sam")
    await add_service(client, single, catalog.internet, ["aa:bb:cc:00:00:03"])
    await make_account(client, "Nobody")
    return {"landlord": landlord, "unit2": unit2, "hotspot": hotspot, "single": single}


async def test_customers_with_children_and_companion_plans(
    client: httpx.AsyncClient, scene: dict[str, int]
) -> None:
    rows = await listed(client)
    assert set(rows) == {scene["landlord"], scene["unit2"], scene["hotspot"]}
    assert rows[scene["landlord"]] == {
        "account_id": scene["landlord"],
        "name": "Landlord",
        "child_count": 2,
        "companion_allowed": False,
        "device_allowance": None,
        "devices_in_use": None,
    }
    assert rows[scene["hotspot"]] == {
        "account_id": scene["hotspot"],
        "name": "Hotspot Hal",
        "child_count": 0,
        "companion_allowed": True,
        "device_allowance": 2,
        "devices_in_use": 2,
    }
    # A child connection on a companion plan is a dual device user in its own right.
    assert rows[scene["unit2"]]["companion_allowed"] is True
    assert rows[scene["unit2"]]["devices_in_use"] == 0


async def test_kind_filters(client: httpx.AsyncClient, scene: dict[str, int]) -> None:
    assert set(await listed(client, kind="children")) == {scene["landlord"]}
    assert set(await listed(client, kind="companion")) == {scene["unit2"], scene["hotspot"]}
    assert set(await listed(client, kind="all")) == {scene["landlord"], scene["unit2"], scene["hotspot"]}
    r = await client.get(URL, params={"kind": "triples"})
    assert r.status_code == 422 and fields_named(r) == ["kind"]
    r = await client.get(URL, params={"cursor": "!!"})
    assert r.status_code == 422 and fields_named(r) == ["cursor"]


async def test_deleted_children_no_longer_count(client: httpx.AsyncClient, scene: dict[str, int]) -> None:
    r = await client.delete(f"{API}/accounts/{scene['landlord']}/child-connections/{scene['unit2']}")
    assert r.status_code == 200, r.text
    rows = await listed(client)
    assert rows[scene["landlord"]]["child_count"] == 1
    assert scene["unit2"] not in rows


async def test_a_member_sees_only_their_scope(
    app: Any, db: Database, clock: FrozenClock, tenant: Tenant, scene: dict[str, int]
) -> None:
    member = await member_client(app, db, clock, tenant, scene["landlord"], "viewer")
    async with member:
        rows = await listed(member)
    assert set(rows) == {scene["landlord"], scene["unit2"]}
    member = await member_client(app, db, clock, tenant, scene["single"], "admin")
    async with member:
        assert await listed(member) == {}


async def test_a_fixed_number_of_queries_per_page(
    client: httpx.AsyncClient, db: Database, scene: dict[str, int]
) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    async def queries_for(limit: int) -> int:
        statements.clear()
        for engine in (db.engine, db.read_engine):
            event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            r = await client.get(URL, params={"limit": limit})
            assert r.status_code == 200 and len(r.json()["items"]) == min(limit, 3)
        finally:
            for engine in (db.engine, db.read_engine):
                event.remove(engine.sync_engine, "before_cursor_execute", count)
        return len(statements)

    assert await queries_for(1) == await queries_for(3)
