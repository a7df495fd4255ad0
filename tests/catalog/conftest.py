"""A small tree with members at several levels, and helpers to fill the catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest

from boughs.auth import service as auth
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.memberships.models import Membership
from boughs.services.models import Service
from tests.conftest import Tenant

PLANS = "/api/v1/plans"
PROBLEM = "application/problem+json"


@dataclass
class World:
    """Root > A > A1, Root > B, and Other at the top. Members named role_account."""

    ids: dict[str, int]
    clients: dict[str, httpx.AsyncClient]
    staff: httpx.AsyncClient
    db: Database
    clock: FrozenClock
    tenant: Tenant

    def __getitem__(self, name: str) -> httpx.AsyncClient:
        return self.clients[name]

    async def plan(self, name: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, "kind": "internet", "price_amount": 2500, **fields}
        r = await self.staff.post(PLANS, json=body)
        assert r.status_code == 201, r.text
        return r.json()

    async def offer(
        self, plan_id: int, account: str, client: httpx.AsyncClient | None = None
    ) -> httpx.Response:
        return await (client or self.staff).post(
            f"{PLANS}/{plan_id}/offers", json={"account_id": self.ids[account]}
        )

    async def create(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.staff.post(url, json=body)
        assert r.status_code == 201, r.text
        return r.json()

    async def service_on(self, account: str, plan_id: int, **fields: Any) -> int:
        """A service row as the services domain would write it."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            service = Service(
                provider_id=self.tenant.provider_id,
                account_id=self.ids[account],
                plan_id=plan_id,
                start_date=date(2026, 1, 1),
                status=fields.pop("status", "active"),
                status_changed_at=now,
                created_at=now,
                updated_at=now,
                **fields,
            )
            session.add(service)
            await session.flush()
            return service.id


async def _user(db: Database, clock: FrozenClock, tenant: Tenant, name: str, grants: dict[int, str]) -> str:
    async with db.transaction() as session:
        user = await auth.create_user(
            session, tenant.provider_id, f"{name}@catalog.example", None, clock.now()
        )
        for account_id, role in grants.items():
            session.add(
                Membership(
                    provider_id=tenant.provider_id, user_id=user.id, account_id=account_id,
                    role=role, created_at=clock.now(),
                )
            )  # fmt: skip
        return (await auth.issue_token(session, user, "tests", clock.now())).token


@pytest.fixture
async def world(  # type: ignore[no-untyped-def]
    app, db: Database, clock: FrozenClock, tenant: Tenant, client: httpx.AsyncClient
) -> AsyncIterator[World]:
    ids: dict[str, int] = {}

    async def make(name: str, parent: str | None = None, **extra: object) -> None:
        body = {"name": name, "parent_id": ids[parent] if parent else None, **extra}
        r = await client.post("/api/v1/accounts", json=body)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]

    await make("Root", features={"subaccounts": True})
    await make("A", "Root", features={"subaccounts": True})
    await make("A1", "A")
    await make("B", "Root")
    await make("Other")
    people = {
        "admin_root": {ids["Root"]: "admin"},
        "viewer_root": {ids["Root"]: "viewer"},
        "admin_a": {ids["A"]: "admin"},
        "technical_a": {ids["A"]: "technical"},
        "admin_a1": {ids["A1"]: "admin"},
        "admin_b": {ids["B"]: "admin"},
        "nobody": {},
    }
    clients: dict[str, httpx.AsyncClient] = {}
    transport = httpx.ASGITransport(app=app)
    for name, grants in people.items():
        token = await _user(db, clock, tenant, name, grants)
        clients[name] = httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"Authorization": f"Bearer {token}"}
        )
    yield World(ids, clients, client, db, clock, tenant)
    for c in clients.values():
        await c.aclose()


def names(r: httpx.Response) -> set[str]:
    assert r.status_code == 200, r.text
    return {item["name"] for item in r.json()["items"]}


def field_error(r: httpx.Response, status: int, field: str) -> dict[str, Any]:
    """The problem names the field, says what was wrong and how to fix it."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    errors = {e["field"]: e for e in r.json().get("errors", [])}
    assert field in errors, r.json()
    assert errors[field]["message"]
    assert errors[field].get("fix"), r.json()
    return errors[field]
