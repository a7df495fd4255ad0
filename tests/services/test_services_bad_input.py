"""Bad input to the services API: a 4xx problem naming the field, and nothing changed.

Every case runs against the same world, and every row the services API can write
(services, their history and discounts, audit events, the accounts' service password)
is compared before and after the refused request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from boughs.accounts.models import Account
from boughs.audit.models import AuditEvent
from boughs.auth.actor import Actor
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.services import repository
from boughs.services import service as services
from boughs.services.models import Service, ServiceDiscount, ServiceStatusChange
from boughs.services.schemas import ServiceCreate
from tests.conftest import Tenant
from tests.services.test_services_api import API, World, add, build

PROBLEM = "application/problem+json"


async def database_state(db: Database) -> dict[str, Any]:
    async with db.transaction(write=False) as session:

        async def rows(model: Any) -> list[dict[str, Any]]:
            found = (await session.execute(select(model).order_by(model.id))).scalars()
            return [{c.name: getattr(r, c.name) for c in model.__table__.columns} for r in found]

        audit_count = (await session.execute(select(func.count()).select_from(AuditEvent))).scalar_one()
        passwords = (await session.execute(select(Account.id, Account.service_password_sealed))).all()
        return {
            "services": await rows(Service),
            "history": await rows(ServiceStatusChange),
            "discounts": await rows(ServiceDiscount),
            "audit": audit_count,
            "passwords": sorted(passwords),
        }


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    w = await build(client)
    alice = await add(
        client,
        w,
        login="alice",
        ipv4_mode="permanent",
        ipv4_address="192.0.2.50",
        end_date="2026-12-31",
        discounts=[{"percent": 10, "start_date": "2026-02-01", "end_date": "2026-02-28"}],
    )
    w.ids["alice"] = alice["id"]
    w.ids["voiceservice"] = (await add(client, w, plan_id=w["voice"]))["id"]
    return w


def on(account: str, **body: Any) -> Callable[[World], tuple[str, str, Any]]:
    def make(w: World) -> tuple[str, str, Any]:
        return ("POST", f"/accounts/{w[account]}/services", {"plan_id": w["fiber"], **body})

    return make


def patch(**body: Any) -> Callable[[World], tuple[str, str, Any]]:
    return lambda w: ("PATCH", f"/services/{w['alice']}", body)


CASES: dict[str, tuple[Callable[[World], tuple[str, str, Any]], int, str | None]] = {
    # adding
    "no agreements": (on("bare"), 409, None),
    "suspended account": (on("held"), 409, None),
    "under a suspended account": (on("heldkid"), 409, None),
    "missing account": (lambda w: ("POST", "/accounts/987654/services", {"plan_id": w["fiber"]}), 404, None),
    "plan not offered": (
        lambda w: ("POST", f"/accounts/{w['home']}/services", {"plan_id": w["private"]}),
        422,
        "plan_id",
    ),
    "no such plan": (
        lambda w: ("POST", f"/accounts/{w['home']}/services", {"plan_id": 987654}),
        422,
        "plan_id",
    ),
    "end before start": (on("home", start_date="2026-03-01", end_date="2026-02-01"), 422, "end_date"),
    "quantity 0": (on("home", quantity=0), 422, "quantity"),
    "negative price": (on("home", unit_price_amount=-1), 422, "unit_price_amount"),
    "unknown pay period": (on("home", pay_period="fortnight"), 422, "pay_period"),
    "unknown status": (on("home", status="deleted"), 422, "status"),
    "latitude": (on("home", latitude=91), 422, "latitude"),
    "longitude": (on("home", longitude=-181), 422, "longitude"),
    "unknown field": (on("home", colour="red"), 422, "colour"),
    "discount over 100": (on("home", discounts=[{"percent": "100.01"}]), 422, "discounts.0.percent"),
    "discount zero": (on("home", discounts=[{"percent": 0}]), 422, "discounts.0.percent"),
    "discount three decimals": (on("home", discounts=[{"percent": "1.005"}]), 422, "discounts.0.percent"),
    "discount before the service": (
        on("home", discounts=[{"percent": 5}, {"percent": 5, "start_date": "2026-01-01"}]),
        422,
        "discounts.1.start_date",
    ),
    "discount after the service": (
        on("home", end_date="2026-06-30", discounts=[{"percent": 5, "end_date": "2026-07-31"}]),
        422,
        "discounts.0.end_date",
    ),
    "discount ends before it starts": (
        on("home", discounts=[{"percent": 5, "start_date": "2026-03-01", "end_date": "2026-02-01"}]),
        422,
        "discounts.0.end_date",
    ),
    "login on a voice plan": (
        lambda w: ("POST", f"/accounts/{w['home']}/services", {"plan_id": w["voice"], "login": "v"}),
        422,
        "login",
    ),
    "MAC on a voice plan": (
        lambda w: (
            "POST",
            f"/accounts/{w['home']}/services",
            {"plan_id": w["voice"], "mac_addresses": ["aabbccddeeff"]},
        ),
        422,
        "mac_addresses",
    ),
    "login taken": (on("kid", login="alice"), 409, "login"),
    "address taken": (on("kid", ipv4_mode="permanent", ipv4_address="192.0.2.50"), 409, "ipv4_address"),
    "address outside the pools": (
        on("home", ipv4_mode="permanent", ipv4_address="203.0.113.5"),
        422,
        "ipv4_address",
    ),
    "address not an address": (
        on("home", ipv4_mode="permanent", ipv4_address="192.0.2.300"),
        422,
        "ipv4_address",
    ),
    "address in a dynamic pool": (
        on("home", ipv4_mode="permanent", ipv4_address="10.20.0.5"),
        422,
        "ipv4_address",
    ),
    "permanent without an address": (on("home", ipv4_mode="permanent"), 422, "ipv4_address"),
    "permanent IP on a dynamic service": (
        on("home", ipv4_mode="dynamic", ipv4_address="192.0.2.60"),
        422,
        "ipv4_address",
    ),
    "address without a mode": (on("home", ipv4_address="192.0.2.60"), 422, "ipv4_address"),
    "networks on a dynamic service": (
        on("home", ipv4_mode="dynamic", additional_networks=["198.51.100.0/28"]),
        422,
        "additional_networks",
    ),
    "network with host bits": (
        on("home", ipv4_mode="permanent", ipv4_address="192.0.2.61", additional_networks=["198.51.100.1/28"]),
        422,
        "additional_networks.0",
    ),
    "pool on a permanent service": (
        on("home", ipv4_mode="permanent", ipv4_address="192.0.2.62", ipv4_pool="any"),
        422,
        "ipv4_pool",
    ),
    "pool without a mode": (lambda w: on("home", ipv4_pool=w["dyn"])(w), 422, "ipv4_pool"),
    "permanent pool as dynamic pool": (
        lambda w: on("home", ipv4_mode="dynamic", ipv4_pool=w["static"])(w),
        422,
        "ipv4_pool",
    ),
    "pool not a pool": (on("home", ipv4_mode="dynamic", ipv4_pool="some"), 422, "ipv4_pool"),
    "unknown mode": (on("home", ipv4_mode="static"), 422, "ipv4_mode"),
    "MAC in no known notation": (
        on("home", mac_addresses="aa:bb:cc:dd:ee:ff, aa:bb-cc:dd:ee:ff"),
        422,
        "mac_addresses.1",
    ),
    "MAC too short": (on("home", mac_addresses=["aabbccddee"]), 422, "mac_addresses.0"),
    "no such router": (on("home", router_id=987654), 422, "router_id"),
    "no such port": (on("home", port_id=987654), 422, "port_id"),
    "waits without pending": (
        lambda w: on("home", waits_on_service_id=w["alice"])(w),
        422,
        "waits_on_service_id",
    ),
    "waits on a missing service": (
        on("home", status="pending", waits_on_service_id=987654),
        422,
        "waits_on_service_id",
    ),
    # editing
    "edit the plan": (lambda w: patch(plan_id=w["voice"])(w), 422, "plan_id"),
    "edit the status": (patch(status="stopped"), 422, "status"),
    "edit end before start": (patch(end_date="2026-01-01"), 422, "end_date"),
    "edit end before a discount": (patch(end_date="2026-02-15"), 422, "end_date"),
    "edit start after a discount": (patch(start_date="2026-02-10"), 422, "start_date"),
    "edit a null quantity": (patch(quantity=None), 422, "quantity"),
    "edit a null mode": (patch(ipv4_mode=None), 422, "ipv4_mode"),
    "edit to dynamic keeping the address": (patch(ipv4_mode="dynamic"), 422, "ipv4_address"),
    "edit to none keeping the address": (patch(ipv4_mode="none"), 422, "ipv4_address"),
    "edit a bad MAC": (patch(mac_addresses=["00:11:22:33:44:55", "zz"]), 422, "mac_addresses.1"),
    "edit the address out of the pools": (patch(ipv4_address="203.0.113.9"), 422, "ipv4_address"),
    "edit any pool on a permanent service": (patch(ipv4_pool="any"), 422, "ipv4_pool"),
    "edit a login on a voice service": (
        lambda w: ("PATCH", f"/services/{w['voiceservice']}", {"login": "v"}),
        422,
        "login",
    ),
    "edit a missing service": (lambda w: ("PATCH", "/services/987654", {"description": "x"}), 404, None),
    # status
    "status pending": (
        lambda w: ("POST", f"/services/{w['alice']}/status", {"status": "pending"}),
        409,
        "status",
    ),
    "status the same": (
        lambda w: ("POST", f"/services/{w['alice']}/status", {"status": "active"}),
        409,
        "status",
    ),
    "status unknown": (
        lambda w: ("POST", f"/services/{w['alice']}/status", {"status": "gone"}),
        422,
        "status",
    ),
    # discounts
    "discount outside the dates": (
        lambda w: ("POST", f"/services/{w['alice']}/discounts", {"percent": 5, "start_date": "2027-01-01"}),
        422,
        "start_date",
    ),
    "discount over 100 on its own": (
        lambda w: ("POST", f"/services/{w['alice']}/discounts", {"percent": 101}),
        422,
        "percent",
    ),
    "remove a missing discount": (
        lambda w: ("DELETE", f"/services/{w['alice']}/discounts/987654", None),
        404,
        None,
    ),
    # lists
    "bad cursor": (
        lambda w: ("GET", f"/services/{w['alice']}/status-history?cursor=zz", None),
        422,
        "cursor",
    ),
    "bad status filter": (lambda w: ("GET", "/services?status=gone", None), 422, "status"),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_input_changes_nothing(
    case: str, client: httpx.AsyncClient, world: World, db: Database
) -> None:
    make, status, field = CASES[case]
    method, path, body = make(world)
    before = await database_state(db)
    r = await client.request(method, f"{API}{path}", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["detail"]
    if status in (409, 422):
        assert problem.get("fix") or all(e.get("fix") for e in problem.get("errors", [])), problem
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem
    assert await database_state(db) == before


async def test_the_mac_error_lists_the_notations(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post(
        f"{API}/accounts/{world['home']}/services", json={"plan_id": world["fiber"], "mac_addresses": "nope"}
    )
    assert r.status_code == 422
    fix = r.json()["errors"][0]["fix"]
    assert all(n in fix for n in ("aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF", "aabb.ccdd.eeff", "aabbccddeeff"))


def test_normalise_mac() -> None:
    for raw in ("AA:BB:CC:DD:EE:0F", "aa-bb-cc-dd-ee-0f", "AABB.CCDD.EE0F", "aabbccddee0f", " aAbBcCdDeE0f "):
        assert services.normalise_mac(raw, "mac") == "aa:bb:cc:dd:ee:0f"
    for raw in ("aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:0g", "aa:bb-cc:dd:ee:0f", "aabb.ccdd.ee0f.0000", ""):
        with pytest.raises(Exception) as error:
            services.normalise_mac(raw, "mac")
        assert error.value.errors[0].field == "mac"


# --- the database backs the rules ----------------------------------------------------------


async def test_the_live_indexes_exist(db: Database, engine_name: str) -> None:
    async with db.transaction(write=False) as session:
        if engine_name == "sqlite":
            rows = (
                await session.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
            ).all()
        else:
            rows = (await session.execute(text("SELECT indexname, indexdef FROM pg_indexes"))).all()
    found = {name: sql for name, sql in rows}
    for name in ("uq_services_live_login", "uq_services_live_ipv4_address"):
        assert name in found and "UNIQUE" in found[name].upper() and "archived" in found[name]


async def _insert_raw(db: Database, template: Service, **changes: Any) -> None:
    async with db.transaction() as session:
        row = {c.name: getattr(template, c.name) for c in Service.__table__.columns if c.name != "id"}
        session.add(Service(**{**row, **changes}))
        await session.flush()


@pytest.mark.parametrize("column", ["login", "ipv4_address"])
async def test_the_database_refuses_a_second_live_holder(
    column: str, client: httpx.AsyncClient, world: World, db: Database
) -> None:
    async with db.transaction(write=False) as session:
        alice = await session.get(Service, world["alice"])
        assert alice is not None
    other = {"login": "someone", "ipv4_address": "192.0.2.99"}
    other.pop(column)
    with pytest.raises(IntegrityError):
        await _insert_raw(db, alice, **other)
    # Archived rows hold nothing.
    await _insert_raw(db, alice, **other, status="archived")


async def test_a_lost_race_answers_like_the_check(
    client: httpx.AsyncClient,
    world: World,
    db: Database,
    clock: FrozenClock,
    tenant: Tenant,
    monkeypatch: Any,
) -> None:
    """Two requests pass the check at once: the index refuses the second, as a 409 on login."""

    async def nobody(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(repository, "live_holder", nobody)
    before = await database_state(db)
    r = await client.post(
        f"{API}/accounts/{world['kid']}/services", json={"plan_id": world["fiber"], "login": "alice"}
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "login", r.text
    r = await client.post(
        f"{API}/accounts/{world['kid']}/services",
        json={"plan_id": world["fiber"], "ipv4_mode": "permanent", "ipv4_address": "192.0.2.50"},
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "ipv4_address", r.text
    assert await database_state(db) == before
    # Unarchiving while another live service took the login: the index answers too.
    r = await client.post(f"{API}/services/{world['alice']}/status", json={"status": "archived"})
    assert r.status_code == 200
    r = await client.post(
        f"{API}/accounts/{world['kid']}/services", json={"plan_id": world["fiber"], "login": "alice"}
    )
    assert r.status_code == 201
    before = await database_state(db)
    r = await client.post(f"{API}/services/{world['alice']}/status", json={"status": "active"})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "login", r.text
    assert await database_state(db) == before
    r = await client.post(
        f"{API}/accounts/{world['kid']}/services", json={"plan_id": world["fiber"], "login": "alice2"}
    )
    assert r.status_code == 201
    # Called from other code (e.g. child connections), the service raises the same error.
    from boughs.kit.errors import Conflict

    with pytest.raises(Conflict) as error:
        async with db.transaction() as session:
            ctx = Ctx(session=session, clock=clock, actor=Actor.system(tenant.provider_id, "tests"))
            await services.create(ctx, world["kid"], ServiceCreate(plan_id=world["fiber"], login="alice"))
    assert error.value.errors[0].field == "login"
