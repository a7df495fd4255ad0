"""Periodic dunning: overdue invoices suspend what they bill; settled ones stop holding it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from boughs.billing import dunning
from boughs.jobs.registry import job
from boughs.jobs.runtime import JobRun

DUNNING = "billing.dunning"


@job(DUNNING, every=timedelta(hours=1))
async def run_dunning(run: JobRun) -> dict[str, Any]:
    """Invoices still owed past due date + grace hold their accounts; holds of invoices
    settled by any road are lifted. A batch per unit of work: a crash keeps what committed,
    and a second run finds nothing left to do."""
    lifted: list[int] = []
    while True:
        async with run.unit_of_work() as ctx:
            batch = await dunning.lift_settled(ctx)
        lifted += batch.invoice_ids
        if not batch.more:
            break
    started: list[int] = []
    held: set[int] = set()
    while True:
        async with run.unit_of_work() as ctx:
            batch = await dunning.start_overdue(ctx)
        started += batch.invoice_ids
        held.update(batch.account_ids)
        await run.progress(len(started))
        if not batch.more:
            break
    return {
        "invoices_overdue": len(started),
        "accounts_held": len(held),
        "invoices_released": len(lifted),
        "overdue_invoice_ids": started[:1000],
    }
