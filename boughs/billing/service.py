"""Bill runs and the invoice lifecycle: draft → finalized (numbered, frozen) → paid | void |
uncollectible; drafts recalculated; dry runs that preview exactly what a run writes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from boughs.accounts import service as accounts
from boughs.audit import service as audit
from boughs.authz.permissions import Permission
from boughs.authz.scope import scope_of
from boughs.billing import engine, ledger
from boughs.billing import repository as repo
from boughs.billing.models import BillRun, BillRunChunk, BillRunStatus, Invoice, InvoiceLine, InvoiceStatus
from boughs.billing.schemas import BillRunCreate
from boughs.context import Ctx
from boughs.jobs import service as jobs
from boughs.kit.clock import local_date
from boughs.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from boughs.kit.pagination import PageOf, check_limit, id_cursor, page_of
from boughs.usage import fold

ROOTS_PER_CHUNK = 200
MIN_CHUNKS = 8
MIN_CHUNK_ROOTS = 20
RUN_JOB = "billing.run"
CHUNK_JOB = "billing.run_chunk"
# How far ahead a run may bill: a period ending within the next year (billing in advance).
MAX_AHEAD = timedelta(days=366)


def require_staff_billing(ctx: Ctx, doing: str) -> None:
    """Bill runs and writing invoices are the provider's owner, admins and billing staff's work."""
    if not ctx.actor.is_staff or ctx.actor.staff_role not in ("owner", "admin", "billing"):
        raise Forbidden(
            detail=f"Only the provider's owner, admins and billing staff can {doing}.",
            fix="ask the provider's billing staff",
        )


# --- bill runs ----------------------------------------------------------------------------------


async def start_bill_run(ctx: Ctx, data: BillRunCreate) -> BillRun:
    require_staff_billing(ctx, "start bill runs")
    provider = await repo.provider(ctx.session, ctx.provider_id)
    today = local_date(ctx.now(), provider.default_timezone)
    if data.period_end > today + MAX_AHEAD:
        raise InvalidInput.on_field(
            "period_end", "is more than a year ahead", f"give a period end before {today + MAX_AHEAD}"
        )
    run = BillRun(
        provider_id=ctx.provider_id,
        period_end=data.period_end,
        dry_run=data.dry_run,
        status=BillRunStatus.queued.value,
        total_amount={},
        created_by_user_id=ctx.actor.user_id,
        created_at=ctx.now(),
    )
    ctx.session.add(run)
    await ctx.session.flush()
    job = await jobs.enqueue(ctx, RUN_JOB, {"bill_run_id": run.id, "finalize": data.finalize})
    run.job_id = job.id
    await audit.record(
        ctx,
        entity="bill_run",
        entity_id=run.id,
        action="started",
        account_id=None,
        after={"period_end": run.period_end.isoformat(), "dry_run": run.dry_run, "finalize": data.finalize},
    )
    return run


async def get_bill_run(ctx: Ctx, run_id: int) -> BillRun:
    require_staff_billing(ctx, "read bill runs")
    run = await repo.get_bill_run(ctx.session, ctx.provider_id, run_id)
    if run is None:
        raise NotFound(detail=f"There is no bill run {run_id}.", fix="check the bill run id")
    return run


async def list_bill_runs(ctx: Ctx, cursor: str | None, limit: int) -> PageOf[BillRun]:
    require_staff_billing(ctx, "read bill runs")
    check_limit(limit)
    rows = await repo.list_bill_runs(ctx.session, ctx.provider_id, id_cursor(cursor), limit + 1)
    return page_of(rows, limit)


async def plan_chunks(ctx: Ctx, run: BillRun) -> list[BillRunChunk]:
    """Cut the provider's roots into chunks once; a resumed run finds them already made."""
    existing = await repo.chunks_of(ctx.session, run.id)
    if existing:
        return existing
    roots = await repo.root_ids(ctx.session, run.provider_id)
    # At least MIN_CHUNKS chunks when there are roots enough, so every worker gets a share.
    size = max(MIN_CHUNK_ROOTS, min(ROOTS_PER_CHUNK, -(-len(roots) // MIN_CHUNKS)))
    chunks = []
    for position, start in enumerate(range(0, len(roots), size)):
        part = roots[start : start + size]
        chunk = BillRunChunk(
            provider_id=run.provider_id,
            bill_run_id=run.id,
            position=position,
            first_root_id=part[0],
            last_root_id=part[-1],
            roots=len(part),
            after_root_id=None,
            roots_done=0,
            done=False,
        )
        ctx.session.add(chunk)
        chunks.append(chunk)
    run.roots_total = len(roots)
    run.status = BillRunStatus.running.value
    run.started_at = ctx.now()
    await ctx.session.flush()
    return chunks


async def bill_roots(ctx: Ctx, run: BillRun, roots: Sequence[int], finalize: bool = False) -> tuple[int, int]:
    """Write the invoices of these roots' owners: (created, skipped). Owners that already have
    an invoice for the period keep it; a dry run's previews are rewritten."""
    if finalize and not run.dry_run:
        # What is finalized now is never rated again: usage taken in but not yet folded
        # into the rollups is billed on it, not lost between the draft and the issue.
        await fold.catch_up(ctx)
    provider = await repo.provider(ctx.session, ctx.provider_id)
    rated = await engine.Engine(ctx.session, provider, run.period_end, ctx.now()).rate(roots)
    owners = [r.owner_account_id for r in rated]
    created = skipped = 0
    if run.dry_run:
        await repo.delete_previews(ctx.session, run.id, owners)
    else:
        billed = await repo.billed_owner_ids(ctx.session, ctx.provider_id, owners, run.period_end)
    problems: list[str] = []
    pending: list[engine.Rated] = []
    for item in rated:
        problems += item.problems
        if not item.lines:
            continue  # nothing to bill: no invoice, in a dry run as in a real one
        if not run.dry_run and item.owner_account_id in billed:
            skipped += 1
            continue
        status = InvoiceStatus.preview if run.dry_run else InvoiceStatus.draft
        created += 1
        if finalize and not run.dry_run:
            await _finalize(ctx, await _write(ctx, run.id, item, status), item)
        else:
            pending.append(item)
    # Drafts and previews are written in two statements, whatever their number.
    await _write_many(ctx, run.id, pending, InvoiceStatus.preview if run.dry_run else InvoiceStatus.draft)
    if problems:
        run.error = "\n".join(([run.error] if run.error else []) + problems[:100])
    return created, skipped


def _invoice_row(ctx: Ctx, run_id: int | None, item: engine.Rated, status: InvoiceStatus) -> dict[str, Any]:
    now = ctx.now()
    return {
        "provider_id": ctx.provider_id, "bill_run_id": run_id, "owner_account_id": item.owner_account_id,
        "status": status.value, "number": None, "currency": item.currency, "period_start": item.period[0],
        "period_end": item.period[1], "net_terms_days": item.net_terms_days,
        "tax_rate_ppm": item.tax_rate_ppm, "tax_exempt": item.tax_exempt, "layout": item.layout,
        "subtotal_amount": item.subtotal,
        "tax_amount": item.tax, "total_amount": item.total, "amount_paid": 0, "amount_credited": 0,
        "bill_to": item.bill_to, "payer": item.payer, "account_ids": item.account_ids,
        "created_at": now, "updated_at": now,
    }  # fmt: skip


async def _write_many(
    ctx: Ctx, run_id: int | None, items: Sequence[engine.Rated], status: InvoiceStatus
) -> None:
    if not items:
        return
    ids = await repo.insert_invoices(ctx.session, [_invoice_row(ctx, run_id, item, status) for item in items])
    lines = engine.line_columns((ids[item.owner_account_id], item.lines) for item in items)
    await repo.insert_lines(ctx.session, ctx.provider_id, lines)


async def _write(ctx: Ctx, run_id: int | None, item: engine.Rated, status: InvoiceStatus) -> Invoice:
    now = ctx.now()
    invoice = Invoice(
        provider_id=ctx.provider_id,
        bill_run_id=run_id,
        owner_account_id=item.owner_account_id,
        status=status.value,
        number=None,
        currency=item.currency,
        period_start=item.period[0],
        period_end=item.period[1],
        net_terms_days=item.net_terms_days,
        tax_rate_ppm=item.tax_rate_ppm,
        tax_exempt=item.tax_exempt,
        layout=item.layout,
        created_at=now,
        updated_at=now,
    )
    _fill(invoice, item)
    ctx.session.add(invoice)
    await ctx.session.flush()
    await repo.insert_lines(ctx.session, ctx.provider_id, engine.line_columns([(invoice.id, item.lines)]))
    return invoice


def _fill(invoice: Invoice, item: engine.Rated) -> None:
    invoice.subtotal_amount = item.subtotal
    invoice.tax_amount = item.tax
    invoice.total_amount = item.total
    invoice.amount_paid = 0
    invoice.amount_credited = 0
    invoice.bill_to = item.bill_to
    invoice.payer = item.payer
    invoice.account_ids = item.account_ids
    invoice.layout = item.layout
    invoice.currency = item.currency
    invoice.tax_rate_ppm = item.tax_rate_ppm
    invoice.tax_exempt = item.tax_exempt
    invoice.net_terms_days = item.net_terms_days


async def finish_run(ctx: Ctx, run: BillRun) -> None:
    # Locked, so of two chunks finishing together the later one sees the other done.
    await repo.lock_bill_run(ctx.session, run.id)
    chunks = await repo.chunks_of(ctx.session, run.id)
    if all(c.done for c in chunks):
        # Summed once at the end: chunks billed in parallel never write the same row.
        run.total_amount = await repo.run_totals(ctx.session, run.id)
        run.status = BillRunStatus.succeeded.value
        run.finished_at = ctx.now()


# --- invoices -----------------------------------------------------------------------------------


async def get_invoice(ctx: Ctx, invoice_id: int) -> Invoice:
    invoice = await repo.get_invoice(ctx.session, ctx.provider_id, invoice_id)
    if invoice is None or not await _may_read(ctx, invoice):
        raise NotFound(detail=f"There is no invoice {invoice_id}.", fix="check the invoice id")
    return invoice


async def _may_read(ctx: Ctx, invoice: Invoice) -> bool:
    scope = await scope_of(ctx)
    if scope.whole_provider:
        return True
    try:
        owner = await accounts.get(ctx, invoice.owner_account_id)
    except NotFound:
        return False
    return scope.allows(owner.path, Permission.read) and invoice.status != InvoiceStatus.preview.value


async def invoice_lines(ctx: Ctx, invoice: Invoice) -> list[InvoiceLine]:
    return await repo.lines_of(ctx.session, invoice.id)


async def list_invoices(
    ctx: Ctx,
    account_id: int | None,
    bill_run_id: int | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> PageOf[Invoice]:
    check_limit(limit)
    scope = await scope_of(ctx)
    if account_id is not None:
        try:
            await accounts.get(ctx, account_id)
        except NotFound:
            # The id is not echoed: an account out of reach reads exactly like a missing one.
            raise NotFound(
                detail="There is no such account among those you can reach.",
                fix="check account_id; you can only list invoices of accounts in your own scope",
            ) from None
    elif not scope.whole_provider:
        raise InvalidInput.on_field(
            "account_id", "is required for account users", "give the account whose invoices to list"
        )
    if status == InvoiceStatus.preview.value and not scope.whole_provider:
        raise InvalidInput.on_field("status", "previews are for provider staff", "leave status out")
    f = repo.InvoiceFilter(owner_account_id=account_id, bill_run_id=bill_run_id, status=status)
    rows = await repo.list_invoices(ctx.session, ctx.provider_id, f, id_cursor(cursor), limit + 1)
    return page_of(rows, limit)


async def _locked(ctx: Ctx, invoice_id: int, doing: str, *, with_account: bool = False) -> Invoice:
    # Who cannot see the invoice learns nothing of it; who can but may not change it is refused.
    found = await get_invoice(ctx, invoice_id)
    require_staff_billing(ctx, doing)
    if with_account:
        # The account first, then the invoice: the order payments take them in, so never a deadlock.
        await ledger.lock_account(ctx, found.owner_account_id)
    invoice = await repo.lock_invoice(ctx.session, ctx.provider_id, invoice_id)
    assert invoice is not None
    return invoice


async def _rerate(ctx: Ctx, invoice: Invoice) -> engine.Rated | None:
    await fold.catch_up(ctx)  # usage taken in but not yet in the rollups is billed too
    account = await accounts.get(ctx, invoice.owner_account_id)
    provider = await repo.provider(ctx.session, ctx.provider_id)
    root = int(account.path.strip("/").split("/")[0])
    rated = await engine.Engine(ctx.session, provider, invoice.period_end, ctx.now()).rate([root])
    return next((r for r in rated if r.owner_account_id == invoice.owner_account_id), None)


async def recalculate(ctx: Ctx, invoice_id: int) -> Invoice:
    invoice = await _locked(ctx, invoice_id, "recalculate invoices")
    if invoice.status != InvoiceStatus.draft.value:
        raise Conflict(
            detail=f"Invoice {invoice.id} is {invoice.status}; only drafts are recalculated.",
            fix="correct an issued invoice with a credit note",
        )
    before = {"total_amount": invoice.total_amount}
    await _recalculate(ctx, invoice)
    await audit.record(
        ctx,
        entity="invoice",
        entity_id=invoice.id,
        action="recalculated",
        account_id=invoice.owner_account_id,
        before=before,
        after={"total_amount": invoice.total_amount},
    )
    return invoice


async def _recalculate(ctx: Ctx, invoice: Invoice) -> engine.Rated:
    item = await _rerate(ctx, invoice)
    await repo.delete_lines(ctx.session, invoice.id)
    if item is None:
        raise Conflict(
            detail=f"Account {invoice.owner_account_id} no longer receives invoices for this period.",
            fix="void this draft",
        )
    _fill(invoice, item)
    invoice.updated_at = ctx.now()
    await repo.insert_lines(ctx.session, ctx.provider_id, engine.line_columns([(invoice.id, item.lines)]))
    await ctx.session.flush()
    return item


async def finalize(ctx: Ctx, invoice_id: int) -> Invoice:
    invoice = await _locked(ctx, invoice_id, "finalize invoices")
    if invoice.status != InvoiceStatus.draft.value:
        raise Conflict(
            detail=f"Invoice {invoice.id} is {invoice.status}; only drafts are finalized.",
            fix="finalize a draft invoice",
        )
    # Usage that arrived since the draft was made goes on it, so nothing falls between the two.
    await _finalize(ctx, invoice, await _recalculate(ctx, invoice))
    return invoice


async def _finalize(ctx: Ctx, invoice: Invoice, item: engine.Rated) -> None:
    provider = await repo.provider(ctx.session, ctx.provider_id)
    number, _ = await repo.next_invoice_number(ctx.session, ctx.provider_id)
    issued = local_date(ctx.now(), provider.default_timezone)
    invoice.number = number
    invoice.issue_date = issued
    invoice.due_date = issued + timedelta(days=invoice.net_terms_days)
    invoice.status = InvoiceStatus.finalized.value
    invoice.finalized_at = ctx.now()
    invoice.updated_at = ctx.now()
    await ctx.session.flush()
    await repo.mark_late_billed(ctx.session, invoice.id, invoice.account_ids, ctx.now())
    await repo.mark_usage_billed(ctx.session, invoice.account_ids, item.usage_until)
    await ledger.invoice_finalized(ctx, invoice)
    if invoice.total_amount - invoice.amount_paid - invoice.amount_credited <= 0:
        invoice.status = InvoiceStatus.paid.value
        invoice.paid_at = ctx.now()
    await audit.record(
        ctx,
        entity="invoice",
        entity_id=invoice.id,
        action="finalized",
        account_id=invoice.owner_account_id,
        after={
            "number": invoice.number,
            "total_amount": invoice.total_amount,
            "due_date": str(invoice.due_date),
        },
    )


async def void(ctx: Ctx, invoice_id: int, reason: str) -> Invoice:
    invoice = await _locked(ctx, invoice_id, "void invoices", with_account=True)
    if invoice.status not in (
        InvoiceStatus.draft.value,
        InvoiceStatus.finalized.value,
        InvoiceStatus.uncollectible.value,
    ):
        raise Conflict(
            detail=f"Invoice {invoice.id} is {invoice.status} and cannot be voided.",
            fix="correct a paid invoice with a credit note and a refund",
        )
    if invoice.amount_paid or invoice.amount_credited:
        raise Conflict(
            detail=f"Invoice {invoice.id} has payments or credits on it.",
            fix="correct it with a credit note for what is still owed",
        )
    was_issued = invoice.status != InvoiceStatus.draft.value
    invoice.status = InvoiceStatus.void.value
    invoice.voided_at = ctx.now()
    invoice.updated_at = ctx.now()
    await ctx.session.flush()
    if was_issued:
        await ledger.invoice_voided(ctx, invoice)
    await audit.record(
        ctx,
        entity="invoice",
        entity_id=invoice.id,
        action="voided",
        account_id=invoice.owner_account_id,
        after={"reason": reason},
    )
    return invoice


async def mark_uncollectible(ctx: Ctx, invoice_id: int) -> Invoice:
    invoice = await _locked(ctx, invoice_id, "write off invoices")
    if invoice.status != InvoiceStatus.finalized.value:
        raise Conflict(
            detail=f"Invoice {invoice.id} is {invoice.status}; only finalized invoices are written off.",
            fix="write off a finalized, unpaid invoice",
        )
    invoice.status = InvoiceStatus.uncollectible.value
    invoice.updated_at = ctx.now()
    await audit.record(
        ctx,
        entity="invoice",
        entity_id=invoice.id,
        action="uncollectible",
        account_id=invoice.owner_account_id,
    )
    return invoice


async def account_names(ctx: Ctx, ids: Sequence[int]) -> dict[int, str]:
    found = await repo.accounts_by_id(ctx.session, ids)
    return {i: a.name for i, a in found.items() if a.provider_id == ctx.provider_id}


async def overdue_summary(ctx: Ctx, limit: int) -> dict[str, Any]:
    """Invoices of the actor's scope past their due date with a balance: totals per currency
    and the ``limit`` longest overdue (the dashboard's card)."""
    from boughs.billing import payments_repository

    provider = await repo.provider(ctx.session, ctx.provider_id)
    today = local_date(ctx.now(), provider.default_timezone)
    scope = await scope_of(ctx)
    totals = await payments_repository.overdue_totals(ctx.session, scope, today)
    return {
        "today": today,
        "count": sum(count for _, count, _ in totals),
        "totals": totals,
        "first": await payments_repository.overdue_first(ctx.session, scope, today, limit),
    }
