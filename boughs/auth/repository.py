from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.auth.models import ApiToken, User


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email.strip().lower()))
    return result.scalar_one_or_none()


async def user_by_id(session: AsyncSession, provider_id: int, user_id: int) -> User | None:
    result = await session.execute(select(User).where(User.provider_id == provider_id, User.id == user_id))
    return result.scalar_one_or_none()


async def token_with_user(session: AsyncSession, digest: str) -> tuple[ApiToken, User] | None:
    result = await session.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.digest == digest)
    )
    row = result.first()
    return (row[0], row[1]) if row else None


async def tokens_of(session: AsyncSession, provider_id: int, user_id: int) -> list[ApiToken]:
    result = await session.execute(
        select(ApiToken)
        .where(ApiToken.provider_id == provider_id, ApiToken.user_id == user_id)
        .order_by(ApiToken.id)
    )
    return list(result.scalars())


async def token_of(session: AsyncSession, provider_id: int, user_id: int, token_id: int) -> ApiToken | None:
    result = await session.execute(
        select(ApiToken).where(
            ApiToken.provider_id == provider_id, ApiToken.user_id == user_id, ApiToken.id == token_id
        )
    )
    return result.scalar_one_or_none()
