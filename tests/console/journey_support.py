"""Set-up shared by the browser journeys: a provider with users who have passwords."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from boughs.auth import service as auth
from boughs.auth.actor import Actor, StaffRole
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import SystemClock
from boughs.providers.models import Provider

PASSWORD = "Journey-Pass-2026"


@dataclass
class Staff:
    provider_id: int
    user_id: int
    email: str
    password: str = PASSWORD

    def actor(self) -> Actor:
        return Actor(
            provider_id=self.provider_id, label=f"user:{self.email}", user_id=self.user_id,
            staff_role=StaffRole.owner,
        )  # fmt: skip


async def provider_with_owner(db: Database, name: str = "Journey ISP") -> Staff:
    clock = SystemClock()
    async with db.transaction() as session:
        provider = Provider(
            name=name, default_timezone="UTC", default_currency="USD",
            created_at=clock.now(), updated_at=clock.now(),
        )  # fmt: skip
        session.add(provider)
        await session.flush()
        email = f"owner-{uuid.uuid4().hex[:6]}@journey.test"
        user = await auth.create_user(
            session, provider.id, email, PASSWORD, clock.now(), name="Olive Owner", staff_role=StaffRole.owner
        )
        return Staff(provider.id, user.id, email)


async def add_user(db: Database, provider_id: int, email: str, staff_role: StaffRole | None = None) -> int:
    clock = SystemClock()
    async with db.transaction() as session:
        user = await auth.create_user(
            session,
            provider_id,
            email,
            PASSWORD,
            clock.now(),
            name=email.split("@")[0],
            staff_role=staff_role,
        )
        return user.id


def ctx_for(session, actor: Actor) -> Ctx:  # type: ignore[no-untyped-def]
    return Ctx(session=session, clock=SystemClock(), actor=actor)
