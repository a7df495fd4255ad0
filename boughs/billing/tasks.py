"""Bill runs as jobs: one job cuts the roots into chunks and sends a job per chunk, so
several workers bill a provider at once; each root is billed in its own unit of work."""

from __future__ import annotations

from typing import Any

from boughs.billing import repository as repo
from boughs.billing import service
from boughs.billing.models import BillRunStatus
from boughs.jobs import service as jobs
from boughs.jobs.registry import job
from boughs.jobs.runtime import JobRun
from boughs.usage.tasks import fold_pending

# Roots billed per transaction: fewer, larger units spend less on statements and commits;
# on SQLite a unit holds the write lock, so it stays short enough not to stall the API.
ROOTS_PER_UNIT = 50


@job(service.RUN_JOB)
async def run_bill_run(run: JobRun) -> dict[str, Any]:
    run_id = int(run.args["bill_run_id"])
    # Rate every event taken in before the run started: fold what is still pending.
    await fold_pending(run.db, run.job.provider_id, run.runtime.clock, run.secrets)
    async with run.unit_of_work() as ctx:
        bill_run = await repo.lock_bill_run(ctx.session, run_id)
        assert bill_run is not None
        chunks = await service.plan_chunks(ctx, bill_run)
        pending = [c for c in chunks if not c.done and c.job_id is None]
        for chunk in pending:
            child = await jobs.enqueue(
                ctx,
                service.CHUNK_JOB,
                {"bill_run_id": run_id, "chunk_id": chunk.id, "finalize": bool(run.args.get("finalize"))},
                dedupe_key=f"bill-run-{run_id}-chunk-{chunk.id}",
            )
            chunk.job_id = child.id
        if not chunks:
            bill_run.status = BillRunStatus.succeeded.value
            bill_run.started_at = bill_run.started_at or ctx.now()
            bill_run.finished_at = ctx.now()
        total = len(chunks)
    await run.progress(0, total)
    return {"chunks": total}


@job(service.CHUNK_JOB)
async def run_bill_run_chunk(run: JobRun) -> dict[str, Any]:
    run_id, chunk_id = int(run.args["bill_run_id"]), int(run.args["chunk_id"])
    finalize = bool(run.args.get("finalize"))
    created = skipped = done = 0
    while True:
        async with run.unit_of_work() as ctx:
            chunk = await repo.get_chunk(ctx.session, chunk_id)
            bill_run = await repo.get_bill_run(ctx.session, ctx.provider_id, run_id)
            assert chunk is not None and bill_run is not None
            if chunk.done:
                break
            roots = await repo.roots_of_chunk(ctx.session, chunk, ROOTS_PER_UNIT)
            if not roots:
                chunk.done = True
                await service.finish_run(ctx, bill_run)
                break
            made, kept = await service.bill_roots(ctx, bill_run, roots, finalize)
            # The cursor moves in the same transaction as the invoices: a rerun never bills twice.
            if not await repo.advance_chunk(
                ctx.session, chunk.id, chunk.after_root_id, roots[-1], len(roots)
            ):
                raise RuntimeError(f"bill run {run_id} chunk {chunk_id} was advanced by someone else")
            await repo.add_run_counts(ctx.session, run_id, len(roots), made, kept)
            created, skipped, done = created + made, skipped + kept, done + len(roots)
        await run.progress(done, None)
    return {"created": created, "skipped": skipped, "roots": done}
