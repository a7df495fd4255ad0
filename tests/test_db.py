"""The unit of work on the embedded engine."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from sqlalchemy import text

from boughs.db import Database


async def test_sqlite_writers_of_one_process_take_turns_in_the_order_they_came(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = tmp_path / "gate.sqlite3"
    shutil.copyfile(sqlite_template, path)
    db = Database(f"sqlite+aiosqlite:///{path}")
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
