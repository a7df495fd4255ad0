"""API tokens, /me and password change, through the HTTP API."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select

from boughs.audit.models import AuditEvent
from boughs.auth.models import ApiToken
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from tests.auth.conftest import PASSWORD, MakeUser, bearer, stable
from tests.conftest import Tenant


async def test_token_is_shown_once_and_works(
    anon: httpx.AsyncClient, make_user: MakeUser, tenant: Tenant
) -> None:
    ana = await make_user("Ana@Example.test")
    r = await anon.post(
        "/api/v1/auth/tokens", json={"email": "ana@example.test", "password": PASSWORD, "name": "laptop"}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"token", "id", "name", "expires_at"}
    assert body["name"] == "laptop" and body["expires_at"] is None
    token = body["token"]

    me = await anon.get("/api/v1/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json() == {
        "id": ana.id,
        "email": "ana@example.test",
        "name": "Ana",
        "staff_role": None,
        "provider_id": tenant.provider_id,
    }

    listed = await anon.get("/api/v1/me/tokens", headers=bearer(token))
    assert listed.status_code == 200
    rows = listed.json()
    assert [t["name"] for t in rows] == ["fixture", "laptop"]
    assert token not in listed.text and ana.token not in listed.text
    assert all("token" not in t and "digest" not in t for t in rows)
    assert rows[1]["hint"] == token[-4:]
    assert rows[1]["last_used_at"] is not None  # used by the two requests above
    assert rows[0]["last_used_at"] is None


async def test_me_for_the_provider_owner(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.get("/api/v1/me")
    assert r.json()["staff_role"] == "owner"
    assert r.json()["email"] == tenant.owner_email


async def test_revoked_token_gets_401(
    anon: httpx.AsyncClient, make_user: MakeUser, db: Database, tenant: Tenant
) -> None:
    ana = await make_user("ana@example.test")
    tokens = (await anon.get("/api/v1/me/tokens", headers=bearer(ana.token))).json()
    r = await anon.delete(f"/api/v1/me/tokens/{tokens[0]['id']}", headers=bearer(ana.token))
    assert r.status_code == 204
    after = await anon.get("/api/v1/me", headers=bearer(ana.token))
    assert after.status_code == 401
    assert after.headers["content-type"].startswith("application/problem+json")
    async with db.transaction(write=False) as session:
        row = (await session.execute(select(ApiToken).where(ApiToken.id == tokens[0]["id"]))).scalar_one()
        assert row.revoked_at is not None
        events = (
            (await session.execute(select(AuditEvent).where(AuditEvent.entity == "api_token")))
            .scalars()
            .all()
        )
        assert [e.action for e in events] == ["revoked"]


async def test_cannot_revoke_someone_elses_token(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, make_user: MakeUser
) -> None:
    ana = await make_user("ana@example.test")
    ana_tokens = (await anon.get("/api/v1/me/tokens", headers=bearer(ana.token))).json()
    r = await client.delete(f"/api/v1/me/tokens/{ana_tokens[0]['id']}")
    assert r.status_code == 404
    assert (await anon.get("/api/v1/me", headers=bearer(ana.token))).status_code == 200


async def test_expired_token_gets_401(
    anon: httpx.AsyncClient, make_user: MakeUser, clock: FrozenClock
) -> None:
    await make_user("ana@example.test")
    expires = (clock.now() + timedelta(hours=1)).isoformat()
    r = await anon.post(
        "/api/v1/auth/tokens",
        json={"email": "ana@example.test", "password": PASSWORD, "name": "short", "expires_at": expires},
    )
    assert r.status_code == 201
    token = r.json()["token"]
    assert (await anon.get("/api/v1/me", headers=bearer(token))).status_code == 200
    clock.advance(timedelta(hours=1))
    r = await anon.get("/api/v1/me", headers=bearer(token))
    assert r.status_code == 401
    assert "expired" in r.json()["detail"]


async def test_token_expiring_in_the_past_is_refused(
    anon: httpx.AsyncClient, make_user: MakeUser, clock: FrozenClock
) -> None:
    await make_user("ana@example.test")
    r = await anon.post(
        "/api/v1/auth/tokens",
        json={
            "email": "ana@example.test",
            "password": PASSWORD,
            "name": "old",
            "expires_at": (clock.now() - timedelta(seconds=1)).isoformat(),
        },
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "expires_at"


async def test_wrong_password_and_unknown_email_answer_alike(
    anon: httpx.AsyncClient, make_user: MakeUser
) -> None:
    await make_user("ana@example.test")
    wrong = await anon.post(
        "/api/v1/auth/tokens", json={"email": "ana@example.test", "password": "Nope-nope-1", "name": "x"}
    )
    unknown = await anon.post(
        "/api/v1/auth/tokens", json={"email": "nobody@example.test", "password": "Nope-nope-1", "name": "x"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert stable(wrong.json()) == stable(unknown.json())
    assert "token" not in wrong.json()


async def test_password_change(anon: httpx.AsyncClient, make_user: MakeUser, db: Database) -> None:
    ana = await make_user("ana@example.test")
    h = bearer(ana.token)

    weak = await anon.post(
        "/api/v1/me/password", headers=h, json={"current_password": PASSWORD, "new_password": "short"}
    )
    assert weak.status_code == 422
    assert weak.json()["errors"][0]["field"] == "new_password"

    guessable = await anon.post(
        "/api/v1/me/password", headers=h, json={"current_password": PASSWORD, "new_password": "abcdefghijkl"}
    )
    assert guessable.status_code == 422
    assert guessable.json()["errors"][0]["field"] == "new_password"

    wrong = await anon.post(
        "/api/v1/me/password",
        headers=h,
        json={"current_password": "Not-It-123", "new_password": "New-Pass-7788"},
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "current_password"
    assert "not your current password" in wrong.json()["detail"]

    ok = await anon.post(
        "/api/v1/me/password",
        headers=h,
        json={"current_password": PASSWORD, "new_password": " New-Pass-7788 "},
    )
    assert ok.status_code == 204
    # Nothing is revoked: the token in use still works.
    assert (await anon.get("/api/v1/me", headers=h)).status_code == 200
    old = await anon.post("/api/v1/auth/tokens", json={"email": ana.email, "password": PASSWORD, "name": "x"})
    assert old.status_code == 401
    # Spaces are part of a password: it was stored as given.
    stripped = await anon.post(
        "/api/v1/auth/tokens", json={"email": ana.email, "password": "New-Pass-7788", "name": "x"}
    )
    assert stripped.status_code == 401
    new = await anon.post(
        "/api/v1/auth/tokens", json={"email": ana.email, "password": " New-Pass-7788 ", "name": "x"}
    )
    assert new.status_code == 201
    async with db.transaction(write=False) as session:
        events = (
            (await session.execute(select(AuditEvent).where(AuditEvent.action == "password_changed")))
            .scalars()
            .all()
        )
        assert len(events) == 1
        assert events[0].actor_user_id == ana.id
        assert "New-Pass" not in str(events[0].after)


async def test_me_needs_credentials(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/api/v1/me")
    assert r.status_code == 401
    assert (await anon.get("/api/v1/me", headers=bearer("bgh_not-a-token"))).status_code == 401
