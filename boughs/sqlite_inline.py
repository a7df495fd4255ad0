"""SQLite on the event loop's own thread, for the async engine.

aiosqlite runs every call on a helper thread, and each hand-over (four per statement)
costs more than a typical statement takes. So units of work run the standard sqlite3
driver inline instead. The one call that may wait is a writer's BEGIN IMMEDIATE, when
another process holds the write lock: ``begin_immediate`` tries it at once and, while
the lock is taken, sleeps on the event loop between tries so the loop runs on. In WAL
mode nothing else waits: readers never block, and a writer holding the lock does not
wait to write or to commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import sqlite3
import threading
import time
from collections import deque
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.pool import AsyncAdaptedQueuePool, Pool
from sqlalchemy.util.concurrency import await_

DRIVER = "sqlite+boughs_inline"
# How long a writer waits for another process to release the write lock.
BUSY_TIMEOUT_MS = 30_000
# Writers copy the log back themselves only past this many pages (SQLite's default is
# 1,000): normally the file's checkpointer has done it long before.
WRITERS_CHECKPOINT_PAGES = 25_000
# The checkpointer waits this long after a commit for more to gather: pages written many
# times in that while are copied back once.
CHECKPOINT_PAUSE_S = 0.5

log = logging.getLogger(__name__)


def begin_immediate(connection: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE without stalling the event loop: while another process holds the
    write lock, sleep on the loop between tries, as SQLite's own busy handler would
    sleep in the thread. Call it where SQLAlchemy may await (an event of the async engine)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    connection.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # or an extended busy code
                if not busy or time.monotonic() >= deadline:
                    raise
            await_(asyncio.sleep(pause))
            pause = min(pause * 2, 0.05)
    finally:
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


class WriteGate:
    """One writer at a time among a process's units of work on one SQLite file, whatever
    event loop (thread) each runs on: a writer waits its turn in order and is handed the
    gate the moment the last one finishes.

    Without it, writers on different loops (the server's and its embedded workers') met
    only at the file lock, each polling it with growing pauses: CPU spent asking, and the
    lock idle while the next writer slept. Other processes still meet at the file lock.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        self._waiting: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._guard:
            if not self._held:
                self._held = True
                return
            turn: asyncio.Future[None] = loop.create_future()
            self._waiting.append((loop, turn))
        try:
            async with asyncio.timeout(BUSY_TIMEOUT_MS / 1000):
                await turn
        except (asyncio.CancelledError, TimeoutError) as stopped:
            if turn.done() and not turn.cancelled():
                # Handed the gate as the wait was given up: pass it on.
                self.release()
            if isinstance(stopped, TimeoutError):
                # What SQLite says when its own busy timeout runs out.
                raise sqlite3.OperationalError("database is locked") from None
            raise

    def release(self) -> None:
        """Hand the gate to the next writer waiting, or leave it free."""
        with self._guard:
            while self._waiting:
                loop, turn = self._waiting.popleft()
                try:
                    loop.call_soon_threadsafe(self._hand_over, turn)
                    return
                except RuntimeError:  # that writer's loop has closed: the next one
                    continue
            self._held = False

    def _hand_over(self, turn: asyncio.Future[None]) -> None:
        """On the waiting writer's own loop: its turn, unless it stopped waiting."""
        if turn.cancelled():
            self.release()
        else:
            turn.set_result(None)


# What the process keeps per SQLite file, under one guard.
_gates: dict[str, WriteGate] = {}
_checkpointers: dict[tuple[int, str], Checkpointer] = {}
_registry_guard = threading.Lock()


def _file_of(database: str | None) -> str | None:
    """The file a database name stands for; None for an in-memory database."""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return os.path.realpath(database)


def write_gate_for(database: str | None) -> WriteGate:
    """The process's gate for a SQLite file (a gate of its own for an in-memory database)."""
    path = _file_of(database)
    if path is None:
        return WriteGate()
    with _registry_guard:
        gate = _gates.get(path)
        if gate is None:
            gate = _gates[path] = WriteGate()
        return gate


class Checkpointer:
    """Copies a SQLite file's write-ahead log back into the database on a thread of its
    own, while the process has a database open on the file.

    By default the writer whose commit takes the log past 1,000 pages copies it back (and
    syncs the file) inside its commit: a fifth of the write lock's time under sustained
    ingest, with every other writer of the process queued behind it at the gate. A
    passive checkpoint needs no lock a writer holds, and the driver lets go of the GIL
    while it runs, so on this thread it overlaps the writers instead. Writers keep a
    checkpoint of their own far past the usual size as a backstop.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._guard = threading.Lock()
        self._users = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Checkpoints that found log to copy back (what tests and an operator can watch).
        self.checkpoints = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def attach(self) -> None:
        with self._guard:
            self._users += 1
            if self._users == 1:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), daemon=True,
                    name=f"sqlite-checkpoint {os.path.basename(self.path)}",
                )  # fmt: skip
                self._thread.start()

    def detach(self) -> None:
        """The last user gone: the thread stops (closing the database checkpoints the rest)."""
        with self._guard:
            self._users -= 1
            stopping = self._thread if self._users == 0 else None
            if stopping is not None:
                self._thread = None
                self._stop.set()
                self._wake.set()
        if stopping is not None:
            stopping.join(timeout=10)

    def written(self) -> None:
        """A write transaction committed: there is log to copy back."""
        self._wake.set()

    def _run(self, stop: threading.Event) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                if stop.wait(CHECKPOINT_PAUSE_S):
                    return
                self._wake.clear()
                connection = self._checkpoint(connection)
        finally:
            if connection is not None:
                connection.close()

    def _checkpoint(self, connection: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """One passive checkpoint (it copies what no reader still needs, and never waits);
        the connection to use next time."""
        try:
            if connection is None:
                # Opened once something was written, and never creating the file itself.
                uri = f"{pathlib.Path(self.path).as_uri()}?mode=rw"
                connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            # Another process's checkpoint or recovery holds the log: the next commit retries.
            log.debug("checkpoint of %s skipped", self.path, exc_info=True)
            return connection
        if frames > 0:
            self.checkpoints += 1
        return connection


def checkpointer_for(database: str | None) -> Checkpointer | None:
    """The process's checkpointer for a SQLite file (none for an in-memory database).
    Keyed by process too: a forked child starts threads of its own."""
    path = _file_of(database)
    if path is None:
        return None
    key = (os.getpid(), path)
    with _registry_guard:
        checkpointer = _checkpointers.get(key)
        if checkpointer is None:
            checkpointer = _checkpointers[key] = Checkpointer(path)
        return checkpointer


class InlineCursor(sqlite3.Cursor):
    async def _async_soft_close(self) -> None:
        """The async result layer calls this; a plain cursor has nothing to release."""


class InlineConnection(sqlite3.Connection):
    def cursor(self, factory: Any = InlineCursor) -> Any:
        return super().cursor(factory)


class InlineSQLiteDialect(SQLiteDialect_pysqlite):
    is_async = True
    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[Pool]:
        return AsyncAdaptedQueuePool

    def create_connect_args(self, url: URL) -> Any:
        args, kwargs = super().create_connect_args(url)
        kwargs.update(factory=InlineConnection, check_same_thread=False)
        return args, kwargs


registry.register("sqlite.boughs_inline", __name__, "InlineSQLiteDialect")
