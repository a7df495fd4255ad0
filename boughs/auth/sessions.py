"""Console sessions: a random id in a Secure, HttpOnly, SameSite=Lax cookie; CSRF token per session.

Only the SHA-256 of the cookie's id is stored. Every unsafe request made with the cookie
must carry the session's CSRF token in ``X-CSRF-Token`` (the console puts it in a meta
tag and HTMX sends it), so another site cannot make the browser act for the user.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.auth.actor import Actor
from boughs.auth.models import User, UserSession
from boughs.kit.errors import Forbidden, Unauthorized
from boughs.kit.ids import token_digest

SESSION_COOKIE = "boughs_session"
CSRF_HEADER = "x-csrf-token"
SESSION_LIFETIME = timedelta(hours=12)
# Plain http is only tolerated for a developer's own machine (and the test client).
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "testserver"})


@dataclass(frozen=True)
class IssuedSession:
    cookie: str
    row: UserSession


async def start(session: AsyncSession, user: User, now: datetime) -> IssuedSession:
    cookie = secrets.token_urlsafe(32)
    row = UserSession(
        provider_id=user.provider_id,
        user_id=user.id,
        digest=token_digest(cookie),
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    session.add(row)
    await session.flush()
    return IssuedSession(cookie=cookie, row=row)


def _bad_session() -> Unauthorized:
    return Unauthorized(
        detail="The console session is unknown, signed out or expired.",
        fix="sign in again with POST /api/v1/auth/login",
    )


async def authenticate(
    session: AsyncSession, cookie: str, now: datetime, *, unsafe: bool, csrf_token: str | None
) -> Actor:
    result = await session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.digest == token_digest(cookie))
    )
    found = result.first()
    if found is None:
        raise _bad_session()
    row, user = found
    if row.revoked_at is not None or row.expires_at <= now or not user.is_active:
        raise _bad_session()
    if unsafe and not (csrf_token and hmac.compare_digest(csrf_token.encode(), row.csrf_token.encode())):
        raise Forbidden(
            detail="The request came with the session cookie but without its CSRF token.",
            fix="send the csrf_token returned by POST /api/v1/auth/login in the X-CSRF-Token header",
        )
    return Actor(
        provider_id=user.provider_id,
        label=f"user:{user.email}",
        user_id=user.id,
        staff_role=user.staff_role,
        session_id=row.id,
    )


async def end(session: AsyncSession, session_id: int, now: datetime) -> None:
    await session.execute(
        update(UserSession)
        .where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def cookie_is_secure(request: Request) -> bool:
    return not (request.url.scheme == "http" and (request.url.hostname or "") in _LOCAL_HOSTS)


def set_cookie(response: Response, request: Request, issued: IssuedSession) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        issued.cookie,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/",
        secure=cookie_is_secure(request),
        httponly=True,
        samesite="lax",
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=cookie_is_secure(request), httponly=True, samesite="lax"
    )


async def csrf_token_of(session: AsyncSession, session_id: int) -> str:
    """The CSRF token the console puts in every page of this session."""
    token = await session.scalar(select(UserSession.csrf_token).where(UserSession.id == session_id))
    if token is None:
        raise _bad_session()
    return token
