"""The bill-run and invoice routes for the authorization matrix (tests/authz/test_matrix.py).

Bill runs are the provider's: its owner, admins and billing staff start and read them. An
invoice is read like the account that owns it; only billing staff change one, and anyone
who cannot see it gets the same answer as for an invoice that does not exist.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

from boughs.billing.models import BillRun, Invoice, InvoiceLine
from tests.authz.matrix_world import A, ActorSpec, World

API = "/api/v1"
MISSING = 987_654_321
BILLING_STAFF = ("owner", "admin", "billing")
_serial = itertools.count(1)


def _m() -> Any:
    from tests.authz import test_matrix

    return test_matrix


def billing_staff(actor: ActorSpec, target: str | None) -> Any:
    m = _m()
    if not actor.authenticated:
        return m.UNAUTHORIZED
    return m.OK if actor.staff_role in BILLING_STAFF else m.FORBIDDEN


def bill_run_read(actor: ActorSpec, target: str | None) -> Any:
    m = _m()
    expect = billing_staff(actor, target)
    if expect == m.OK and actor.provider != A:
        return m.HIDDEN
    return expect


def invoice_read(actor: ActorSpec, target: str | None) -> Any:
    m = _m()
    if not actor.authenticated:
        return m.UNAUTHORIZED
    assert target is not None
    return m.OK if m.in_scope(actor, target) else m.HIDDEN


def invoice_write(actor: ActorSpec, target: str | None) -> Any:
    m = _m()
    expect = invoice_read(actor, target)
    if expect != m.OK:
        return expect
    return m.OK if actor.staff_role in BILLING_STAFF else m.FORBIDDEN


async def _invoice(world: World, account_id: int) -> int:
    """A fresh draft invoice owned by the account, with one line (each for a period of its own)."""
    from boughs.accounts.models import Account

    async with world.db.transaction() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        now, day = world.clock.now(), date(2000, 1, 1) + timedelta(days=next(_serial))
        invoice = Invoice(
            provider_id=account.provider_id, bill_run_id=None, owner_account_id=account_id, status="draft",
            currency="USD", period_start=day, period_end=day, net_terms_days=30, tax_rate_ppm=0,
            tax_exempt=False, layout="breakdown", subtotal_amount=100, tax_amount=0, total_amount=100,
            amount_paid=0, amount_credited=0, bill_to={"name": account.name}, payer={},
            account_ids=[account_id], created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(invoice)
        await session.flush()
        session.add(
            InvoiceLine(
                provider_id=account.provider_id, invoice_id=invoice.id, position=1, kind="recurring",
                account_id=account_id, description="Matrix", period_start=day, period_end=day,
                quantity="1", unit_price="1", amount=100, details={},
            )
        )  # fmt: skip
        return invoice.id


def invoice(suffix: str = "", body: Any = None) -> Any:
    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        invoice_id = await _invoice(world, account_id) if account_id else MISSING
        return _m().Request(f"{API}/invoices/{invoice_id}{suffix}", body)

    return fill


def invoices_of_account() -> Any:
    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        return _m().Request(f"{API}/invoices?account_id={account_id or MISSING}")

    return fill


def new_bill_run(world: World) -> dict[str, Any]:
    return {"period_end": "2026-01-31", "dry_run": True}


def bill_run() -> Any:
    async def fill(world: World, actor: str, ref: int | None) -> Any:
        if ref is None:
            return _m().Request(f"{API}/bill-runs/{MISSING}")
        async with world.db.transaction() as session:
            ctx = world.staff_ctx(session, A)
            run = BillRun(
                provider_id=ctx.provider_id, period_end=date(2026, 1, 31), dry_run=True, status="succeeded",
                total_amount={}, created_at=world.clock.now(),
            )  # fmt: skip
            session.add(run)
            await session.flush()
            return _m().Request(f"{API}/bill-runs/{run.id}")

    return fill
