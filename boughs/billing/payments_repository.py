"""Every query of payments, allocations, credit notes, the ledger and dunning holds.

Reads that answer a user take a Scope: a row is visible when the account it belongs to
(the payment's account, the credit note's invoice owner) lies in the scope. Money rows
name their account without a foreign key (they outlive it), so staff, who reach the
whole provider, also see the rows of deleted accounts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts.models import Account
from boughs.accounts.repository import IN_BOUND_SUBTREE, subtree_bounds
from boughs.authz.scope import Scope
from boughs.billing.models import (
    CreditNote,
    CreditNoteStatus,
    DunningHold,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LedgerEntry,
    Payment,
    PaymentAllocation,
    PaymentMethod,
)
from boughs.kit.paths import ids_of
from boughs.kit.types import storable_id
from boughs.providers.models import Provider

CHUNK = 500
# Issued invoices that may still be owed: a payment may settle them.
OPEN = (InvoiceStatus.finalized.value, InvoiceStatus.uncollectible.value)


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def balance_due_of() -> ColumnElement[int]:
    return Invoice.total_amount - Invoice.amount_paid - Invoice.amount_credited


def _owner_visible(scope: Scope) -> ColumnElement[bool]:
    """The row's account (outer-joined) is in the scope; staff also see the rows of deleted accounts."""
    if scope.whole_provider:
        return true()
    return and_(Account.id.is_not(None), scope.path_condition(Account.path))


# --- accounts ----------------------------------------------------------------------------------


async def account_path(session: AsyncSession, provider_id: int, account_id: int) -> str | None:
    return await session.scalar(
        select(Account.path).where(Account.provider_id == provider_id, Account.id == account_id)
    )


async def existing_accounts(session: AsyncSession, provider_id: int, ids: Sequence[int]) -> list[int]:
    found: list[int] = []
    for chunk in _chunks(ids):
        rows = await session.scalars(
            select(Account.id).where(Account.provider_id == provider_id, Account.id.in_(chunk))
        )
        found += rows
    return sorted(found)


async def usable_payment_method(
    session: AsyncSession, provider_id: int, method_id: int, account_path_: str, account_id: int
) -> PaymentMethod | None:
    """The method, if it is the account's own or an ancestor's shared with its children."""
    if not storable_id(method_id):
        return None
    ancestors = ids_of(account_path_)[:-1]
    return await session.scalar(
        select(PaymentMethod).where(
            PaymentMethod.id == method_id,
            PaymentMethod.provider_id == provider_id,
            or_(
                PaymentMethod.account_id == account_id,
                and_(PaymentMethod.account_id.in_(ancestors), PaymentMethod.shared_with_children),
            ),
        )
    )


# --- invoices ----------------------------------------------------------------------------------


async def invoices_for_update(
    session: AsyncSession, provider_id: int, ids: Sequence[int]
) -> dict[int, Invoice]:
    """Locked (on PostgreSQL) and re-read, so balances are the committed ones."""
    found: dict[int, Invoice] = {}
    for chunk in _chunks(ids):
        rows = await session.scalars(
            select(Invoice)
            .where(Invoice.provider_id == provider_id, Invoice.id.in_(chunk))
            .order_by(Invoice.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        found.update({invoice.id: invoice for invoice in rows})
    return found


async def open_invoices(
    session: AsyncSession, provider_id: int, owner_id: int, currency: str
) -> list[Invoice]:
    """The owner's invoices with a balance due, oldest first (by due date, then id), locked."""
    rows = await session.scalars(
        select(Invoice)
        .where(
            Invoice.provider_id == provider_id,
            Invoice.owner_account_id == owner_id,
            Invoice.status.in_(OPEN),
            Invoice.currency == currency,
            balance_due_of() > 0,
        )
        .order_by(Invoice.due_date, Invoice.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def invoice_with_owner_path(
    session: AsyncSession, scope: Scope, invoice_id: int
) -> tuple[Invoice, str] | None:
    """The invoice and its owner's path ("" when the owner is gone), if the owner is in the scope."""
    if not storable_id(invoice_id):
        return None
    row = (
        await session.execute(
            select(Invoice, Account.path)
            .outerjoin(Account, Account.id == Invoice.owner_account_id)
            .where(
                Invoice.id == invoice_id,
                Invoice.provider_id == scope.provider_id,
                _owner_visible(scope),
            )
        )
    ).first()
    return (row[0], row[1] or "") if row else None


async def unpaid_balance(session: AsyncSession, provider_id: int, account_id: int) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(balance_due_of()), 0)).where(
            Invoice.provider_id == provider_id,
            Invoice.owner_account_id == account_id,
            Invoice.status.in_(OPEN),
        )
    )
    return int(total or 0)


async def lines_of_invoice(
    session: AsyncSession, invoice_id: int, ids: Sequence[int]
) -> dict[int, InvoiceLine]:
    ids = [i for i in ids if storable_id(i)]
    if not ids:
        return {}
    rows = await session.scalars(
        select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id, InvoiceLine.id.in_(ids))
    )
    return {line.id: line for line in rows}


