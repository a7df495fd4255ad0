"""The unit of work on the embedded engine."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from boughs import sqlite_inline
from boughs.db import Database


def _copy_of(template: Path, path: Path) -> Path:
    """A database of its own for a test, from the migrated template."""
    shutil.copyfile(template, path)
    return path


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def test_sqlite_writers_of_one_process_take_turns_in_the_order_they_came(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = _copy_of(sqlite_template, tmp_path / "gate.sqlite3")
    db = Database(_url(path))
    entered: list[int] = []

    async def writer(n: int) -> None:
        async with db.transaction() as session:
            entered.append(n)
            await session.execute(text("SELECT 1"))
            await asyncio.sleep(0.001)

    try:
        await asyncio.gather(*(writer(n) for n in range(20)))
    finally:
        await db.dispose()
    # Queued in order on the process's gate, none of them polling SQLite's file lock.
    assert entered == list(range(20))


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another process's writer, as SQLite sees it: its own connection holding the lock."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")  # as the app leaves every database it opens
    holder.execute("CREATE TABLE scratch (written_by TEXT)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO scratch VALUES ('theirs')")
    return holder


async def test_a_sqlite_writer_waits_for_another_writers_lock_while_the_loop_runs_on(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = _copy_of(sqlite_template, tmp_path / "busy.sqlite3")
    db = Database(_url(path))
    holder = _hold_write_lock(path)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async def writer() -> int:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO scratch VALUES ('ours')"))
            return int((await session.execute(text("SELECT count(*) FROM scratch"))).scalar_one())

    ticking = asyncio.create_task(ticker())
    try:
        waiting = asyncio.create_task(writer())
        await asyncio.sleep(0.2)
        assert not waiting.done()  # still waiting for the lock
        ticks_while_waiting = ticks
        holder.execute("COMMIT")
        count = await asyncio.wait_for(waiting, 10)
    finally:
        ticking.cancel()
        holder.close()
        await db.dispose()
    # The loop ran while the writer waited (every 5 ms: far more than a stalled loop would),
    # and the writer went on once the lock was free, seeing the other writer's row.
    assert ticks_while_waiting >= 10
    assert count == 2


async def test_a_sqlite_writer_gives_up_after_the_busy_timeout(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_MS", 100)
    path = _copy_of(sqlite_template, tmp_path / "stuck.sqlite3")
    db = Database(_url(path))
    holder = _hold_write_lock(path)
    try:
        with pytest.raises((OperationalError, sqlite3.OperationalError), match="database is locked"):
            async with db.transaction():
                pass
        # Nothing is left half-open: once the other writer is done, this one can write.
        holder.execute("COMMIT")
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
    finally:
        holder.close()
        await db.dispose()


def _run_in_thread_loop(work: Callable[[], Coroutine[Any, Any, None]]) -> threading.Thread:
    """``work`` (a coroutine function) run on an event loop of its own, in a thread of its
    own: as the embedded workers run beside the server's loop."""

    def run() -> None:
        asyncio.run(work())

    thread = threading.Thread(target=run)
    thread.start()
    return thread


