"""Payments, credit notes and transactions: building blocks for their tests, and their
requests and rules for the authorization matrix (tests/authz/test_matrix.py).

Invoices are written here as rows (the bill run is not needed to test what happens to
money on them): a draft with its lines, then issued as the invoice service issues it,
and recorded on the ledger through ``ledger.invoice_finalized`` as finalization does.

The rules: recording and refunding payments, issuing and voiding credit notes is the
provider's billing staff's (owner, admin, billing), in scope or not found; account users
in scope are refused (403). Reading follows the account's read scope (the payment's
account, the credit note's invoice owner). A credit note names its invoice in the body:
one outside the scope answers 422 naming ``invoice_id``, exactly as a missing one.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

import httpx

from boughs.billing import credit_notes, ledger
from boughs.billing.models import Invoice, InvoiceLine, LedgerKind, Payment
from boughs.billing.payments_schemas import CreditNoteCreate, CreditNoteLineIn
from boughs.context import Ctx
from tests.authz.matrix_world import ACCOUNTS, ActorSpec, World

API = "/api/v1"
MISSING = 987_654_321

_serial = itertools.count(1)


def _m() -> Any:
    from tests.authz import test_matrix

    return test_matrix


# --- building blocks ------------------------------------------------------------------------------


async def make_invoice(
    ctx: Ctx,
    owner_id: int,
    total: int,
    *,
    due_date: date = date(2025, 12, 1),
    account_ids: list[int] | None = None,
    status: str = "finalized",
    currency: str = "USD",
    tax_rate_ppm: int = 0,
    subtotal: int | None = None,
    line_amounts: list[int] | None = None,
    record: bool = True,
) -> Invoice:
    """An invoice of ``owner_id`` for ``total`` (tax included), issued with a number unless
    ``status`` is draft; a finalized one goes on the ledger as the invoice service would put it."""
    n = next(_serial)
    now = ctx.now()
    subtotal = total if subtotal is None else subtotal
    period_end = date(2000, 1, 1) + timedelta(days=n)
    invoice = Invoice(
        provider_id=ctx.provider_id, owner_account_id=owner_id, status="draft", currency=currency,
        period_start=period_end - timedelta(days=27), period_end=period_end,
        issue_date=due_date - timedelta(days=30), due_date=due_date, net_terms_days=30,
        tax_rate_ppm=tax_rate_ppm, subtotal_amount=subtotal, tax_amount=total - subtotal,
        total_amount=total, account_ids=account_ids or [owner_id], created_at=now, updated_at=now,
    )  # fmt: skip
    ctx.session.add(invoice)
    await ctx.session.flush()
    for position, amount in enumerate(line_amounts or [subtotal]):
        ctx.session.add(
            InvoiceLine(
                provider_id=ctx.provider_id, invoice_id=invoice.id, position=position, kind="recurring",
                account_id=owner_id, description=f"Line {position + 1}", period_start=invoice.period_start,
                period_end=period_end, quantity="1", unit_price=str(amount), amount=amount,
            )
        )  # fmt: skip
    await ctx.session.flush()
    if status != "draft":
        invoice.status, invoice.number, invoice.finalized_at = status, f"INV-T{n:06d}", now
        await ctx.session.flush()
        if record and status == "finalized":
            await ledger.invoice_finalized(ctx, invoice)
            await ctx.session.flush()
    return invoice


def payment_body(amount: int, reference: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "method": "bank_account",
        "amount": amount,
        "currency": "USD",
        "received_on": "2026-01-15",
        "reference": reference or f"ref-{next(_serial)}",
        **fields,
    }


async def make_payment(ctx: Ctx, account_id: int, amount: int) -> Payment:
    """A payment row with nothing allocated (its ledger entry too), for tests of reads."""
    payment = Payment(
        provider_id=ctx.provider_id, account_id=account_id, method="cash", amount=amount, currency="USD",
        received_on=ctx.now().date(), reference=f"made-{next(_serial)}", refunded_amount=0, note="",
        created_at=ctx.now(),
    )  # fmt: skip
    ctx.session.add(payment)
    await ctx.session.flush()
    await ledger.record(
        ctx, account_id=account_id, kind=LedgerKind.payment, amount=-amount, currency="USD",
        occurred_on=payment.received_on, description="Payment", payment_id=payment.id,
    )  # fmt: skip
    await ctx.session.flush()
    return payment


async def make_credit_note(ctx: Ctx, invoice_id: int, amount: int) -> int:
    data = CreditNoteCreate(
        invoice_id=invoice_id,
        reason="goodwill",
        lines=[CreditNoteLineIn(description="Goodwill", amount=amount)],
    )
    return (await credit_notes.create(ctx, data)).id


# --- the matrix -----------------------------------------------------------------------------------


def _provider_of(world: World, account_id: int) -> str:
    return ACCOUNTS[{v: k for k, v in world.ids.items()}[account_id]].provider


async def _invoice_on(world: World, account_id: int) -> int:
    async with world.db.transaction() as session:
        ctx = world.staff_ctx(session, _provider_of(world, account_id))
        return (await make_invoice(ctx, account_id, 10_000)).id


async def _payment_on(world: World, account_id: int) -> int:
    async with world.db.transaction() as session:
        ctx = world.staff_ctx(session, _provider_of(world, account_id))
        return (await make_payment(ctx, account_id, 500)).id


async def _credit_note_on(world: World, account_id: int) -> int:
    async with world.db.transaction() as session:
        ctx = world.staff_ctx(session, _provider_of(world, account_id))
        invoice = await make_invoice(ctx, account_id, 10_000)
        return await make_credit_note(ctx, invoice.id, 100)


def new_payment() -> Any:
    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        return _m().Request(f"{API}/accounts/{account_id or MISSING}/payments", payment_body(1_000))

    return fill


def on_payment(suffix: str = "", body: Any = None) -> Any:
    """A fresh payment of the target account (a missing id for "missing")."""

    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        payment_id = await _payment_on(world, account_id) if account_id else MISSING
        return _m().Request(f"{API}/payments/{payment_id}{suffix}", body)

    return fill


def new_credit_note() -> Any:
    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        invoice_id = await _invoice_on(world, account_id) if account_id else MISSING
        body = {"invoice_id": invoice_id, "reason": "matrix", "lines": [{"description": "m", "amount": 100}]}
        return _m().Request(f"{API}/credit-notes", body)

    return fill


def on_credit_note(suffix: str = "") -> Any:
    """A fresh credit note on an invoice of the target account (a missing id for "missing")."""

    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        note_id = await _credit_note_on(world, account_id) if account_id else MISSING
        return _m().Request(f"{API}/credit-notes/{note_id}{suffix}")

    return fill


def credit_notes_of(param: str) -> Any:
    """The credit notes list filtered by the target account (its own note is made first)."""

    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        if account_id is None:
            return _m().Request(f"{API}/credit-notes?{param}={MISSING}")
        note_id = await _credit_note_on(world, account_id)
        if param == "invoice_id":
            async with world.db.transaction() as session:
                ctx = world.staff_ctx(session, _provider_of(world, account_id))
                value = (await credit_notes.get(ctx, note_id)).invoice_id
        else:
            value = account_id
        return _m().Request(f"{API}/credit-notes?{param}={value}")

    return fill


def billing_staff(actor: ActorSpec, target: str | None) -> Any:
    """Money is recorded by the provider's billing staff: in scope, else as if missing."""
    m = _m()
    if not actor.authenticated:
        return m.UNAUTHORIZED
    assert target is not None
    if not m.in_scope(actor, target):
        return m.HIDDEN
    return m.OK if actor.staff_role and m.may(actor, target, m.BILLING) else m.FORBIDDEN