# --- payments and allocations ------------------------------------------------------------------


async def payment_by_reference(
    session: AsyncSession, provider_id: int, account_id: int, reference: str
) -> Payment | None:
    return await session.scalar(
        select(Payment).where(
            Payment.provider_id == provider_id,
            Payment.account_id == account_id,
            Payment.reference == reference,
        )
    )


async def get_payment(session: AsyncSession, scope: Scope, payment_id: int) -> tuple[Payment, str] | None:
    """The payment and its account's path ("" when the account is gone), if in the scope."""
    if not storable_id(payment_id):
        return None
    row = (
        await session.execute(
            select(Payment, Account.path)
            .outerjoin(Account, Account.id == Payment.account_id)
            .where(
                Payment.id == payment_id,
                Payment.provider_id == scope.provider_id,
                _owner_visible(scope),
            )
        )
    ).first()
    return (row[0], row[1] or "") if row else None


async def lock_payment(session: AsyncSession, payment_id: int) -> Payment:
    return (
        await session.scalars(
            select(Payment)
            .where(Payment.id == payment_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()


async def list_payments(
    session: AsyncSession, provider_id: int, account_id: int, before: int | None, limit: int
) -> list[Payment]:
    """Newest first."""
    query = select(Payment).where(Payment.provider_id == provider_id, Payment.account_id == account_id)
    if before is not None:
        query = query.where(Payment.id < before)
    return list(await session.scalars(query.order_by(Payment.id.desc()).limit(limit)))


async def allocations_of(
    session: AsyncSession, payment_ids: Sequence[int]
) -> dict[int, list[PaymentAllocation]]:
    found: dict[int, list[PaymentAllocation]] = {i: [] for i in payment_ids}
    for chunk in _chunks(payment_ids):
        rows = await session.scalars(
            select(PaymentAllocation)
            .where(PaymentAllocation.payment_id.in_(chunk))
            .order_by(PaymentAllocation.id)
        )
        for row in rows:
            found[row.payment_id].append(row)
    return found


def _unallocated() -> Any:
    allocated = (
        select(func.coalesce(func.sum(PaymentAllocation.amount), 0))
        .where(PaymentAllocation.payment_id == Payment.id)
        .scalar_subquery()
    )
    return Payment.amount - Payment.refunded_amount - allocated


async def unallocated_of(session: AsyncSession, payment_id: int) -> int:
    return int(await session.scalar(select(_unallocated()).where(Payment.id == payment_id)) or 0)


async def unallocated_payments(
    session: AsyncSession, provider_id: int, account_id: int, currency: str
) -> list[tuple[Payment, int]]:
    """The account's payments with money not yet on an invoice, oldest first (received, then id)."""
    free = _unallocated().label("free")
    rows = await session.execute(
        select(Payment, free)
        .where(
            Payment.provider_id == provider_id,
            Payment.account_id == account_id,
            Payment.currency == currency,
            Payment.refunded_amount < Payment.amount,
        )
        .order_by(Payment.received_on, Payment.id)
        .execution_options(populate_existing=True)
    )
    return [(row[0], int(row[1])) for row in rows.all() if row[1] > 0]


async def paid_invoices_of_payment(session: AsyncSession, payment_id: int) -> list[tuple[int, int]]:
    """(invoice id, what the payment still has on it) for each invoice it pays, newest invoice first."""
    net = func.sum(PaymentAllocation.amount)
    rows = await session.execute(
        select(Invoice.id, net)
        .join(PaymentAllocation, PaymentAllocation.invoice_id == Invoice.id)
        .where(PaymentAllocation.payment_id == payment_id)
        .group_by(Invoice.id, Invoice.due_date)
        .having(net > 0)
        .order_by(Invoice.due_date.desc(), Invoice.id.desc())
    )
    return [(int(row[0]), int(row[1])) for row in rows.all()]


async def unallocated_total(session: AsyncSession, provider_id: int, account_id: int) -> int:
    allocated = (
        select(func.coalesce(func.sum(PaymentAllocation.amount), 0))
        .join(Payment, Payment.id == PaymentAllocation.payment_id)
        .where(Payment.provider_id == provider_id, Payment.account_id == account_id)
        .scalar_subquery()
    )
    received = select(func.coalesce(func.sum(Payment.amount - Payment.refunded_amount), 0)).where(
        Payment.provider_id == provider_id, Payment.account_id == account_id
    )
    return int(await session.scalar(select(received.scalar_subquery() - allocated)) or 0)


# --- credit notes ------------------------------------------------------------------------------


async def take_credit_note_number(session: AsyncSession, provider_id: int) -> str:
    """The provider's next credit note number. The UPDATE holds the provider's row until the
    transaction ends, so concurrent issuers queue; a rolled-back issue gives its number back."""
    row = (
        await session.execute(
            update(Provider)
            .where(Provider.id == provider_id)
            .values(last_credit_note_number=Provider.last_credit_note_number + 1)
            .returning(Provider.last_credit_note_number, Provider.credit_note_number_prefix)
        )
    ).one()
    return f"{row.credit_note_number_prefix}{row.last_credit_note_number:06d}"


async def get_credit_note(
    session: AsyncSession, scope: Scope, credit_note_id: int
) -> tuple[CreditNote, str] | None:
    if not storable_id(credit_note_id):
        return None
    row = (
        await session.execute(
            select(CreditNote, Account.path)
            .outerjoin(Account, Account.id == CreditNote.account_id)
            .where(
                CreditNote.id == credit_note_id,
                CreditNote.provider_id == scope.provider_id,
                _owner_visible(scope),
            )
        )
    ).first()
    return (row[0], row[1] or "") if row else None


async def lock_credit_note(session: AsyncSession, credit_note_id: int) -> CreditNote:
    return (
        await session.scalars(
            select(CreditNote)
            .where(CreditNote.id == credit_note_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()


@dataclass(frozen=True)
class CreditNoteFilter:
    invoice_id: int | None = None
    account_id: int | None = None


async def list_credit_notes(
    session: AsyncSession, scope: Scope, f: CreditNoteFilter, before: int | None, limit: int
) -> list[CreditNote]:
    """Newest first."""
    query = (
        select(CreditNote)
        .outerjoin(Account, Account.id == CreditNote.account_id)
        .where(CreditNote.provider_id == scope.provider_id, _owner_visible(scope))
    )
    if f.invoice_id is not None:
        query = query.where(CreditNote.invoice_id == f.invoice_id)
    if f.account_id is not None:
        query = query.where(CreditNote.account_id == f.account_id)
    if before is not None:
        query = query.where(CreditNote.id < before)
    return list(await session.scalars(query.order_by(CreditNote.id.desc()).limit(limit)))


async def issued_credit_notes_of(session: AsyncSession, invoice_id: int) -> list[CreditNote]:
    rows = await session.scalars(
        select(CreditNote)
        .where(CreditNote.invoice_id == invoice_id, CreditNote.status == CreditNoteStatus.issued.value)
        .order_by(CreditNote.id)
    )
    return list(rows)


# --- the ledger --------------------------------------------------------------------------------


async def ledger_page(
    session: AsyncSession, provider_id: int, account_id: int, before: int | None, limit: int
) -> list[tuple[LedgerEntry, int]]:
    """Entries newest first, each with the account's balance after it.

    One statement: the page, plus the sum of everything older than its oldest entry; the
    running balance within the page is a window over the page alone, so a deep page costs
    what the first one does (one indexed sum over the older entries).
    """
    mine = and_(LedgerEntry.provider_id == provider_id, LedgerEntry.account_id == account_id)
    page_query = select(LedgerEntry.id).where(mine)
    if before is not None:
        page_query = page_query.where(LedgerEntry.id < before)
    page = page_query.order_by(LedgerEntry.id.desc()).limit(limit).cte("page")
    older = (
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .where(mine, LedgerEntry.id < select(func.min(page.c.id)).scalar_subquery())
        .scalar_subquery()
    )
    running = func.sum(LedgerEntry.amount).over(order_by=LedgerEntry.id)
    rows = await session.execute(
        select(LedgerEntry, (running + older).label("balance_after"))
        .where(LedgerEntry.id.in_(select(page.c.id)))
        .order_by(LedgerEntry.id.desc())
    )
    return [(row[0], int(row[1])) for row in rows.all()]


async def ledger_balance(session: AsyncSession, provider_id: int, account_id: int) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.provider_id == provider_id, LedgerEntry.account_id == account_id
        )
    )
    return int(total or 0)


# --- dunning -----------------------------------------------------------------------------------


async def overdue_invoices(
    session: AsyncSession, provider_id: int, due_before: date, limit: int
) -> list[Invoice]:
    """Finalized invoices with a balance due before ``due_before`` and no dunning yet, by id."""
    rows = await session.scalars(
        select(Invoice)
        .where(
            Invoice.provider_id == provider_id,
            Invoice.status == InvoiceStatus.finalized.value,
            Invoice.due_date < due_before,
            Invoice.dunning_started_at.is_(None),
            balance_due_of() > 0,
        )
        .order_by(Invoice.id)
        .limit(limit)
    )
    return list(rows)


async def holds_of(session: AsyncSession, invoice_ids: Sequence[int], *, active: bool) -> list[DunningHold]:
    found: list[DunningHold] = []
    for chunk in _chunks(invoice_ids):
        query = select(DunningHold).where(DunningHold.invoice_id.in_(chunk))
        if active:
            query = query.where(DunningHold.lifted_at.is_(None))
        found += await session.scalars(query.order_by(DunningHold.id))
    return found


async def invoices_settled_under_hold(session: AsyncSession, provider_id: int, limit: int) -> list[Invoice]:
    """Invoices that hold accounts although nothing is owed on them any more (paid or void)."""
    rows = await session.scalars(
        select(Invoice)
        .where(
            Invoice.provider_id == provider_id,
            Invoice.id.in_(select(DunningHold.invoice_id).where(DunningHold.lifted_at.is_(None))),
            or_(
                Invoice.status.in_((InvoiceStatus.paid.value, InvoiceStatus.void.value)),
                balance_due_of() <= 0,
            ),
        )
        .order_by(Invoice.id)
        .limit(limit)
    )
    return list(rows)


async def still_held(session: AsyncSession, account_ids: Sequence[int]) -> set[int]:
    """Those of these accounts with a hold not yet lifted."""
    found: set[int] = set()
    for chunk in _chunks(account_ids):
        rows = await session.scalars(
            select(DunningHold.account_id)
            .where(DunningHold.account_id.in_(chunk), DunningHold.lifted_at.is_(None))
            .distinct()
        )
        found.update(rows)
    return found


async def set_dunning_hold(
    session: AsyncSession, provider_id: int, account_ids: Sequence[int], held: bool, now: datetime
) -> list[int]:
    """Set the flag where it differs; returns the accounts changed."""
    changed: list[int] = []
    for chunk in _chunks(account_ids):
        rows = await session.scalars(
            update(Account)
            .where(Account.provider_id == provider_id, Account.id.in_(chunk), Account.dunning_hold != held)
            .values(dunning_hold=held, updated_at=now)
            .returning(Account.id)
            .execution_options(synchronize_session="fetch")
        )
        changed += rows
    return sorted(changed)


async def held_among(session: AsyncSession, provider_id: int, account_ids: Sequence[int]) -> set[int]:
    """Those of these accounts held for an unpaid invoice (services' lifecycle asks)."""
    found: set[int] = set()
    for chunk in _chunks(account_ids):
        rows = await session.scalars(
            select(Account.id).where(
                Account.provider_id == provider_id, Account.id.in_(chunk), Account.dunning_hold
            )
        )
        found.update(rows)
    return found


_HELD_IN_SUBTREE = select(Account.id, Account.path).where(
    Account.provider_id == bindparam("provider_id"), IN_BOUND_SUBTREE, Account.dunning_hold
)


async def held_in_subtree(session: AsyncSession, provider_id: int, path: str) -> list[tuple[int, str]]:
    """(id, path) of the accounts of the subtree at ``path`` held for an unpaid invoice."""
    rows = await session.execute(_HELD_IN_SUBTREE, {"provider_id": provider_id, **subtree_bounds(path)})
    return [(int(row[0]), str(row[1])) for row in rows.all()]


# --- the dashboard -----------------------------------------------------------------------------


def _overdue_in(scope: Scope, due_before: date) -> list[ColumnElement[bool]]:
    return [
        Invoice.provider_id == scope.provider_id,
        Invoice.status == InvoiceStatus.finalized.value,
        Invoice.due_date < due_before,
        balance_due_of() > 0,
    ]


async def overdue_totals(session: AsyncSession, scope: Scope, due_before: date) -> list[tuple[str, int, int]]:
    """Per currency: how many invoices in the scope are past due with a balance, and how much."""
    stmt = select(Invoice.currency, func.count(), func.sum(balance_due_of())).where(
        *_overdue_in(scope, due_before)
    )
    if not scope.whole_provider:
        stmt = stmt.join(Account, Account.id == Invoice.owner_account_id).where(
            scope.path_condition(Account.path)
        )
    rows = await session.execute(stmt.group_by(Invoice.currency).order_by(Invoice.currency))
    return [(str(currency), int(count), int(due or 0)) for currency, count, due in rows.all()]


async def overdue_first(
    session: AsyncSession, scope: Scope, due_before: date, limit: int
) -> list[tuple[Invoice, str | None]]:
    """The longest overdue invoices in the scope, each with its owner's name (None once deleted)."""
    rows = await session.execute(
        select(Invoice, Account.name)
        .outerjoin(Account, Account.id == Invoice.owner_account_id)
        .where(*_overdue_in(scope, due_before), _owner_visible(scope))
        .order_by(Invoice.due_date, Invoice.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in rows.all()]
