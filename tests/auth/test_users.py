"""POST /api/v1/users: staff owners and admins create users; staff roles only as far as they may."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from boughs.audit.models import AuditEvent
from boughs.auth.actor import StaffRole
from boughs.auth.models import User
from boughs.db import Database
from tests.auth.conftest import PASSWORD, MakeUser, bearer


async def _users(db: Database) -> int:
    async with db.transaction(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(User))).scalar_one())


async def test_owner_creates_any_staff_role_and_it_is_audited(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, db: Database
) -> None:
    r = await client.post(
        "/api/v1/users",
        json={"email": "Boss2@Example.com", "name": "Boss", "password": PASSWORD, "staff_role": "owner"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["email"] == "boss2@example.com" and body["staff_role"] == "owner"
    assert r.headers["location"] == f"/api/v1/users/{body['id']}"
    assert "password" not in body and "password_hash" not in body
    token = await anon.post(
        "/api/v1/auth/tokens", json={"email": "boss2@example.com", "password": PASSWORD, "name": "t"}
    )
    assert token.status_code == 201
    async with db.transaction(write=False) as session:
        events = (
            (await session.execute(select(AuditEvent).where(AuditEvent.entity == "user"))).scalars().all()
        )
    assert [(e.action, e.entity_id, e.after["staff_role"]) for e in events] == [
        ("created", str(body["id"]), "owner")
    ]
    assert PASSWORD not in str(events[0].after)


async def test_user_without_password_or_role(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/users", json={"email": "plain@example.com", "name": "Plain"})
    assert r.status_code == 201
    assert r.json()["staff_role"] is None


@pytest.mark.parametrize("role", ["admin", "billing", "support"])
async def test_admin_may_give_lesser_roles(anon: httpx.AsyncClient, make_user: MakeUser, role: str) -> None:
    admin = await make_user("admin@example.com", staff_role=StaffRole.admin)
    r = await anon.post(
        "/api/v1/users",
        headers=bearer(admin.token),
        json={"email": f"new-{role}@example.com", "staff_role": role},
    )
    assert r.status_code == 201
    assert r.json()["staff_role"] == role


async def test_admin_cannot_make_an_owner(anon: httpx.AsyncClient, make_user: MakeUser, db: Database) -> None:
    admin = await make_user("admin@example.com", staff_role=StaffRole.admin)
    before = await _users(db)
    r = await anon.post(
        "/api/v1/users", headers=bearer(admin.token), json={"email": "x@example.com", "staff_role": "owner"}
    )
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "staff_role"
    assert await _users(db) == before


@pytest.mark.parametrize("role", [StaffRole.billing, StaffRole.support, None])
async def test_others_cannot_create_users(
    anon: httpx.AsyncClient, make_user: MakeUser, db: Database, role: StaffRole | None
) -> None:
    someone = await make_user("someone@example.com", staff_role=role)
    before = await _users(db)
    for body in ({"email": "x@example.com"}, {"email": "x@example.com", "staff_role": "support"}):
        r = await anon.post("/api/v1/users", headers=bearer(someone.token), json=body)
        assert r.status_code == 403
        assert "owner or admin" in r.json()["detail"]
    assert await _users(db) == before


async def test_unknown_role_names_the_field(client: httpx.AsyncClient, db: Database) -> None:
    before = await _users(db)
    r = await client.post("/api/v1/users", json={"email": "x@example.com", "staff_role": "superuser"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "staff_role"
    assert await _users(db) == before


async def test_weak_password_and_duplicate_email(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    weak = await client.post("/api/v1/users", json={"email": "x@example.com", "password": "12345678901"})
    assert weak.status_code == 422
    assert weak.json()["errors"][0]["field"] == "password"
    await make_user("ana@example.com")
    dup = await client.post("/api/v1/users", json={"email": "ANA@example.com"})
    assert dup.status_code == 409
    assert dup.json()["errors"][0]["field"] == "email"


async def test_anonymous_cannot_create_users(anon: httpx.AsyncClient) -> None:
    assert (await anon.post("/api/v1/users", json={"email": "x@example.com"})).status_code == 401
