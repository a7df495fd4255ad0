"""Engine and the unit of work: one session per request or job, committed at its boundary.

Services never commit. The boundary commits, then runs the after-commit hooks the
work registered (for example, sending a job whose row was written in the transaction),
so nothing is announced that did not happen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import NullPool

from boughs.sqlite_inline import (
    BUSY_TIMEOUT_MS,
    DRIVER,
    WRITERS_CHECKPOINT_PAGES,
    Checkpointer,
    WriteGate,
    begin_immediate,
    checkpointer_for,
    write_gate_for,
)

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


AfterCommit = Callable[[], Any]


def async_url(url: str) -> URL:
    """Accept the plain URLs operators write and pick the async driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed


def sync_url(url: str) -> URL:
    parsed = async_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        return parsed.set(drivername="sqlite")
    return parsed


def _tune_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves so writers can take the write lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute(f"PRAGMA wal_autocheckpoint={WRITERS_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A write that starts as a read can fail with SQLITE_BUSY when another writer
        # commits in between; taking the lock at BEGIN makes writers queue instead.
        options = conn.get_execution_options()
        if options.get("boughs_write"):
            begin_immediate(conn.connection.driver_connection)
        elif not options.get("boughs_read"):
            conn.exec_driver_sql("BEGIN")


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool: bool = True) -> None:
        self.url = async_url(url)
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
            # Every unit of work ends in an explicit commit or rollback, so the pool's
            # extra rollback on check-in would only cost a thread hop.
            kwargs["pool_reset_on_return"] = None
        if not pool:
            kwargs["poolclass"] = NullPool
        elif not self.is_sqlite:
            # No pre-ping: it costs a round trip per unit of work on the hottest paths;
            # recycled connections and the boundary's retry cover a restarted server.
            kwargs.update(pool_size=10, max_overflow=20, pool_recycle=1800)
        # SQLite runs on the event loop's thread (see sqlite_inline).
        engine_url = self.url.set(drivername=DRIVER) if self.is_sqlite else self.url
        self.engine: AsyncEngine = create_async_engine(engine_url, **kwargs)
        if self.is_sqlite:
            _tune_sqlite(self.engine)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        # Read-only units of work run without BEGIN and COMMIT: two round trips (or
        # thread hops, on SQLite) fewer on the hottest paths. PostgreSQL gives each
        # statement of a READ COMMITTED transaction its own snapshot anyway, and reads
        # that must agree with each other are written as one statement. SQLite
        # connections are in autocommit at the driver already (we issue BEGIN
        # ourselves); PostgreSQL reads get a pool of autocommit connections of their own.
        if self.is_sqlite:
            self.read_engine = create_async_engine(engine_url, **kwargs)
            _tune_sqlite(self.read_engine)
            # Every connection of this engine is a reader's (no BEGIN): set on the engine, so
            # a unit of work need not ask for its connection up front.
            read_bind = self.read_engine.execution_options(boughs_read=True)
        else:
            # Autocommit connections never hold a transaction: the pool has none to reset, and
            # a session's end has none to roll back.
            read_kwargs = {**kwargs, "pool_reset_on_return": None, "skip_autocommit_rollback": True}
            self.read_engine = create_async_engine(self.url, isolation_level="AUTOCOMMIT", **read_kwargs)
            read_bind = self.read_engine
        self.read_sessionmaker = async_sessionmaker(read_bind, expire_on_commit=False)
        # SQLite takes one writer at a time. Writers of this process, on any of its loops,
        # queue at the file's gate, in order, rather than polling the file lock with
        # backoff (which starves some of them and leaves the lock idle between polls);
        # other processes still meet at the lock with its busy timeout.
        self._write_gate: WriteGate | None = write_gate_for(self.url.database) if self.is_sqlite else None
        # Its log is copied back into the file off the write path (see sqlite_inline.Checkpointer).
        checkpointer = checkpointer_for(self.url.database) if self.is_sqlite else None
        if checkpointer is not None:
            checkpointer.attach()
        self._checkpointer: Checkpointer | None = checkpointer

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A unit of work: commit on success, roll back on error, then after-commit hooks."""
        if not write:
            # A reader holds no transaction (SQLite connections run without BEGIN, PostgreSQL
            # ones in autocommit) and its pool resets nothing on return, so closing it does
            # no I/O and needs no shielding from cancellation: it is closed here rather than
            # by AsyncSession's context manager, whose shield costs a task per unit of work.
            session = self.read_sessionmaker()
            session.info["after_commit"] = []
            try:
                yield session
            finally:
                await session.close()
            await _run_hooks(session.info["after_commit"])
            return
        async with self.sessionmaker() as session, self._writing(session):
            yield session

    @asynccontextmanager
    async def _writing(self, session: AsyncSession) -> AsyncIterator[None]:
        """The session as a write unit of work: its turn at the write gate (SQLite), its
        transaction begun as a writer's, committed or rolled back, then its hooks."""
        session.info["after_commit"] = []
        gate = self._write_gate
        if gate is not None:
            await gate.acquire()
        try:
            await session.connection(execution_options={"boughs_write": True})
            try:
                yield
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
        finally:
            if gate is not None:
                gate.release()
        if self._checkpointer is not None:
            self._checkpointer.written()
        await _run_hooks(session.info["after_commit"])

    @asynccontextmanager
    async def pinned(self) -> AsyncIterator[Pinned]:
        """One connection of the write pool held across units of work, so that what one
        leaves in temporary tables the next finds: work read without the write lock, then
        written with it. The temporary tables go with the connection's return to the pool."""
        async with self.engine.connect() as connection:
            try:
                yield Pinned(self, connection)
            finally:
                await _drop_temporary_tables(connection)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.detach)