async def test_sqlite_writers_on_different_loops_of_one_process_never_overlap(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = _copy_of(sqlite_template, tmp_path / "loops.sqlite3")
    inside = 0
    most_inside = 0
    turns: list[str] = []

    async def writer(name: str, db: Database) -> None:
        nonlocal inside, most_inside
        async with db.transaction() as session:
            inside += 1
            most_inside = max(most_inside, inside)
            turns.append(name)
            await session.execute(text("SELECT 1"))
            await asyncio.sleep(0.002)
            inside -= 1

    async def worker_loop() -> None:
        # Its own Database, as a worker's: the gate is the file's, not the instance's.
        db = Database(_url(path))
        try:
            for _ in range(30):
                await writer("worker", db)
        finally:
            await db.dispose()

    db = Database(_url(path))
    try:
        thread = _run_in_thread_loop(worker_loop)
        for _ in range(30):
            await writer("server", db)
        await asyncio.to_thread(thread.join, 30)
    finally:
        await db.dispose()
    assert not thread.is_alive()
    assert sorted(turns) == ["server"] * 30 + ["worker"] * 30
    assert most_inside == 1


async def test_the_write_gate_goes_to_waiters_in_order_and_past_one_that_gave_up() -> None:
    gate = sqlite_inline.WriteGate()
    order: list[str] = []

    async def take(name: str) -> None:
        await gate.acquire()
        order.append(name)
        gate.release()

    await gate.acquire()
    first = asyncio.create_task(take("first"))
    quitter = asyncio.create_task(take("quitter"))
    last = asyncio.create_task(take("last"))
    await asyncio.sleep(0.01)
    quitter.cancel()
    await asyncio.sleep(0.01)
    gate.release()
    await asyncio.wait_for(asyncio.gather(first, last), 5)
    assert order == ["first", "last"]
    assert quitter.cancelled()
    # Free again: taken at once.
    await asyncio.wait_for(gate.acquire(), 1)
    gate.release()


async def test_a_writer_held_up_by_one_of_its_own_process_gives_up_after_the_busy_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_MS", 100)
    gate = sqlite_inline.WriteGate()
    holding = threading.Event()
    done = threading.Event()

    async def holder() -> None:
        await gate.acquire()
        holding.set()
        await asyncio.to_thread(done.wait, 10)
        gate.release()

    thread = _run_in_thread_loop(holder)
    await asyncio.to_thread(holding.wait, 5)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        await gate.acquire()
    done.set()
    await asyncio.to_thread(thread.join, 10)
    # The writer that gave up left nothing behind: the gate is free.
    await asyncio.wait_for(gate.acquire(), 1)
    gate.release()


async def test_sqlite_writers_leave_copying_the_log_back_to_the_files_checkpointer(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "CHECKPOINT_PAUSE_S", 0.01)
    path = _copy_of(sqlite_template, tmp_path / "checkpoint.sqlite3")
    db = Database(_url(path))
    checkpointer = sqlite_inline.checkpointer_for(str(path))
    assert checkpointer is not None and checkpointer.running
    try:
        async with db.transaction() as session:
            writers_pages = (await session.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one()
            await session.execute(text("CREATE TABLE scratch (n INTEGER)"))
        for n in range(5):
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO scratch VALUES (:n)"), {"n": n})
        for _ in range(500):
            if checkpointer.checkpoints:
                break
            await asyncio.sleep(0.01)
    finally:
        await db.dispose()
    # Writers copy the log back only far past SQLite's 1,000 pages; the checkpointer did it.
    assert writers_pages == sqlite_inline.WRITERS_CHECKPOINT_PAGES > 1_000
    assert checkpointer.checkpoints >= 1
    assert not checkpointer.running
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM scratch").fetchone() == (5,)


async def test_a_files_checkpointer_runs_while_any_database_of_the_process_has_it_open(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = _copy_of(sqlite_template, tmp_path / "shared.sqlite3")
    first = Database(_url(path))
    second = Database(f"sqlite+aiosqlite:///{tmp_path}/../{tmp_path.name}/shared.sqlite3")
    checkpointer = sqlite_inline.checkpointer_for(str(path))
    assert checkpointer is not None
    await first.dispose()
    assert checkpointer.running
    await second.dispose()
    assert not checkpointer.running
    # Opened again, it starts again.
    third = Database(_url(path))
    assert checkpointer.running
    await third.dispose()
    assert not checkpointer.running
    assert sqlite_inline.checkpointer_for(":memory:") is None


async def test_a_checkpointer_never_creates_the_file_it_looks_after(tmp_path: Path) -> None:
    path = tmp_path / "never-made.sqlite3"
    checkpointer = sqlite_inline.checkpointer_for(str(path))
    assert checkpointer is not None
    checkpointer.attach()
    try:
        checkpointer.written()
        await asyncio.sleep(sqlite_inline.CHECKPOINT_PAUSE_S + 0.2)
        assert checkpointer.running
    finally:
        await asyncio.to_thread(checkpointer.detach)
    assert not path.exists()
    assert checkpointer.checkpoints == 0


async def test_a_read_unit_of_work_gives_its_connection_back_and_runs_its_hooks_only_on_success(
    db: Database,
) -> None:
    ran: list[str] = []
    async with db.transaction(write=False) as session:
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
        session.info["after_commit"].append(lambda: ran.append("read"))
    assert ran == ["read"]
    assert db.read_engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    with pytest.raises(ZeroDivisionError):
        async with db.transaction(write=False) as session:
            await session.execute(text("SELECT 1"))
            session.info["after_commit"].append(lambda: ran.append("failed"))
            1 / 0  # noqa: B018
    assert ran == ["read"]
    assert db.read_engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    # A task cancelled in the middle of its read gives the connection back all the same.
    started = asyncio.Event()

    async def read_forever() -> None:
        async with db.transaction(write=False) as session:
            await session.execute(text("SELECT 1"))
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(read_forever())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert db.read_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
