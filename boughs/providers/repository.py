from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts.models import Account
from boughs.providers.models import Provider

_BY_ID = select(Provider).where(Provider.id == bindparam("provider_id"))


async def get(session: AsyncSession, provider_id: int) -> Provider:
    result = await session.execute(_BY_ID, {"provider_id": provider_id})
    return result.scalar_one()


async def first(session: AsyncSession) -> Provider | None:
    result = await session.execute(select(Provider).order_by(Provider.id).limit(1))
    return result.scalar_one_or_none()


async def all_ids(session: AsyncSession) -> list[int]:
    result = await session.execute(select(Provider.id).order_by(Provider.id))
    return list(result.scalars())


async def deepest_account(session: AsyncSession, provider_id: int) -> int | None:
    return await session.scalar(select(func.max(Account.depth)).where(Account.provider_id == provider_id))