class Pinned:
    """Units of work on one held connection (``Database.pinned``)."""

    def __init__(self, db: Database, connection: AsyncConnection) -> None:
        self.db = db
        self.connection = connection

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A write unit of work as ``Database.transaction`` runs one; or, with ``write``
        False, a read transaction: one snapshot, no write lock, ended when the work is done
        (what it wrote to temporary tables stays)."""
        session = AsyncSession(bind=self.connection, expire_on_commit=False)
        try:
            if write:
                async with self.db._writing(session):
                    yield session
                return
            # A reader's BEGIN on SQLite is deferred: its reads share one snapshot.
            await session.connection(execution_options={"boughs_write": False})
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
        finally:
            await session.close()


async def _drop_temporary_tables(connection: AsyncConnection) -> None:
    def drop(sync: Connection) -> None:
        if sync.dialect.name == "sqlite":
            found = sync.exec_driver_sql("SELECT name FROM sqlite_temp_master WHERE type = 'table'").all()
            for (name,) in found:
                sync.exec_driver_sql(f'DROP TABLE temp."{name}"')
        else:
            sync.exec_driver_sql("DISCARD TEMP")
        sync.commit()

    # Outside any transaction on SQLite (no BEGIN): dropping a temporary table takes no
    # lock on the database file.
    await connection.execution_options(boughs_write=False, boughs_read=True)
    await connection.run_sync(drop)


async def _run_hooks(hooks: list[AfterCommit]) -> None:
    for hook in hooks:
        try:
            result = hook()
            if hasattr(result, "__await__"):
                await result
        except Exception:  # the commit stands; a lost hook is recovered by the scheduler
            log.exception("after-commit hook failed")


def after_commit(session: AsyncSession, hook: AfterCommit) -> None:
    session.info.setdefault("after_commit", []).append(hook)


async def driver_sql(session: AsyncSession, statement: str, parameters: Any = None) -> list[Any]:
    """Run a driver-level statement (many parameter tuples: executemany) in the session's
    transaction; the rows it returns, if any.

    ``AsyncConnection.exec_driver_sql`` insists that the driver awaits something, which
    the inline SQLite driver never does; the session's own synchronous connection does not.
    """

    def run(sync_session: Session) -> list[Any]:
        result = sync_session.connection().exec_driver_sql(statement, parameters)
        return list(result) if result.returns_rows else []

    return await session.run_sync(run)
