from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts.models import Account
from boughs.auth.models import Invitation, User
from boughs.kit.paths import upper_bound
from boughs.memberships.models import Membership


async def grants_of(session: AsyncSession, provider_id: int, user_id: int) -> list[tuple[int, str, str]]:
    """(account id, account path, role) for each of the user's memberships."""
    result = await session.execute(
        select(Account.id, Account.path, Membership.role)
        .join(Account, Account.id == Membership.account_id)
        .where(Membership.provider_id == provider_id, Membership.user_id == user_id)
        .order_by(Account.path)
    )
    return [(r[0], r[1], r[2]) for r in result.all()]


async def limits_under(
    session: AsyncSession, provider_id: int, paths: Sequence[str]
) -> list[tuple[int, str, str]]:
    """(id, path, parent_access) of accounts in these subtrees that narrow their parents' access."""
    if not paths:
        return []
    result = await session.execute(
        select(Account.id, Account.path, Account.parent_access).where(
            Account.provider_id == provider_id,
            Account.parent_access.in_(("view", "none")),
            or_(*(and_(Account.path >= p, Account.path < upper_bound(p)) for p in paths)),
        )
    )
    return [(r[0], r[1], r[2]) for r in result.all()]


async def on_account(
    session: AsyncSession, provider_id: int, account_id: int
) -> list[tuple[Membership, User]]:
    result = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.provider_id == provider_id, Membership.account_id == account_id)
        .order_by(Membership.id)
    )
    return [(r[0], r[1]) for r in result.all()]


async def get(session: AsyncSession, provider_id: int, membership_id: int) -> Membership | None:
    result = await session.execute(
        select(Membership).where(Membership.provider_id == provider_id, Membership.id == membership_id)
    )
    return result.scalar_one_or_none()


async def find(session: AsyncSession, user_id: int, account_id: int) -> Membership | None:
    result = await session.execute(
        select(Membership).where(Membership.user_id == user_id, Membership.account_id == account_id)
    )
    return result.scalar_one_or_none()


async def pending_invitations(
    session: AsyncSession, provider_id: int, account_id: int, now: datetime
) -> list[Invitation]:
    result = await session.execute(
        select(Invitation)
        .where(
            Invitation.provider_id == provider_id,
            Invitation.account_id == account_id,
            Invitation.accepted_at.is_(None),
            Invitation.expires_at > now,
        )
        .order_by(Invitation.id)
    )
    return list(result.scalars())
