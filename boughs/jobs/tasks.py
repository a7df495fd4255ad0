"""Upkeep of the database itself."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from boughs.jobs.registry import job
from boughs.jobs.runtime import JobRun

REFRESH_STATISTICS = "maintenance.refresh_statistics"


@job(REFRESH_STATISTICS, every=timedelta(hours=6))
async def refresh_statistics(run: JobRun) -> dict[str, Any]:
    """Keep SQLite's planner statistics current (PostgreSQL's autovacuum does this itself)."""
    if not run.db.is_sqlite:
        return {"analyzed": False}
    async with run.db.transaction() as session:
        await session.execute(text("PRAGMA analysis_limit=1000"))
        await session.execute(text("ANALYZE"))
    return {"analyzed": True}
