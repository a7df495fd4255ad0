"""Whatever happens to an account's money, in any order, its ledger balance equals
invoices - payments - credits + refunds, and equals what its open invoices still ask for
minus the credit no invoice has taken.

Each example works on an account of its own, so the ledgers it reads are its alone; the
tenant is shared by the examples of one engine.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from boughs.billing import credit_notes, ledger, payments
from boughs.billing import payments_repository as repository
from boughs.billing.models import CreditNote, Invoice, Payment, PaymentAllocation
from boughs.billing.payments_schemas import (
    CreditNoteCreate,
    CreditNoteLineIn,
    PaymentCreate,
    PaymentMethodName,
    RefundCreate,
)
from tests.billing.payments_matrix_cases import make_invoice
from tests.usage.support import new_account

_examples = itertools.count(1)


@dataclass(frozen=True)
class Finalize:
    total: int
    taxed: bool
    due_in: int


@dataclass(frozen=True)
class Pay:
    amount: int
    # None: oldest first; otherwise pick invoices by these positions among the open ones.
    choose: tuple[int, ...] | None


@dataclass(frozen=True)
class Credit:
    invoice: int
    share: float


@dataclass(frozen=True)
class Refund:
    payment: int
    share: float


@dataclass(frozen=True)
class VoidCredit:
    invoice: int


shares = st.floats(min_value=0.01, max_value=1.0)
operations = st.lists(
    st.one_of(
        st.builds(Finalize, st.integers(1, 5_000), st.booleans(), st.integers(-60, 30)),
        st.builds(
            Pay,
            st.integers(1, 8_000),
            st.one_of(st.none(), st.lists(st.integers(0, 5), max_size=3).map(tuple)),
        ),
        st.builds(Credit, st.integers(0, 10), shares),
        st.builds(Refund, st.integers(0, 10), shares),
        st.builds(VoidCredit, st.integers(0, 10)),
    ),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=operations)
async def test_the_ledger_balances(steps: list[Any], ctx_factory: Any) -> None:
    n = next(_examples)
    async with ctx_factory() as ctx:
        account = await new_account(ctx, f"Property {n}")
    invoices: list[int] = []
    payment_ids: list[int] = []
    for step_number, step in enumerate(steps):
        async with ctx_factory() as ctx:
            if isinstance(step, Finalize):
                subtotal = round(step.total / 1.1) if step.taxed else step.total
                invoice = await make_invoice(
                    ctx, account, step.total, subtotal=subtotal, tax_rate_ppm=100_000 if step.taxed else 0,
                    due_date=date(2026, 1, 15) + timedelta(days=step.due_in),
                )  # fmt: skip
                invoices.append(invoice.id)
            elif isinstance(step, Pay):
                chosen = None
                if step.choose is not None:
                    open_ids = [
                        i.id
                        for i in await repository.open_invoices(ctx.session, ctx.provider_id, account, "USD")
                    ]
                    chosen = list(dict.fromkeys(open_ids[p] for p in step.choose if p < len(open_ids)))
                data = PaymentCreate(
                    method=PaymentMethodName.cash, amount=step.amount, currency="USD",
                    received_on=date(2026, 1, 15), reference=f"p{n}-{step_number}", invoice_ids=chosen,
                )  # fmt: skip
                payment_ids.append((await payments.record(ctx, account, data))[0].id)
            elif isinstance(step, Credit) and invoices:
                invoice = await ctx.session.get(Invoice, invoices[step.invoice % len(invoices)])
                assert invoice is not None
                room = credit_notes.largest_subtotal(ledger.balance_due(invoice), invoice.tax_rate_ppm)
                amount = int(room * step.share)
                if invoice.status in credit_notes.CREDITABLE and amount > 0:
                    data_cn = CreditNoteCreate(
                        invoice_id=invoice.id,
                        reason="p",
                        lines=[CreditNoteLineIn(description="p", amount=amount)],
                    )
                    await credit_notes.create(ctx, data_cn)
            elif isinstance(step, Refund) and payment_ids:
                payment = await ctx.session.get(Payment, payment_ids[step.payment % len(payment_ids)])
                assert payment is not None
                amount = int((payment.amount - payment.refunded_amount) * step.share)
                if amount > 0:
                    await payments.refund(ctx, payment.id, RefundCreate(amount=amount, reason="p"))
            elif isinstance(step, VoidCredit) and invoices:
                notes = await repository.issued_credit_notes_of(
                    ctx.session, invoices[step.invoice % len(invoices)]
                )
                if notes:
                    await credit_notes.void(ctx, notes[-1].id)

    async with ctx_factory() as ctx:
        s = ctx.session
        rows = list(await s.scalars(select(Invoice).where(Invoice.owner_account_id == account)))
        paid_in = list(await s.scalars(select(Payment).where(Payment.account_id == account)))
        notes = list(await s.scalars(select(CreditNote).where(CreditNote.account_id == account)))
        invoiced = sum(i.total_amount for i in rows)
        received = sum(p.amount for p in paid_in)
        refunded = sum(p.refunded_amount for p in paid_in)
        credited = sum(c.total_amount for c in notes if c.status == "issued")
        balance = await repository.ledger_balance(s, ctx.provider_id, account)
        assert balance == invoiced - received - credited + refunded

        open_balances = sum(ledger.balance_due(i) for i in rows if i.status in ("finalized", "uncollectible"))
        unallocated = await repository.unallocated_total(s, ctx.provider_id, account)
        assert balance == open_balances - unallocated
        assert unallocated >= 0

        for invoice in rows:
            on_it = await s.scalar(
                select(func.coalesce(func.sum(PaymentAllocation.amount), 0)).where(
                    PaymentAllocation.invoice_id == invoice.id
                )
            )
            credited_on_it = sum(
                c.total_amount for c in notes if c.invoice_id == invoice.id and c.status == "issued"
            )
            assert (invoice.amount_paid, invoice.amount_credited) == (on_it, credited_on_it)
            due = ledger.balance_due(invoice)
            assert 0 <= due <= invoice.total_amount
            assert (invoice.status == "paid") == (due == 0), (invoice.status, due)
        for payment in paid_in:
            assert (
                0
                <= await repository.unallocated_of(s, payment.id)
                <= payment.amount - payment.refunded_amount
            )

        # The newest entry's running balance is the same sum, and so is the first page's balance.
        page = await ledger.transactions(ctx, account, None, 5)
        assert page.balance == balance
        if page.items:
            assert page.items[0][1] == balance
