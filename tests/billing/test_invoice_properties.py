"""Properties of the invoices a bill run writes, over random trees, prices, dates, discounts and taxes:
totals are sums of their lines, recurring charges match a day-by-day oracle within one minor unit
per line, a dry run previews exactly what the real run writes, and a finalized invoice never changes
whatever runs after it.

Each example bills a tree of its own (its own root), so examples never see each other's invoices.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from boughs.accounts.models import Account
from boughs.billing import rating
from boughs.billing import repository as repo
from boughs.billing import service as billing
from boughs.billing.models import BillRun, Invoice, InvoiceLine
from boughs.services.schemas import DiscountCreate
from tests.billing.support import new_account, new_plan, new_service

JAN1, JAN31 = date(2026, 1, 1), date(2026, 1, 31)
_examples = itertools.count(1)


@dataclass(frozen=True)
class ServiceSpec:
    price: int
    quantity: int
    start: date
    end: date | None
    discount: tuple[int, date, date] | None


@dataclass(frozen=True)
class AccountSpec:
    with_parent: bool
    services: tuple[ServiceSpec, ...]


days = st.integers(min_value=0, max_value=40).map(lambda n: date(2025, 12, 22) + timedelta(days=n))


@st.composite
def service_specs(draw: Any) -> ServiceSpec:
    start = draw(days)
    end = draw(st.none() | days.filter(lambda d: d >= start))
    discount = None
    if draw(st.booleans()):
        # A discount lies within its service's dates.
        a = draw(days.filter(lambda d: d >= start and (end is None or d <= end)))
        b = draw(days.filter(lambda d: d >= a and (end is None or d <= end)))
        discount = (draw(st.integers(1, 10_000)), a, b)
    return ServiceSpec(draw(st.integers(1, 99_999)), draw(st.integers(1, 3)), start, end, discount)


trees = st.tuples(
    st.tuples(service_specs()).map(tuple) | st.just(()),
    st.lists(
        st.builds(AccountSpec, st.booleans(), st.lists(service_specs(), max_size=2).map(tuple)), max_size=4
    ),
    st.sampled_from([None, 0, 50_000, 88_750, 200_000, "exempt"]),
)


def _oracle(spec: ServiceSpec) -> Decimal:
    """Day by day: the service's January days at price x quantity / 31."""
    first, last = max(spec.start, JAN1), min(spec.end or JAN31, JAN31)
    active = max((last - first).days + 1, 0)
    full = Decimal(spec.price * spec.quantity) * active / 31
    if spec.discount and active:
        bp, a, b = spec.discount
        overlap = max((min(last, b) - max(first, a)).days + 1, 0)
        full -= Decimal(spec.price * spec.quantity) * overlap / 31 * bp / 10_000
    return full


