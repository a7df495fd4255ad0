"""Invitations: composing and logging the message, and accepting the one-time link."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from boughs.audit.models import AuditEvent
from boughs.auth.invitations import INVITATION_LIFETIME, IssuedInvitation, invite
from boughs.auth.models import Invitation, User
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.kit.errors import InvalidInput, NotFound
from boughs.kit.ids import token_digest
from tests.auth.conftest import PASSWORD, MakeUser, stable

CtxFactory = Callable[..., AbstractAsyncContextManager[Ctx]]


@pytest.fixture
async def account_id(client: httpx.AsyncClient) -> int:
    r = await client.post("/api/v1/accounts", json={"name": "Harbour Flats"})
    assert r.status_code == 201
    return int(r.json()["id"])


@pytest.fixture
async def issued(ctx_factory: CtxFactory, account_id: int) -> AsyncIterator[IssuedInvitation]:
    async with ctx_factory() as ctx:
        result = await invite(ctx, account_id=account_id, email=" Newbie@Example.test ", role="admin")
    yield result


def _accept_path(issued: IssuedInvitation) -> str:
    return f"/api/v1{issued.link}/accept"


async def test_invite_composes_logs_and_audits(
    ctx_factory: CtxFactory,
    account_id: int,
    db: Database,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="boughs.mail")
    async with ctx_factory() as ctx:
        result = await invite(ctx, account_id=account_id, email="Newbie@Example.test", role="billing")
        assert not [r for r in caplog.records if r.name == "boughs.mail"]  # nothing before the commit
    token = result.link.removeprefix("/invitations/")
    assert result.link.startswith("/invitations/") and len(token) >= 40
    row = result.invitation
    assert row.email == "newbie@example.test" and row.role == "billing" and row.account_id == account_id
    assert row.expires_at == clock.now() + INVITATION_LIFETIME == clock.now() + timedelta(days=7)
    assert row.digest == token_digest(token) and token not in row.digest
    assert result.message.to == "newbie@example.test"
    assert "Harbour Flats" in result.message.subject
    assert result.link in result.message.body and "billing" in result.message.body
    text = str(result.message)
    assert "Subject: You are invited to Harbour Flats" in text and "To: newbie@example.test" in text

    mail = [r for r in caplog.records if r.name == "boughs.mail"]
    assert len(mail) == 1 and result.link in mail[0].getMessage()
    async with db.transaction(write=False) as session:
        events = (
            (await session.execute(select(AuditEvent).where(AuditEvent.entity == "invitation")))
            .scalars()
            .all()
        )
    assert [(e.action, e.account_id, e.entity_id) for e in events] == [("created", account_id, str(row.id))]
    assert token not in str(events[0].after)


async def test_invite_refuses_unknown_roles_and_accounts(ctx_factory: CtxFactory, account_id: int) -> None:
    async with ctx_factory() as ctx:
        with pytest.raises(InvalidInput) as bad_role:
            await invite(ctx, account_id=account_id, email="a@example.test", role="overlord")
        assert bad_role.value.errors[0].field == "role"
        with pytest.raises(NotFound):
            await invite(ctx, account_id=account_id + 999, email="a@example.test", role="viewer")
        with pytest.raises(InvalidInput) as bad_email:
            await invite(ctx, account_id=account_id, email="not-an-email", role="viewer")
        assert bad_email.value.errors[0].field == "email"


async def test_unknown_link_is_404_and_says_what_to_do(anon: httpx.AsyncClient) -> None:
    r = await anon.post("/api/v1/invitations/nope/accept", json={"name": "N", "password": PASSWORD})
    assert r.status_code == 404
    assert "new invitation" in r.json()["fix"]


async def test_expired_link_is_410_and_changes_nothing(
    anon: httpx.AsyncClient, issued: IssuedInvitation, clock: FrozenClock, db: Database
) -> None:
    clock.advance(INVITATION_LIFETIME)
    r = await anon.post(_accept_path(issued), json={"name": "New Bie", "password": PASSWORD})
    assert r.status_code == 410
    assert "expired" in r.json()["detail"] and "new invitation" in r.json()["fix"]
    async with db.transaction(write=False) as session:
        assert (
            await session.execute(select(User).where(User.email == "newbie@example.test"))
        ).first() is None


async def test_weak_password_on_accept_spends_nothing(
    anon: httpx.AsyncClient, issued: IssuedInvitation, db: Database
) -> None:
    r = await anon.post(_accept_path(issued), json={"name": "New Bie", "password": "password"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "password"
    async with db.transaction(write=False) as session:
        row = (await session.execute(select(Invitation))).scalar_one()
    assert row.accepted_at is None


async def _membership_roles(db: Database, user_id: int) -> list[tuple[int, str]]:
    from boughs.memberships.models import Membership

    async with db.transaction(write=False) as session:
        rows = (
            (await session.execute(select(Membership).where(Membership.user_id == user_id))).scalars().all()
        )
    return [(m.account_id, m.role) for m in rows]


async def test_accept_creates_the_user_and_membership_once(
    anon: httpx.AsyncClient, issued: IssuedInvitation, db: Database, account_id: int
) -> None:
    r = await anon.post(_accept_path(issued), json={"name": "New Bie", "password": PASSWORD})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["email"] == "newbie@example.test" and body["created_user"] is True
    assert body["account_id"] == account_id and body["role"] == "admin"
    assert await _membership_roles(db, body["user_id"]) == [(account_id, "admin")]
    # The new user can sign in with the password they chose.
    token = await anon.post(
        "/api/v1/auth/tokens", json={"email": "newbie@example.test", "password": PASSWORD, "name": "t"}
    )
    assert token.status_code == 201

    again = await anon.post(_accept_path(issued), json={"name": "Someone Else", "password": "Other-Pass-123"})
    assert again.status_code == 410
    assert "already been accepted" in again.json()["detail"]
    async with db.transaction(write=False) as session:
        users = (
            (await session.execute(select(User).where(User.email == "newbie@example.test"))).scalars().all()
        )
        assert [u.name for u in users] == ["New Bie"]
        events = (
            (await session.execute(select(AuditEvent).where(AuditEvent.action == "accepted"))).scalars().all()
        )
        assert len(events) == 1 and events[0].actor_user_id == body["user_id"]


async def test_existing_user_accepts_with_their_own_password(
    anon: httpx.AsyncClient, ctx_factory: CtxFactory, account_id: int, make_user: MakeUser, db: Database
) -> None:
    ana = await make_user("ana@example.test")
    async with ctx_factory() as ctx:
        result = await invite(ctx, account_id=account_id, email="ana@example.test", role="viewer")

    wrong = await anon.post(_accept_path(result), json={"name": "", "password": "Not-Anas-123"})
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "password"
    assert await _membership_roles(db, ana.id) == []

    ok = await anon.post(_accept_path(result), json={"name": "Ignored", "password": PASSWORD})
    assert ok.status_code == 200, ok.text
    assert ok.json()["user_id"] == ana.id and ok.json()["created_user"] is False
    assert await _membership_roles(db, ana.id) == [(account_id, "viewer")]
    async with db.transaction(write=False) as session:
        user = (await session.execute(select(User).where(User.id == ana.id))).scalar_one()
    assert user.name == "ana"


async def test_unknown_links_answer_alike(anon: httpx.AsyncClient, issued: IssuedInvitation) -> None:
    a = await anon.post("/api/v1/invitations/unknown-1/accept", json={"password": PASSWORD})
    b = await anon.post("/api/v1/invitations/unknown-2/accept", json={"password": PASSWORD})
    assert a.status_code == b.status_code == 404
    assert stable(a.json()) == stable(b.json())
