"""Payments, refunds, credit notes and the account's transactions (its ledger)."""

from __future__ import annotations

from fastapi import Response

from boughs.billing import credit_notes, ledger, payments
from boughs.billing.payments_repository import CreditNoteFilter
from boughs.billing.payments_schemas import (
    CreditNoteCreate,
    CreditNoteOut,
    PaymentCreate,
    PaymentOut,
    RefundCreate,
    RefundedInvoice,
    RefundOut,
    TransactionOut,
    TransactionsPage,
)
from boughs.deps import CtxDep, Cursor, IdFilter, Limit, domain_router
from boughs.kit.pagination import DEFAULT_LIMIT, Page

router = domain_router("", "billing")


# --- payments ----------------------------------------------------------------------------------


@router.post("/accounts/{account_id}/payments", status_code=201, response_model=PaymentOut)
async def record_payment(ctx: CtxDep, account_id: int, body: PaymentCreate, response: Response) -> PaymentOut:
    """Record money received (provider billing staff). Allocated to `invoice_ids` in order, or
    to the oldest open invoices; the rest is the account's credit balance. A retry with the
    same `reference` and content answers 200 with the payment already recorded; other
    content under that reference is 409."""
    payment, created = await payments.record(ctx, account_id, body)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/api/v1/payments/{payment.id}"
    return await payments.to_out(ctx, payment)


@router.get("/accounts/{account_id}/payments", response_model=Page[PaymentOut])
async def list_payments(
    ctx: CtxDep, account_id: int, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[PaymentOut]:
    """Newest first."""
    page = await payments.list_for_account(ctx, account_id, cursor, limit)
    return Page[PaymentOut](items=await payments.to_out_many(ctx, page.items), next_cursor=page.next_cursor)


@router.get("/payments/{payment_id}", response_model=PaymentOut)
async def get_payment(ctx: CtxDep, payment_id: int) -> PaymentOut:
    """With its allocations (negative ones are refunds taken back off an invoice)."""
    return await payments.to_out(ctx, await payments.get(ctx, payment_id))


@router.post("/payments/{payment_id}/refunds", status_code=201, response_model=RefundOut)
async def refund_payment(ctx: CtxDep, payment_id: int, body: RefundCreate) -> RefundOut:
    """Pay money back (provider billing staff): from the unallocated part first, then off
    the invoices the payment paid, newest first; those are owed again."""
    done = await payments.refund(ctx, payment_id, body)
    return RefundOut(
        amount=done.amount,
        reason=done.reason,
        from_unallocated=done.from_unallocated,
        from_invoices=[RefundedInvoice(invoice_id=i, amount=a) for i, a in done.from_invoices],
        payment=await payments.to_out(ctx, done.payment),
    )


# --- credit notes ------------------------------------------------------------------------------


@router.post("/credit-notes", status_code=201, response_model=CreditNoteOut)
async def create_credit_note(ctx: CtxDep, body: CreditNoteCreate, response: Response) -> CreditNoteOut:
    """Correct an issued invoice (provider billing staff): at most its balance due, with tax
    at the invoice's rate; numbered without gaps per provider."""
    note = await credit_notes.create(ctx, body)
    response.headers["Location"] = f"/api/v1/credit-notes/{note.id}"
    return CreditNoteOut.model_validate(note)


@router.get("/credit-notes", response_model=Page[CreditNoteOut])
async def list_credit_notes(
    ctx: CtxDep,
    invoice_id: IdFilter = None,
    account_id: IdFilter = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[CreditNoteOut]:
    """Newest first; `account_id` is the invoice owner."""
    page = await credit_notes.list_credit_notes(
        ctx, CreditNoteFilter(invoice_id=invoice_id, account_id=account_id), cursor, limit
    )
    return Page[CreditNoteOut](
        items=[CreditNoteOut.model_validate(n) for n in page.items], next_cursor=page.next_cursor
    )


@router.get("/credit-notes/{credit_note_id}", response_model=CreditNoteOut)
async def get_credit_note(ctx: CtxDep, credit_note_id: int) -> CreditNoteOut:
    return CreditNoteOut.model_validate(await credit_notes.get(ctx, credit_note_id))


@router.post("/credit-notes/{credit_note_id}/void", response_model=CreditNoteOut)
async def void_credit_note(ctx: CtxDep, credit_note_id: int) -> CreditNoteOut:
    """Undo a credit note no later one on its invoice depends on; the invoice is owed again."""
    return CreditNoteOut.model_validate(await credit_notes.void(ctx, credit_note_id))


# --- the ledger --------------------------------------------------------------------------------


@router.get("/accounts/{account_id}/transactions", response_model=TransactionsPage)
async def list_transactions(
    ctx: CtxDep, account_id: int, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> TransactionsPage:
    """The account's transaction history, newest first: invoices, payments, credit notes,
    refunds and voids, each with the balance after it; `balance` (first page) is what the
    account owes now, negative when it has credit."""
    found = await ledger.transactions(ctx, account_id, cursor, limit)
    return TransactionsPage(
        items=[
            TransactionOut(
                id=entry.id,
                kind=entry.kind,
                amount=entry.amount,
                balance_after=balance_after,
                currency=entry.currency,
                occurred_on=entry.occurred_on,
                description=entry.description,
                invoice_id=entry.invoice_id,
                payment_id=entry.payment_id,
                credit_note_id=entry.credit_note_id,
                created_at=entry.created_at,
            )
            for entry, balance_after in found.items
        ],
        next_cursor=found.next_cursor,
        balance=found.balance,
        currency=found.currency,
    )
