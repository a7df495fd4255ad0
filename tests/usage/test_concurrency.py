"""Several OS processes ingest overlapping events into one database at once, and fold them as
they go: every id is taken exactly once, by one process, and the rollups count it once.

SQLite writers queue on the write lock (BEGIN IMMEDIATE with a busy timeout) rather than fail;
PostgreSQL inserts wait on a key another transaction is inserting, then see it as taken.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from boughs.usage.models import UsageEvent
from tests.conftest import START, Tenant
from tests.usage.support import event, new_account, new_meter, new_plan, new_service, rollup_totals

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
SHARED = 120  # ids every process sends, each with the same content
CONTESTED = 12  # ids every process sends with a content of its own
BATCH = 30


async def test_processes_ingesting_the_same_events_never_double_count(
    database_url: str, ctx_factory: Any, tenant: Tenant, tmp_path: Path
) -> None:
    async with ctx_factory() as ctx:
        top = await new_account(ctx, "Top")
        kids = [await new_account(ctx, f"Kid {i}", top) for i in range(3)]
        service = await new_service(ctx, kids[0], await new_plan(ctx), login="kid-0")
        meter = await new_meter(ctx, "data")

    # Few accounts and hours, so the processes fight over the same rollup rows too.
    subjects: list[dict[str, Any]] = [
        {"account_id": kids[1]},
        {"account_id": kids[2]},
        {"login": "kid-0"},
        {"account_id": top},
    ]
    hours = [START - timedelta(hours=h, minutes=7) for h in range(1, 4)]
    shared = {
        f"s{i}": event(f"s{i}", str(i + 1), hours[i % len(hours)], **subjects[i % len(subjects)])
        for i in range(SHARED)
    }

    def contested(worker: int) -> dict[str, dict[str, Any]]:
        return {
            f"c{i}": event(f"c{i}", str(1000 * (worker + 1)), hours[0], **subjects[i % len(subjects)])
            for i in range(CONTESTED)
        }

    ready = [tmp_path / f"ready-{w}" for w in range(PROCESSES)]
    go = tmp_path / "go"
    sent: dict[int, dict[str, dict[str, Any]]] = {}
    workers = []
    for w in range(PROCESSES):
        mine = {**shared, **contested(w)}
        sent[w] = mine
        order = list(mine.values())
        random.Random(w).shuffle(order)
        spec = {
            "url": database_url, "provider_id": tenant.provider_id, "user_id": tenant.owner_id,
            "now": START.isoformat(), "ready": str(ready[w]), "go": str(go),
            "batches": [order[i : i + BATCH] for i in range(0, len(order), BATCH)],
        }  # fmt: skip
        path = tmp_path / f"spec-{w}.json"
        path.write_text(json.dumps(spec))
        workers.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.usage.concurrent_worker",
                str(path),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        )
    for _ in range(6000):
        if all(p.exists() for p in ready) or any(w.returncode is not None for w in workers):
            break
        await asyncio.sleep(0.01)
    go.touch()  # all at once
    outputs = [await w.communicate() for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err.decode()[-3000:]
    answers = [dict(json.loads(out)) for out, _ in outputs]

    # Every id: accepted in exactly one process; elsewhere a duplicate if the content was the winner's.
    winners: dict[str, int] = {}
    for key in [*shared, *contested(0)]:
        said = [answers[w][key] for w in range(PROCESSES)]
        assert said.count("accepted") == 1, (key, said)
        winners[key] = said.index("accepted")
        for w, status in enumerate(said):
            if w != winners[key]:
                same = sent[w][key] == sent[winners[key]][key]
                assert status == ("duplicate" if same else "conflict"), (key, w, status)
    assert {"duplicate", "conflict"} <= {s for a in answers for s in a.values()}

    async with ctx_factory() as ctx:
        stored = dict((await ctx.session.execute(select(UsageEvent.event_key, UsageEvent.quantity))).all())
        assert await ctx.session.scalar(select(func.count()).select_from(UsageEvent)) == len(winners)
        assert stored == {key: int(sent[w][key]["quantity"]) for key, w in winners.items()}
        want: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
        for key, w in winners.items():
            taken = sent[w][key]
            quantity = int(taken["quantity"])
            account = taken.get("account_id", kids[0])
            kinds = [("account", account), ("subtree", account)]
            if account != top:
                kinds.append(("subtree", top))
            if "login" in taken:
                kinds.append(("service", service))
            for kind in kinds:
                row = want[kind]
                row[0] += quantity
                row[1] = max(row[1], quantity)
                row[2] += 1
        assert await rollup_totals(ctx, meter) == {k: tuple(v) for k, v in want.items()}