def credit_note_create(actor: ActorSpec, target: str | None) -> Any:
    """The invoice is named in the body: out of scope is 422 on invoice_id, as a missing one."""
    m = _m()
    if not actor.authenticated:
        return m.UNAUTHORIZED
    assert target is not None
    if not m.in_scope(actor, target):
        return m.Expect(422, "invoice_id", same_as_missing=True)
    return m.OK if actor.staff_role and m.may(actor, target, m.BILLING) else m.FORBIDDEN


def listed_credit_notes(
    world: World, actor: ActorSpec, target: str | None, response: httpx.Response
) -> str | None:
    """Only notes of accounts in the actor's scope; the target's own when it is in scope."""
    m = _m()
    by_id = {v: k for k, v in world.ids.items()}
    owners = {item["account_id"] for item in response.json()["items"]}
    visible = m.scope_names(actor)
    outside = [by_id.get(i, str(i)) for i in owners if by_id.get(i) not in visible and not actor.staff_role]
    if outside:
        return f"listed credit notes of {sorted(outside)} outside the scope"
    assert target is not None
    if target in visible and world.ids[target] not in owners:
        return f"the credit note of {target} is missing"
    if target not in visible and owners:
        return f"listed {sorted(by_id.get(i, str(i)) for i in owners)} for a target outside the scope"
    return None
