"""One OS process of the concurrent ingestion test: it opens the database on its own, waits at the
starting line with its siblings, then ingests its batches, each in a transaction of its own, and
folds what is pending after each, as the workers do, while its siblings fold too.

    python -m tests.usage.concurrent_worker SPEC.json

SPEC holds the database URL, the provider and user to act as, the frozen time, the paths of the
ready and go files, and the batches. The answers go to stdout as JSON: [[event id, status], ...].
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from boughs.auth.actor import Actor, StaffRole
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.usage import fold
from boughs.usage.ingest import ingest


async def run(spec: dict[str, Any]) -> list[list[str]]:
    db = Database(spec["url"])
    clock = FrozenClock(datetime.fromisoformat(spec["now"]))
    actor = Actor(
        provider_id=spec["provider_id"], label="user:concurrent", user_id=spec["user_id"],
        staff_role=StaffRole.owner,
    )  # fmt: skip
    answers: list[list[str]] = []
    try:
        async with db.transaction(write=False) as session:  # connect before the start
            await session.execute(text("SELECT 1"))
        ready, go = Path(spec["ready"]), Path(spec["go"])
        ready.touch()  # noqa: ASYNC240  # nothing else runs in this process yet
        deadline = time.monotonic() + 60
        while not go.exists():  # noqa: ASYNC240
            if time.monotonic() > deadline:
                raise SystemExit("no start signal")
            await asyncio.sleep(0.005)
        for batch in spec["batches"]:
            async with db.transaction() as session:
                results = await ingest(Ctx(session=session, clock=clock, actor=actor), batch)
            answers.extend([r.id or "", r.status.value] for r in results)
            async with db.transaction() as session:
                await fold.catch_up(Ctx(session=session, clock=clock, actor=actor))
    finally:
        await db.dispose()
    return answers


if __name__ == "__main__":
    specification = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(asyncio.run(run(specification))))
