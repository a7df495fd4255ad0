"""The account ledger (seed 000's "transaction history") and what moves money on invoices.

The ledger is append-only: each entry is signed, positive when the account owes more
(an invoice finalized, a refund paid out, a credit note voided), negative when it owes
less (a payment received, a credit note, an invoice voided). An account's balance is
the sum of its entries, and always equals what its open invoices still ask for minus
the money it paid that no invoice has taken yet (its credit balance).

Every change to an account's money takes the account's row lock first (``lock_account``),
so payments, refunds, credit notes, finalization and dunning of one account queue up
behind each other on PostgreSQL (SQLite has one writer at a time anyway).

The invoice service calls ``invoice_finalized`` and ``invoice_voided``; account deletion
asks ``unpaid_balance_of``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts import inheritance
from boughs.accounts import repository as accounts_repository
from boughs.accounts import service as accounts
from boughs.audit import service as audit
from boughs.authz.scope import Scope, scope_of
from boughs.billing import dunning
from boughs.billing import payments_repository as repository
from boughs.billing.models import (
    Invoice,
    InvoiceStatus,
    LedgerEntry,
    LedgerKind,
    Payment,
    PaymentAllocation,
)
from boughs.context import Ctx
from boughs.kit.clock import local_date
from boughs.kit.pagination import check_limit, encode_cursor, id_cursor
from boughs.providers import repository as providers

INVOICE_ENTITY = "invoice"


def balance_due(invoice: Invoice) -> int:
    return invoice.total_amount - invoice.amount_paid - invoice.amount_credited


async def lock_account(ctx: Ctx, account_id: int) -> None:
    """The lock every change to an account's money takes first (a no-op on SQLite)."""
    await accounts_repository.lock(ctx.session, ctx.provider_id, [account_id])


async def record(
    ctx: Ctx,
    *,
    account_id: int,
    kind: LedgerKind,
    amount: int,
    currency: str,
    occurred_on: date,
    description: str,
    invoice_id: int | None = None,
    payment_id: int | None = None,
    credit_note_id: int | None = None,
) -> LedgerEntry:
    entry = LedgerEntry(
        provider_id=ctx.provider_id,
        account_id=account_id,
        kind=kind.value,
        currency=currency,
        amount=amount,
        invoice_id=invoice_id,
        payment_id=payment_id,
        credit_note_id=credit_note_id,
        description=description,
        occurred_on=occurred_on,
        created_at=ctx.now(),
    )
    ctx.session.add(entry)
    return entry


async def local_today(ctx: Ctx, account_id: int) -> date:
    """Today in the account's timezone (its own, inherited, or the provider's)."""
    whole_provider = Scope(provider_id=ctx.provider_id, whole_provider=True)
    found = await accounts_repository.chain_of(ctx.session, whole_provider, account_id)
    if found is None:  # a deleted account's money rows outlive it
        provider = await providers.get(ctx.session, ctx.provider_id)
        return local_date(ctx.now(), provider.default_timezone)
    return local_date(
        ctx.now(), inheritance.resolve(found.accounts, "timezone", found.provider_timezone).value
    )


# --- money on invoices -------------------------------------------------------------------------


def allocate(ctx: Ctx, payment: Payment, invoice: Invoice, amount: int) -> PaymentAllocation:
    """Put ``amount`` of the payment on the invoice (negative: take it back for a refund).

    The caller checks the amounts and then calls ``settle`` with the invoices it touched.
    """
    allocation = PaymentAllocation(
        provider_id=ctx.provider_id,
        payment_id=payment.id,
        invoice_id=invoice.id,
        amount=amount,
        created_at=ctx.now(),
    )
    ctx.session.add(allocation)
    invoice.amount_paid += amount
    invoice.updated_at = ctx.now()
    return allocation


