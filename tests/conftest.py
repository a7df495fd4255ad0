"""Every test that touches storage runs on SQLite and on PostgreSQL.

Each run makes its own PostgreSQL database (dropped at the end) and a migrated SQLite
template that every test copies, so runs never collide and each test starts empty.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from boughs.app import create_app
from boughs.auth import service as auth
from boughs.auth.actor import Actor, StaffRole
from boughs.config import Settings
from boughs.context import Ctx
from boughs.db import Base, Database
from boughs.kit.clock import FrozenClock
from boughs.schema import upgrade

REQUIRE_ALL = os.environ.get("BOUGHS_REQUIRE_ALL") == "1"
POSTGRES_URL = os.environ.get("BOUGHS_TEST_POSTGRES_URL")
START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def missing(component: str, reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where everything must be present."""
    if REQUIRE_ALL:
        pytest.fail(f"{component} is required (BOUGHS_REQUIRE_ALL=1): {reason}")
    pytest.skip(f"{component} not available: {reason}")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str | None]:
    if not POSTGRES_URL:
        yield None
        return
    admin_url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    name = f"boughs_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "boughs.sqlite3"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("postgres_database")
    if url is None:
        missing("PostgreSQL", "set BOUGHS_TEST_POSTGRES_URL to run the PostgreSQL half")
    _truncate_postgres(url)
    return str(url)


@pytest.fixture
def engine_name(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, embedded_worker=False)


@dataclass
class Tenant:
    provider_id: int
    owner_id: int
    owner_email: str
    token: str

    def actor(self) -> Actor:
        return Actor(
            provider_id=self.provider_id,
            label=f"user:{self.owner_email}",
            user_id=self.owner_id,
            staff_role=StaffRole.owner,
        )


async def make_tenant(db: Database, clock: FrozenClock, name: str = "Test ISP") -> Tenant:
    async with db.transaction() as session:
        from boughs.providers.models import Provider

        provider = Provider(
            name=name, default_timezone="UTC", default_currency="USD",
            created_at=clock.now(), updated_at=clock.now(),
        )  # fmt: skip
        session.add(provider)
        await session.flush()
        email = f"owner-{uuid.uuid4().hex[:6]}@{name.lower().replace(' ', '-')}.test"
        owner = await auth.create_user(
            session, provider.id, email, None, clock.now(),
            staff_role=StaffRole.owner,
        )  # fmt: skip
        issued = await auth.issue_token(session, owner, "tests", clock.now())
        return Tenant(provider.id, owner.id, email, issued.token)


@pytest.fixture
async def tenant(db: Database, clock: FrozenClock) -> Tenant:
    return await make_tenant(db, clock)


@pytest.fixture
async def ctx_factory(db: Database, clock: FrozenClock, tenant: Tenant):  # type: ignore[no-untyped-def]
    """Run service code in a committed unit of work, as the tenant's owner."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def factory(actor: Actor | None = None) -> AsyncIterator[Ctx]:
        async with db.transaction() as session:
            yield Ctx(session=session, clock=clock, actor=actor or tenant.actor())

    return factory


@pytest.fixture
async def app(settings: Settings, db: Database, clock: FrozenClock):  # type: ignore[no-untyped-def]
    return create_app(settings, db=db, clock=clock, check_schema=False, run_jobs=False)


@pytest.fixture
async def client(app, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {tenant.token}"},
    ) as http:
        yield http