def _shape(invoice: Invoice, lines: list[InvoiceLine]) -> tuple[Any, ...]:
    return (
        invoice.owner_account_id, invoice.currency, invoice.total_amount, invoice.tax_amount, invoice.layout,
        [(ln.kind, ln.account_id, ln.service_id, ln.period_start, ln.period_end, ln.quantity, ln.unit_price,
          ln.amount) for ln in lines],
    )  # fmt: skip


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=trees)
async def test_invoices_are_sums_of_lines_match_the_oracle_and_never_change_once_issued(
    tree: tuple[tuple[ServiceSpec, ...], list[AccountSpec], Any], ctx_factory: Any, db: Any
) -> None:
    own_services, children, tax = tree
    n = next(_examples)
    specs: dict[int, ServiceSpec] = {}
    async with ctx_factory() as ctx:
        extra: dict[str, Any] = {"tax_exempt": True} if tax == "exempt" else {}
        if isinstance(tax, int):
            extra["tax_rate"] = rating.format_ppm(tax)
        root = await new_account(ctx, f"Root {n}", **extra)
        owned: list[tuple[int, AccountSpec]] = [(root, AccountSpec(False, own_services))]
        for i, child in enumerate(children):
            mode = "with_parent" if child.with_parent else "separate"
            owned.append((await new_account(ctx, f"Child {n}.{i}", root, invoice_mode=mode), child))
        for account_id, spec in owned:
            for s in spec.services:
                discounts = []
                if s.discount:
                    bp, a, b = s.discount
                    discounts = [DiscountCreate(percent=Decimal(bp) / 100, start_date=a, end_date=b)]
                plan = await new_plan(ctx, s.price)
                service_id = await new_service(
                    ctx, account_id, plan, s.start, end_date=s.end, quantity=s.quantity, discounts=discounts
                )
                specs[service_id] = s
        preview = BillRun(provider_id=ctx.provider_id, period_end=JAN31, dry_run=True, status="running",
                          total_amount={}, created_at=ctx.now())  # fmt: skip
        real = BillRun(provider_id=ctx.provider_id, period_end=JAN31, dry_run=False, status="running",
                       total_amount={}, created_at=ctx.now())  # fmt: skip
        ctx.session.add_all([preview, real])
        await ctx.session.flush()
        run_ids = (preview.id, real.id)

    async def billed(run_id: int) -> list[tuple[Invoice, list[InvoiceLine]]]:
        async with db.transaction(write=False) as session:
            invoices = list(await session.scalars(select(Invoice).where(Invoice.bill_run_id == run_id)))
            return [(i, await repo.lines_of(session, i.id)) for i in invoices]

    for run_id in run_ids:
        async with ctx_factory() as ctx:
            await billing.bill_roots(
                ctx, await repo.get_bill_run(ctx.session, ctx.provider_id, run_id), [root]
            )
    previews, drafts = await billed(run_ids[0]), await billed(run_ids[1])
    assert sorted(_shape(i, ls) for i, ls in previews) == sorted(_shape(i, ls) for i, ls in drafts)

    for invoice, lines in drafts:
        subtotal = sum(ln.amount for ln in lines if ln.kind != "tax")
        assert invoice.subtotal_amount == subtotal
        assert invoice.total_amount == subtotal + invoice.tax_amount == sum(ln.amount for ln in lines)
        expected_tax = 0 if tax in (None, "exempt") else rating.tax_amount(subtotal, int(tax))
        assert invoice.tax_amount == expected_tax
    by_service: dict[int, list[InvoiceLine]] = {}
    for _invoice, lines in drafts:
        for ln in lines:
            if ln.service_id is not None:
                by_service.setdefault(ln.service_id, []).append(ln)
    for service_id, spec in specs.items():
        lines = by_service.get(service_id, [])
        charged = sum(ln.amount for ln in lines)
        assert abs(Decimal(charged) - _oracle(spec)) <= len(lines) * Decimal("0.5") + Decimal("0.5"), (
            spec,
            [(ln.kind, ln.period_start, ln.period_end, ln.amount) for ln in lines],
        )

    if not drafts:
        return
    async with ctx_factory() as ctx:
        first = drafts[0][0]
        await billing.finalize(ctx, first.id)
    async with db.transaction(write=False) as session:
        issued = await session.get(Invoice, first.id)
        assert issued is not None
        before = _shape(issued, await repo.lines_of(session, first.id)), issued.number
    # Whatever runs afterwards: another run for the period, a new service back-dated into it.
    async with ctx_factory() as ctx:
        account = await ctx.session.get(Account, first.owner_account_id)
        assert account is not None
        await new_service(ctx, account.id, await new_plan(ctx, 1_234), JAN1)
        again = BillRun(provider_id=ctx.provider_id, period_end=JAN31, dry_run=False, status="running",
                        total_amount={}, created_at=ctx.now())  # fmt: skip
        ctx.session.add(again)
        await ctx.session.flush()
        _made, kept = await billing.bill_roots(ctx, again, [root])
        assert kept >= 1
    async with db.transaction(write=False) as session:
        issued = await session.get(Invoice, first.id)
        assert issued is not None
        assert (_shape(issued, await repo.lines_of(session, first.id)), issued.number) == before