async def settle(ctx: Ctx, invoices: Iterable[Invoice], why: str) -> None:
    """Bring the status of invoices whose balance moved in line with it.

    Nothing left to pay: paid (from finalized or uncollectible), and its dunning holds
    lift. Owed again after a refund or a voided credit note: back to finalized; dunning
    starts again only when the periodic job finds it overdue.
    """
    now = ctx.now()
    settled: list[Invoice] = []
    events: list[dict[str, Any]] = []
    for invoice in {i.id: i for i in invoices}.values():
        due = balance_due(invoice)
        before = invoice.status
        if due <= 0 and before in repository.OPEN:
            invoice.status, invoice.paid_at = InvoiceStatus.paid.value, now
            settled.append(invoice)
        elif due > 0 and before == InvoiceStatus.paid.value:
            invoice.status, invoice.paid_at = InvoiceStatus.finalized.value, None
        else:
            continue
        invoice.updated_at = now
        events.append(
            audit.event(
                ctx,
                entity=INVOICE_ENTITY,
                entity_id=invoice.id,
                action="status_changed",
                account_id=invoice.owner_account_id,
                before={"status": before},
                after={"status": invoice.status, "balance_due": due, "why": why},
            )
        )
    await ctx.session.flush()
    await audit.record_many(ctx, events)
    await dunning.lift(ctx, settled, why)


# --- what the invoice service calls ------------------------------------------------------------


async def invoice_finalized(ctx: Ctx, invoice: Invoice) -> None:
    """Record a just-finalized invoice: its entry on the owner's ledger (+total), then the
    owner's unallocated payments applied to it, oldest first. Call it in the transaction
    that finalizes, after the invoice has its number and status."""
    await lock_account(ctx, invoice.owner_account_id)
    occurred_on = invoice.issue_date or await local_today(ctx, invoice.owner_account_id)
    await record(
        ctx, account_id=invoice.owner_account_id, kind=LedgerKind.invoice, amount=invoice.total_amount,
        currency=invoice.currency, occurred_on=occurred_on, description=f"Invoice {invoice.number}",
        invoice_id=invoice.id,
    )  # fmt: skip
    applied = False
    for payment, free in await repository.unallocated_payments(
        ctx.session, ctx.provider_id, invoice.owner_account_id, invoice.currency
    ):
        due = balance_due(invoice)
        if due <= 0:
            break
        allocate(ctx, payment, invoice, min(free, due))
        applied = True
    await ctx.session.flush()
    if applied:
        await settle(ctx, [invoice], "credit balance applied")


async def invoice_voided(ctx: Ctx, invoice: Invoice) -> None:
    """Record a voided invoice: what it still asked for comes off the owner's ledger, and its
    dunning holds lift. The invoice service voids only what nothing was paid or credited on."""
    await lock_account(ctx, invoice.owner_account_id)
    due = balance_due(invoice)
    if due:
        await record(
            ctx, account_id=invoice.owner_account_id, kind=LedgerKind.void, amount=-due,
            currency=invoice.currency, occurred_on=await local_today(ctx, invoice.owner_account_id),
            description=f"Invoice {invoice.number} voided", invoice_id=invoice.id,
        )  # fmt: skip
    await ctx.session.flush()
    await dunning.lift(ctx, [invoice], "voided")


async def unpaid_balance_of(session: AsyncSession, provider_id: int, account_id: int) -> int:
    """What the account's issued, unpaid invoices (finalized, uncollectible) still ask for."""
    return await repository.unpaid_balance(session, provider_id, account_id)


# --- reading the ledger ------------------------------------------------------------------------


@dataclass(frozen=True)
class Transactions:
    items: list[tuple[LedgerEntry, int]]
    next_cursor: str | None
    # The account's balance now: on the first page only.
    balance: int | None
    currency: str


async def transactions(ctx: Ctx, account_id: int, cursor: str | None, limit: int) -> Transactions:
    """The account's entries newest first, each with the balance after it."""
    check_limit(limit)
    scope = await scope_of(ctx)
    found = await accounts_repository.chain_of(ctx.session, scope, account_id)
    if found is None:
        raise accounts.not_found(account_id)
    before = id_cursor(cursor)
    rows = await repository.ledger_page(ctx.session, ctx.provider_id, account_id, before, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    balance: int | None = None
    if before is None:
        # The newest entry's running balance is the sum of every entry.
        balance = rows[0][1] if rows else 0
    currency = inheritance.resolve(found.accounts, "currency", found.provider_currency).value
    return Transactions(
        items=rows,
        next_cursor=encode_cursor(rows[-1][0].id) if more else None,
        balance=balance,
        currency=currency,
    )
