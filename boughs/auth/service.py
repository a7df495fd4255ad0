"""Providers, users and API tokens: just enough identity to scope every request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.audit import service as audit
from boughs.auth import repository, throttle
from boughs.auth.actor import Actor, StaffRole
from boughs.auth.models import ApiToken, User
from boughs.auth.passwords import check_password_strength, dummy_verify, hash_password, verify_password
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import Clock
from boughs.kit.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
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


def actor_for(user: User) -> Actor:
    return Actor(
        provider_id=user.provider_id,
        label=f"user:{user.email}",
        user_id=user.id,
        staff_role=user.staff_role,
    )


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def password_matches(password_hash: str | None, password: str) -> bool:
    """Argon2 off the event loop; with no hash, a dummy verify so timing does not tell."""
    if not password_hash:
        await anyio.to_thread.run_sync(dummy_verify, password)
        return False
    return await anyio.to_thread.run_sync(verify_password, password_hash, password)


def bad_credentials() -> Unauthorized:
    # One answer for an unknown email, a wrong password and a disabled user.
    return Unauthorized(
        detail="The email or password is not right.",
        fix=(
            f"check both and try again; after {throttle.MAX_PER_EMAIL} failures in "
            f"{int(throttle.WINDOW.total_seconds() // 60)} minutes sign-in pauses"
        ),
    )


async def sign_in(db: Database, clock: Clock, email: str, password: str, address: str) -> User:
    """Check an email and password, throttled per email and per client address.

    The password is verified outside any transaction (argon2 takes tens of milliseconds
    and must not hold SQLite's write lock); a failure is recorded in its own transaction
    so it counts even though the request fails.
    """
    email = normalize_email(email)
    now = clock.now()
    async with db.transaction(write=False) as session:
        await throttle.check(session, email, address, now)
        user = await repository.user_by_email(session, email)
    usable = user is not None and user.is_active
    ok = await password_matches(user.password_hash if user is not None and usable else None, password)
    if not ok or user is None:
        async with db.transaction() as session:
            provider_id = user.provider_id if user is not None else None
            await throttle.record_failure(session, email, address, provider_id, now)
        raise bad_credentials()
    return user


async def create_token_for(ctx: Ctx, user: User, name: str, expires_at: datetime | None) -> IssuedToken:
    if expires_at is not None and expires_at <= ctx.now():
        raise InvalidInput.on_field("expires_at", "is in the past", "give a future time, or none")
    issued = await issue_token(ctx.session, user, name, ctx.now(), expires_at)
    await audit.record(
        ctx,
        entity="api_token",
        entity_id=issued.row.id,
        action="created",
        account_id=None,
        after={"name": issued.row.name, "hint": issued.row.hint, "expires_at": expires_at},
    )
    return issued


async def current_user(ctx: Ctx) -> User:
    if ctx.actor.user_id is None:
        raise NotFound(detail="This request does not act as a user.")
    user = await repository.user_by_id(ctx.session, ctx.provider_id, ctx.actor.user_id)
    if user is None:
        raise NotFound(detail="The user behind this request no longer exists.")
    return user


async def my_tokens(ctx: Ctx) -> list[ApiToken]:
    user = await current_user(ctx)
    return await repository.tokens_of(ctx.session, user.provider_id, user.id)


async def revoke_my_token(ctx: Ctx, token_id: int) -> ApiToken:
    user = await current_user(ctx)
    row = await repository.token_of(ctx.session, user.provider_id, user.id, token_id)
    if row is None:
        raise NotFound(
            detail=f"You have no API token {token_id}.",
            fix="list your tokens with GET /api/v1/me/tokens",
        )
    if row.revoked_at is None:
        row.revoked_at = ctx.now()
        await ctx.session.flush()
        await audit.record(
            ctx,
            entity="api_token",
            entity_id=row.id,
            action="revoked",
            account_id=None,
            before={"revoked_at": None},
            after={"revoked_at": row.revoked_at},
        )
    return row


async def change_password(ctx: Ctx, current_password: str, new_password: str) -> None:
    user = await current_user(ctx)
    check_password_strength(new_password, field="new_password")
    if not await password_matches(user.password_hash, current_password):
        raise InvalidInput.on_field(
            "current_password",
            "is not your current password",
            "type the password you use now; if you forgot it, ask an administrator",
        )
    if current_password == new_password:
        raise InvalidInput.on_field(
            "new_password", "is the same as the current password", "choose a different password"
        )
    user.password_hash = hash_password(new_password)
    user.updated_at = ctx.now()
    await ctx.session.flush()
    # The hash is never written to the audit trail: that the password changed is enough.
    await audit.record(
        ctx,
        entity="user",
        entity_id=user.id,
        action="password_changed",
        account_id=None,
        after={"password": "changed"},
    )


# Which staff roles each staff role may hand out when creating a user.
GRANTABLE_STAFF_ROLES: dict[str, frozenset[StaffRole]] = {
    StaffRole.owner: frozenset(StaffRole),
    StaffRole.admin: frozenset({StaffRole.admin, StaffRole.billing, StaffRole.support}),
}


async def create_user_as_staff(
    ctx: Ctx,
    *,
    email: str,
    name: str,
    password: str | None,
    staff_role: StaffRole | None,
) -> User:
    grantable = GRANTABLE_STAFF_ROLES.get(ctx.actor.staff_role or "")
    if grantable is None:
        raise Forbidden(
            detail="Only provider staff with the owner or admin role may create users.",
            fix="ask an owner or admin of the provider, or invite the person to an account",
        )
    if staff_role is not None and staff_role not in grantable:
        raise Forbidden.on_field(
            "staff_role",
            f"cannot be {staff_role.value}: a staff {ctx.actor.staff_role} may not give that role",
            f"give one of {', '.join(sorted(r.value for r in grantable))}, or ask an owner",
        )
    user = await create_user(
        ctx.session,
        ctx.provider_id,
        email,
        password,
        ctx.now(),
        name=name,
        staff_role=staff_role,
    )
    await audit.record(
        ctx,
        entity="user",
        entity_id=user.id,
        action="created",
        account_id=None,
        after={
            "email": user.email,
            "name": user.name,
            "staff_role": user.staff_role,
            "has_password": user.password_hash is not None,
        },
    )
    return user
