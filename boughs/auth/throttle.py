"""Login throttling: too many failed passwords per email or per client address → 429.

Failures are rows in ``login_failures`` so every server process counts the same ones.
An email without a user is counted exactly like one with a user, so throttling never
reveals which emails exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.auth.models import LoginFailure
from boughs.kit.errors import BoughsError

WINDOW = timedelta(minutes=15)
MAX_PER_EMAIL = 5
MAX_PER_ADDRESS = 20


class TooManyAttempts(BoughsError):
    status = 429
    slug = "too-many-attempts"
    title = "Too many failed attempts"

    @property
    def retry_after(self) -> int:
        return int(self.extra.get("retry_after", 60))


@dataclass(frozen=True)
class Limit:
    column: str
    value: str
    maximum: int


async def _blocked_until(session: AsyncSession, limit: Limit, now: datetime) -> datetime | None:
    """When the oldest failure that keeps this key at its limit leaves the window, or None."""
    column = getattr(LoginFailure, limit.column)
    stmt = (
        select(LoginFailure.created_at)
        .where(column == limit.value, LoginFailure.created_at > now - WINDOW)
        .order_by(LoginFailure.created_at.desc())
        .offset(limit.maximum - 1)
        .limit(1)
    )
    moment = (await session.execute(stmt)).scalar_one_or_none()
    return moment + WINDOW if moment is not None else None


def _limits(email: str, address: str) -> list[Limit]:
    return [Limit("email", email, MAX_PER_EMAIL), Limit("address", address, MAX_PER_ADDRESS)]


async def check(session: AsyncSession, email: str, address: str, now: datetime) -> None:
    """Refuse the attempt (before any password is checked) when either key is at its limit."""
    until: datetime | None = None
    for limit in _limits(email, address):
        blocked = await _blocked_until(session, limit, now)
        if blocked is not None and (until is None or blocked > until):
            until = blocked
    if until is not None:
        seconds = max(1, math.ceil((until - now).total_seconds()))
        raise TooManyAttempts(
            detail="Too many failed sign-in attempts; sign-in is paused for a while.",
            fix=f"wait {seconds} seconds (see Retry-After) and try again, or reset the password",
            extra={"retry_after": seconds},
        )


async def record_failure(
    session: AsyncSession, email: str, address: str, provider_id: int | None, now: datetime
) -> None:
    session.add(LoginFailure(provider_id=provider_id, email=email, address=address[:64], created_at=now))
    # Rows older than the window count for nothing: drop them as we go.
    await session.execute(delete(LoginFailure).where(LoginFailure.created_at <= now - WINDOW))
    await session.flush()


async def clear_email(session: AsyncSession, email: str) -> None:
    """A successful sign-in forgives that email's failures (not the address's)."""
    await session.execute(delete(LoginFailure).where(LoginFailure.email == email))


async def count(session: AsyncSession, *, email: str | None = None, address: str | None = None) -> int:
    stmt = select(func.count()).select_from(LoginFailure)
    if email is not None:
        stmt = stmt.where(LoginFailure.email == email)
    if address is not None:
        stmt = stmt.where(LoginFailure.address == address)
    return int((await session.execute(stmt)).scalar_one())
