"""The demo's billing: payment methods as seed 002 shows them, and invoices to look at.

The landlord's card is shared with its units; Acme's card pays for its warehouse office,
which is billed on its own (seed 002, "a second office pays its own bill on the parent's
shared card"); the MSP pays by bank transfer. Last month is billed and finalized, this
month billed in advance as drafts. Loading again changes nothing: methods are added only to
accounts that have none, and a period already billed is not billed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from boughs.billing import payment_methods
from boughs.billing import repository as billing_repository
from boughs.billing import service as billing
from boughs.billing.models import BillRun, BillRunStatus
from boughs.billing.payment_methods_schemas import PaymentMethodCreate
from boughs.context import Ctx
from boughs.kit.clock import local_date
from boughs.providers import repository as providers

DEMO_PAYMENT_METHODS: dict[str, PaymentMethodCreate] = {
    "demo-landlord": PaymentMethodCreate(
        kind="card", label="Visa ending 4242", last_four="4242", holder="Harbourside Lofts Ltd",
        token_reference="demo_tok_landlord_visa", is_default=True, shared_with_children=True,
    ),
    "demo-acme": PaymentMethodCreate(
        kind="card", label="Company Mastercard", last_four="5454", holder="Acme Logistics",
        token_reference="demo_tok_acme_mc", is_default=True, shared_with_children=True,
    ),
    "demo-msp": PaymentMethodCreate(
        kind="bank_account", label="Operating account", last_four="0198", holder="Northwind Managed Services",
        token_reference="demo_tok_msp_sepa", is_default=True,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class DemoBilling:
    payment_methods_created: int
    invoices_created: int


def month_end(day: date) -> date:
    following = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    return following - timedelta(days=1)


async def load_billing(ctx: Ctx, ids: dict[str, int]) -> DemoBilling:
    methods = 0
    for external_id, data in DEMO_PAYMENT_METHODS.items():
        account_id = ids.get(external_id)
        if account_id is None:
            continue
        if (await payment_methods.list_methods(ctx, account_id, None, 1)).items:
            continue
        await payment_methods.create_method(ctx, account_id, data)
        methods += 1

    provider = await providers.get(ctx.session, ctx.provider_id)
    today = local_date(ctx.now(), provider.default_timezone)
    last_month = today.replace(day=1) - timedelta(days=1)
    roots = await billing_repository.root_ids(ctx.session, ctx.provider_id)
    invoices = 0
    for period_end, finalize in ((last_month, True), (month_end(today), False)):
        if await billing_repository.bill_run_for(ctx.session, ctx.provider_id, period_end):
            continue
        run = BillRun(
            provider_id=ctx.provider_id, period_end=period_end, dry_run=False,
            status=BillRunStatus.running.value, total_amount={}, roots_total=len(roots),
            created_by_user_id=ctx.actor.user_id, created_at=ctx.now(), started_at=ctx.now(),
        )  # fmt: skip
        ctx.session.add(run)
        await ctx.session.flush()
        made, _ = await billing.bill_roots(ctx, run, roots, finalize=finalize)
        run.roots_done, run.invoices_created = len(roots), made
        run.total_amount = await billing_repository.run_totals(ctx.session, run.id)
        run.status, run.finished_at = BillRunStatus.succeeded.value, ctx.now()
        invoices += made
    return DemoBilling(methods, invoices)
