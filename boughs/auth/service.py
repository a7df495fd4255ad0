"""Providers, users and API tokens: just enough identity to scope every request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from boughs.auth import repository
from boughs.auth.actor import Actor, StaffRole
from boughs.auth.models import ApiToken, User
from boughs.auth.passwords import check_password_strength, hash_password
from boughs.kit.errors import Conflict, InvalidInput, Unauthorized
from boughs.kit.ids import new_token, token_digest
from boughs.providers import repository as providers
from boughs.providers.models import Provider

# Writing last_used_at on every request would turn reads into writes; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _bad_token() -> Unauthorized:
    return Unauthorized(
        detail="The API token is missing, unknown, revoked or expired.",
        fix="send 'Authorization: Bearer <token>' with a live token; `boughs token create` makes one",
    )


async def authenticate(session: AsyncSession, token: str, now: datetime) -> Actor:
    found = await repository.token_with_user(session, token_digest(token))
    if found is None:
        raise _bad_token()
    row, user = found
    if (
        row.revoked_at is not None
        or (row.expires_at is not None and row.expires_at <= now)
        or not user.is_active
    ):
        raise _bad_token()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    return Actor(
        provider_id=user.provider_id,
        label=f"user:{user.email}",
        user_id=user.id,
        staff_role=user.staff_role,
        token_id=row.id,
    )


@dataclass(frozen=True)
class IssuedToken:
    token: str
    row: ApiToken


async def issue_token(
    session: AsyncSession,
    user: User,
    name: str,
    now: datetime,
    expires_at: datetime | None = None,
) -> IssuedToken:
    if not name.strip():
        raise InvalidInput.on_field("name", "is empty", "name the token after what will use it")
    token = new_token()
    row = ApiToken(
        provider_id=user.provider_id,
        user_id=user.id,
        name=name.strip(),
        digest=token_digest(token),
        hint=token[-4:],
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return IssuedToken(token=token, row=row)


async def create_user(
    session: AsyncSession,
    provider_id: int,
    email: str,
    password: str | None,
    now: datetime,
    *,
    name: str = "",
    staff_role: StaffRole | None = None,
) -> User:
    email = email.strip().lower()
    if await repository.user_by_email(session, email) is not None:
        raise Conflict.on_field("email", f"{email} already has a user", "use another email")
    if password is not None:
        check_password_strength(password)
    user = User(
        provider_id=provider_id,
        email=email,
        name=name,
        password_hash=hash_password(password) if password is not None else None,
        staff_role=staff_role.value if staff_role else None,
        is_active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    await session.flush()
    return user


async def ensure_provider(
    session: AsyncSession, name: str, now: datetime, *, timezone: str = "UTC", currency: str = "USD"
) -> Provider:
    """The first provider of an install, created once."""
    existing = await providers.first(session)
    if existing is not None:
        return existing
    provider = Provider(
        name=name,
        default_timezone=timezone,
        default_currency=currency,
        created_at=now,
        updated_at=now,
    )
    session.add(provider)
    await session.flush()
    return provider
