"""Helpers for identity tests: users with passwords and clients without credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from boughs.auth import service as auth
from boughs.auth.actor import StaffRole
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from tests.conftest import Tenant

PASSWORD = "Correct-Horse-42"


@dataclass
class MadeUser:
    id: int
    email: str
    password: str
    token: str


MakeUser = Callable[..., Coroutine[Any, Any, MadeUser]]


@pytest.fixture
def make_user(db: Database, clock: FrozenClock, tenant: Tenant) -> MakeUser:
    async def make(
        email: str, *, staff_role: StaffRole | None = None, password: str = PASSWORD, provider_id: int = 0
    ) -> MadeUser:
        async with db.transaction() as session:
            user = await auth.create_user(
                session,
                provider_id or tenant.provider_id,
                email,
                password,
                clock.now(),
                name=email.split("@")[0],
                staff_role=staff_role,
            )
            issued = await auth.issue_token(session, user, "fixture", clock.now())
            return MadeUser(user.id, user.email, password, issued.token)

    return make


@pytest.fixture
async def anon(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """A client with no credentials (it keeps cookies, like a browser)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stable(problem: dict[str, Any]) -> dict[str, Any]:
    """A problem body without what differs per request."""
    return {k: v for k, v in problem.items() if k not in ("request_id", "instance")}
