"""Console fixtures: signed-in browsers-as-clients for server-side page tests.

A console client carries a real session cookie (made by the same code the login form
uses) and the session's CSRF token, which ``post`` sends as the form field, like a form.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from boughs.auth import service as auth
from boughs.auth import sessions
from boughs.auth.actor import StaffRole
from boughs.auth.models import User
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from tests.conftest import Tenant

PASSWORD = "Console-Pass-2026"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


class ConsoleClient(httpx.AsyncClient):
    """An httpx client signed in to the console as one user."""

    csrf_token: str = ""
    user_id: int = 0
    email: str = ""

    async def submit(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        """POST a form the way the browser does: urlencoded, with the CSRF field."""
        return await self.post(url, data={"csrf_token": self.csrf_token, **(data or {})}, **kwargs)

    async def htmx(self, method: str, url: str, data: dict[str, Any] | None = None) -> httpx.Response:
        """A request the way HTMX sends it: HX-Request and the CSRF header."""
        headers = {"HX-Request": "true", "X-CSRF-Token": self.csrf_token}
        return await self.request(method, url, data=data, headers=headers)


SignIn = Callable[..., Coroutine[Any, Any, ConsoleClient]]


@dataclass
class ConsoleUser:
    id: int
    email: str
    password: str


MakeConsoleUser = Callable[..., Coroutine[Any, Any, ConsoleUser]]


@pytest.fixture
def make_console_user(db: Database, clock: FrozenClock, tenant: Tenant) -> MakeConsoleUser:
    async def make(
        email: str, *, staff_role: StaffRole | None = None, password: str = PASSWORD
    ) -> ConsoleUser:
        async with db.transaction() as session:
            user = await auth.create_user(
                session, tenant.provider_id, email, password, clock.now(),
                name=email.split("@")[0], staff_role=staff_role,
            )  # fmt: skip
            return ConsoleUser(user.id, user.email, password)

    return make


@pytest.fixture
async def sign_in(app: Any, db: Database, clock: FrozenClock) -> AsyncIterator[SignIn]:
    """``await sign_in(user_id)`` → a ConsoleClient with that user's fresh session."""
    opened: list[ConsoleClient] = []

    async def open_for(user_id: int) -> ConsoleClient:
        async with db.transaction() as session:
            user = await session.get(User, user_id)
            assert user is not None
            issued = await sessions.start(session, user, clock.now())
        client = ConsoleClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        client.cookies.set(sessions.SESSION_COOKIE, issued.cookie)
        client.csrf_token = issued.row.csrf_token
        client.user_id = user.id
        client.email = user.email
        opened.append(client)
        return client

    yield open_for
    for client in opened:
        await client.aclose()


@pytest.fixture
async def owner_console(sign_in: SignIn, tenant: Tenant) -> ConsoleClient:
    """The provider's owner, signed in to the console."""
    return await sign_in(tenant.owner_id)


def csrf_of(html: str) -> str:
    found = CSRF_META.search(html)
    assert found, "the page carries no CSRF meta tag"
    return found.group(1)


@pytest.fixture
async def browser(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no session yet that keeps cookies, like a browser."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


# The browser journeys' fixtures live beside them.
from tests.console.live import browser_page, chromium, live_server  # noqa: E402, F401
