"""Schema upgrades and the start-up check that the schema matches the code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from boughs.db import sync_url
from boughs.kit.errors import SchemaOutOfDate

ROOT = Path(__file__).resolve().parent.parent
UPGRADE_HINT = "run `boughs db upgrade` (or `make run`, which does it for you)"


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def _prepare_sqlite_directory(database_url: str) -> None:
    url = sync_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def upgrade(database_url: str, revision: str = "head") -> None:
    _prepare_sqlite_directory(database_url)
    command.upgrade(alembic_config(database_url), revision)
    refresh_sqlite_statistics(database_url)


def refresh_sqlite_statistics(database_url: str) -> None:
    """SQLite plans from the statistics ANALYZE leaves; without them it may scan a whole
    provider for a lookup by id. A bounded sample keeps this quick on large files."""
    url = sync_url(database_url)
    if url.get_backend_name() != "sqlite":
        return
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(database_url: str) -> str | None:
    _prepare_sqlite_directory(database_url)
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            return _current(conn)
    finally:
        engine.dispose()


def ensure_current(database_url: str) -> None:
    """Refuse to serve on a schema that is not at the code's head revision."""
    current = current_revision(database_url)
    head = head_revision(database_url)
    if current != head:
        where = "has no schema yet" if current is None else f"is at revision {current}"
        raise SchemaOutOfDate(
            f"The database {where}; this code needs revision {head}. To fix it, {UPGRADE_HINT}."
        )
