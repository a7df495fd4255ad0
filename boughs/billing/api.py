"""Bill runs and invoices."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response
from starlette.concurrency import run_in_threadpool

from boughs.billing import render, service
from boughs.billing import repository as repo
from boughs.billing.models import InvoiceStatus
from boughs.billing.schemas import (
    BillRunCreate,
    BillRunDetailOut,
    BillRunOut,
    InvoiceDetailOut,
    InvoiceLineOut,
    InvoiceOut,
    VoidRequest,
)
from boughs.context import Ctx
from boughs.deps import CtxDep, Cursor, IdFilter, Limit, domain_router
from boughs.kit.pagination import DEFAULT_LIMIT, Page

router = domain_router("", "billing")

StatusFilter = Annotated[InvoiceStatus | None, Query(description="Only invoices with this status.")]


@router.post("/bill-runs", status_code=202, response_model=BillRunOut)
async def start_bill_run(ctx: CtxDep, data: BillRunCreate) -> BillRunOut:
    return BillRunOut.model_validate(await service.start_bill_run(ctx, data))


@router.get("/bill-runs", response_model=Page[BillRunOut])
async def list_bill_runs(
    ctx: CtxDep, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[BillRunOut]:
    page = await service.list_bill_runs(ctx, cursor, limit)
    return Page[BillRunOut](
        items=[BillRunOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor
    )


@router.get("/bill-runs/{bill_run_id}", response_model=BillRunDetailOut)
async def get_bill_run(ctx: CtxDep, bill_run_id: int) -> BillRunDetailOut:
    run = await service.get_bill_run(ctx, bill_run_id)
    out = BillRunDetailOut.model_validate(run)
    if run.dry_run:
        out.previews = [await _detail(ctx, inv) for inv in await repo.previews_of(ctx.session, run.id)]
    return out


async def _detail(ctx: Ctx, invoice: object) -> InvoiceDetailOut:
    out = InvoiceDetailOut.model_validate(InvoiceOut.of(invoice).model_dump())
    out.lines = [InvoiceLineOut.model_validate(ln) for ln in await service.invoice_lines(ctx, invoice)]  # type: ignore[arg-type]
    return out


@router.get("/invoices", response_model=Page[InvoiceOut])
async def list_invoices(
    ctx: CtxDep,
    account_id: IdFilter = None,
    bill_run_id: IdFilter = None,
    status: StatusFilter = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[InvoiceOut]:
    page = await service.list_invoices(
        ctx, account_id, bill_run_id, status.value if status else None, cursor, limit
    )
    return Page[InvoiceOut](items=[InvoiceOut.of(i) for i in page.items], next_cursor=page.next_cursor)


async def _document(ctx: Ctx, invoice_id: int) -> render.InvoiceDocument:
    invoice = await service.get_invoice(ctx, invoice_id)
    lines = await service.invoice_lines(ctx, invoice)
    provider = await repo.provider(ctx.session, ctx.provider_id)
    ids = {invoice.owner_account_id, *(ln.account_id for ln in lines if ln.account_id is not None)}
    return render.InvoiceDocument(
        invoice=invoice,
        lines=lines,
        provider_name=provider.name,
        account_names=await service.account_names(ctx, sorted(ids)),
    )


@router.get("/invoices/{invoice_id}.pdf", response_class=Response)
async def invoice_pdf(ctx: CtxDep, invoice_id: int) -> Response:
    doc = await _document(ctx, invoice_id)
    name = doc.invoice.number or f"draft-{doc.invoice.id}"
    # WeasyPrint is CPU-bound: off the event loop, so other requests keep being served.
    return Response(
        await run_in_threadpool(render.invoice_pdf, doc),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}.pdf"'},
    )


@router.get("/invoices/{invoice_id}.html", response_class=Response)
async def invoice_html(ctx: CtxDep, invoice_id: int) -> Response:
    return Response(render.invoice_html(await _document(ctx, invoice_id)), media_type="text/html")


# After the .pdf and .html routes, which it would otherwise swallow.
@router.get("/invoices/{invoice_id}", response_model=InvoiceDetailOut)
async def get_invoice(ctx: CtxDep, invoice_id: int) -> InvoiceDetailOut:
    return await _detail(ctx, await service.get_invoice(ctx, invoice_id))


@router.post("/invoices/{invoice_id}/finalize", response_model=InvoiceDetailOut)
async def finalize(ctx: CtxDep, invoice_id: int) -> InvoiceDetailOut:
    return await _detail(ctx, await service.finalize(ctx, invoice_id))


@router.post("/invoices/{invoice_id}/recalculate", response_model=InvoiceDetailOut)
async def recalculate(ctx: CtxDep, invoice_id: int) -> InvoiceDetailOut:
    return await _detail(ctx, await service.recalculate(ctx, invoice_id))


@router.post("/invoices/{invoice_id}/void", response_model=InvoiceOut)
async def void(ctx: CtxDep, invoice_id: int, data: VoidRequest | None = None) -> InvoiceOut:
    return InvoiceOut.of(await service.void(ctx, invoice_id, data.reason if data else ""))


@router.post("/invoices/{invoice_id}/uncollectible", response_model=InvoiceOut)
async def uncollectible(ctx: CtxDep, invoice_id: int) -> InvoiceOut:
    return InvoiceOut.of(await service.mark_uncollectible(ctx, invoice_id))
