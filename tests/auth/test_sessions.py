"""Console sessions: the cookie, CSRF on unsafe methods, logout and expiry."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select

from boughs.auth.models import UserSession
from boughs.auth.sessions import SESSION_COOKIE, SESSION_LIFETIME
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.kit.ids import token_digest
from tests.auth.conftest import PASSWORD, MakeUser


async def _login(http: httpx.AsyncClient, email: str) -> httpx.Response:
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r


async def test_login_sets_a_safe_cookie_stored_hashed(
    anon: httpx.AsyncClient, make_user: MakeUser, db: Database
) -> None:
    ana = await make_user("ana@example.test")
    r = await _login(anon, ana.email)
    header = r.headers["set-cookie"]
    assert header.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in header and "SameSite=lax" in header and "Path=/" in header
    assert "Secure" not in header  # plain http to testserver is a developer's machine
    cookie = anon.cookies[SESSION_COOKIE]
    csrf = r.json()["csrf_token"]
    assert csrf and csrf != cookie
    async with db.transaction(write=False) as session:
        row = (await session.execute(select(UserSession))).scalar_one()
    assert row.digest == token_digest(cookie) and row.digest != cookie
    assert row.user_id == ana.id and row.csrf_token == csrf and row.revoked_at is None

    me = await anon.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["email"] == ana.email


async def test_cookie_is_secure_off_localhost(app, make_user: MakeUser) -> None:  # type: ignore[no-untyped-def]
    await make_user("ana@example.test")
    for base in ("https://testserver", "http://boughs.example.com"):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as http:
            r = await _login(http, "ana@example.test")
            assert "Secure" in r.headers["set-cookie"], base


async def test_unsafe_methods_need_the_csrf_token(anon: httpx.AsyncClient, make_user: MakeUser) -> None:
    ana = await make_user("ana@example.test")
    csrf = (await _login(anon, ana.email)).json()["csrf_token"]
    tokens = (await anon.get("/api/v1/me/tokens")).json()
    token_id = tokens[0]["id"]

    missing = await anon.delete(f"/api/v1/me/tokens/{token_id}")
    assert missing.status_code == 403
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert "X-CSRF-Token" in missing.json()["fix"]
    wrong = await anon.delete(f"/api/v1/me/tokens/{token_id}", headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    assert (await anon.get("/api/v1/me/tokens")).json()[0]["revoked_at"] is None

    ok = await anon.delete(f"/api/v1/me/tokens/{token_id}", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 204
    assert (await anon.get("/api/v1/me/tokens")).json()[0]["revoked_at"] is not None


async def test_bearer_requests_need_no_csrf_token(anon: httpx.AsyncClient, make_user: MakeUser) -> None:
    ana = await make_user("ana@example.test")
    await _login(anon, ana.email)
    # A Bearer header decides who is asking, even when a session cookie is present.
    r = await anon.post(
        "/api/v1/me/password",
        headers={"Authorization": f"Bearer {ana.token}"},
        json={"current_password": PASSWORD, "new_password": "Another-Pass-99"},
    )
    assert r.status_code == 204
    bad = await anon.get("/api/v1/me", headers={"Authorization": "Bearer bgh_wrong"})
    assert bad.status_code == 401


async def test_logout_ends_the_session(anon: httpx.AsyncClient, make_user: MakeUser, db: Database) -> None:
    ana = await make_user("ana@example.test")
    csrf = (await _login(anon, ana.email)).json()["csrf_token"]
    cookie = anon.cookies[SESSION_COOKIE]
    assert (await anon.post("/api/v1/auth/logout")).status_code == 403  # CSRF applies to logout too
    r = await anon.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204
    assert SESSION_COOKIE not in anon.cookies
    # The old cookie is dead even if a client kept it.
    anon.cookies.set(SESSION_COOKIE, cookie)
    again = await anon.get("/api/v1/me")
    assert again.status_code == 401
    async with db.transaction(write=False) as session:
        row = (await session.execute(select(UserSession))).scalar_one()
    assert row.revoked_at is not None


async def test_logout_with_a_token_says_what_to_do(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/auth/logout")
    assert r.status_code == 409
    assert "/me/tokens" in r.json()["fix"]


async def test_session_expires(anon: httpx.AsyncClient, make_user: MakeUser, clock: FrozenClock) -> None:
    ana = await make_user("ana@example.test")
    await _login(anon, ana.email)
    clock.advance(SESSION_LIFETIME - timedelta(seconds=1))
    assert (await anon.get("/api/v1/me")).status_code == 200
    clock.advance(timedelta(seconds=1))
    assert (await anon.get("/api/v1/me")).status_code == 401


async def test_failed_login_sets_no_cookie(anon: httpx.AsyncClient, make_user: MakeUser) -> None:
    await make_user("ana@example.test")
    r = await anon.post("/api/v1/auth/login", json={"email": "ana@example.test", "password": "Wrong-pass-1"})
    assert r.status_code == 401
    assert "set-cookie" not in r.headers
    assert (await anon.get("/api/v1/me")).status_code == 401
