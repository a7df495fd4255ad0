"""What the child connection and dual device tests stand on: plans, pools, a parent, members.

Catalog rows are written directly: these tests are about connections, not about the
catalog API that makes them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from boughs.auth import service as auth
from boughs.catalog.models import IpPool, Plan
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.memberships.models import Membership
from tests.conftest import Tenant

API = "/api/v1"
POOL_CIDR = "10.20.0.0/24"


@dataclass
class Catalog:
    internet: int  # public, one device
    dual: int  # public, a companion device allowed
    voice: int  # public, not internet
    private: int  # internet, offered to nobody
    pool: int


async def make_catalog(db: Database, clock: FrozenClock, tenant: Tenant) -> Catalog:
    now = clock.now()

    def plan(name: str, kind: str = "internet", public: bool = True, devices: int = 1) -> Plan:
        return Plan(
            provider_id=tenant.provider_id, kind=kind, name=name, price_amount=2_500, currency="USD",
            pay_period="month", public=public, device_allowance=devices,
            download_rate=50_000 if kind == "internet" else None,
            upload_rate=10_000 if kind == "internet" else None,
            created_at=now, updated_at=now,
        )  # fmt: skip

    async with db.transaction() as session:
        rows = [
            plan("Home 50"),
            plan("Hotspot Duo", devices=2),
            plan("Voice", kind="voice"),
            plan("Private 100", public=False),
        ]
        pool = IpPool(
            provider_id=tenant.provider_id, name="Public /24", cidr=POOL_CIDR, kind="permanent",
            owner_account_id=None, shared_with_descendants=False, created_at=now, updated_at=now,
        )  # fmt: skip
        dynamic = IpPool(
            provider_id=tenant.provider_id, name="CGNAT", cidr="100.64.0.0/22", kind="dynamic",
            owner_account_id=None, shared_with_descendants=False, created_at=now, updated_at=now,
        )  # fmt: skip
        session.add_all([*rows, pool, dynamic])
        await session.flush()
        return Catalog(rows[0].id, rows[1].id, rows[2].id, rows[3].id, pool.id)


async def make_account(client: httpx.AsyncClient, name: str, agreements: bool = True, **fields: Any) -> int:
    body: dict[str, Any] = {"name": name, "features": {"subaccounts": True}, **fields}
    r = await client.post(f"{API}/accounts", json=body)
    assert r.status_code == 201, r.text
    account_id = int(r.json()["id"])
    if agreements:
        r = await client.post(f"{API}/accounts/{account_id}/agreements", json={"msa": True, "aup": True})
        assert r.status_code == 200, r.text
    return account_id


def connection(plan_id: int, username: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "label": "Office 2",
        "username": username or f"user-{uuid.uuid4().hex[:8]}",
        "password": "s3cret-pass",
        "plan_id": plan_id,
        "invoice_mode": "with_parent",
        **fields,
    }


async def add_connection(client: httpx.AsyncClient, parent_id: int, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(f"{API}/accounts/{parent_id}/child-connections", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def member_client(
    app: Any, db: Database, clock: FrozenClock, tenant: Tenant, account_id: int, role: str
) -> httpx.AsyncClient:
    """A client acting as a new user holding ``role`` on the account (close it after use)."""
    async with db.transaction() as session:
        user = await auth.create_user(
            session, tenant.provider_id, f"{role}-{uuid.uuid4().hex[:6]}@members.example", None, clock.now()
        )
        session.add(
            Membership(
                provider_id=tenant.provider_id, user_id=user.id, account_id=account_id, role=role,
                created_at=clock.now(),
            )
        )  # fmt: skip
        token = (await auth.issue_token(session, user, "tests", clock.now())).token
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    )


def fields_named(response: httpx.Response) -> list[str]:
    return [e.get("field") for e in response.json().get("errors", [])]
