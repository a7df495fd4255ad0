"""Dunning: an overdue invoice suspends exactly the accounts whose charges it carries.

An invoice still owed ``dunning_grace_days`` after its due date (dates in the provider's
timezone) holds its owner and the accounts in its ``account_ids`` (the with_parent
descendants billed on it): a ``DunningHold`` row each, and ``account.dunning_hold`` set.
The hold suspends the account itself, not its subtree: a separately billed child under a
held parent stays active, and so does the rest of the tree. The account's own status is
never touched; its services stop through the services' lifecycle, which counts a held
account as blocked, and come back by the same road when the last hold on it is lifted.

Settling the invoice (paid or credited in full, or voided) lifts its holds at once. The
periodic job also lifts any hold whose invoice is no longer owed, whatever settled it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from boughs.accounts import repository as accounts_repository
from boughs.audit import service as audit
from boughs.billing import payments_repository as repository
from boughs.billing.models import DunningHold, Invoice, InvoiceStatus
from boughs.context import Ctx
from boughs.kit.clock import local_date
from boughs.providers import repository as providers
from boughs.services import lifecycle

ENTITY = "dunning_hold"
BATCH = 200


@dataclass(frozen=True)
class Batch:
    invoice_ids: list[int]
    account_ids: list[int]
    # Another batch may find more.
    more: bool


def _balance_due(invoice: Invoice) -> int:
    return invoice.total_amount - invoice.amount_paid - invoice.amount_credited


def _overdue(invoice: Invoice, due_before: date) -> bool:
    return (
        invoice.status == InvoiceStatus.finalized.value
        and invoice.due_date is not None
        and invoice.due_date < due_before
        and invoice.dunning_started_at is None
        and _balance_due(invoice) > 0
    )


async def due_before(ctx: Ctx) -> date:
    """Invoices due before this date are overdue past the grace period today."""
    provider = await providers.get(ctx.session, ctx.provider_id)
    today = local_date(ctx.now(), provider.default_timezone)
    return today - timedelta(days=provider.dunning_grace_days)


async def start_overdue(ctx: Ctx, limit: int = BATCH) -> Batch:
    """Hold the accounts of up to ``limit`` invoices newly overdue; call again while ``more``.

    A batch costs a handful of statements whatever its size. The invoices are re-read
    under their accounts' locks (the lock a payment takes first), so one a payment settled
    meanwhile is seen, and nothing is held for a paid invoice.
    """
    cutoff = await due_before(ctx)
    candidates = await repository.overdue_invoices(ctx.session, ctx.provider_id, cutoff, limit)
    if not candidates:
        return Batch([], [], more=False)
    wanted = {i.id: [i.owner_account_id, *i.account_ids] for i in candidates}
    existing = set(
        await repository.existing_accounts(
            ctx.session, ctx.provider_id, [a for ids in wanted.values() for a in ids]
        )
    )
    await accounts_repository.lock(ctx.session, ctx.provider_id, sorted(existing))
    fresh = await repository.invoices_for_update(ctx.session, ctx.provider_id, list(wanted))
    invoices = [fresh[i] for i in sorted(fresh) if _overdue(fresh[i], cutoff)]
    holds = {i.id: sorted({a for a in wanted[i.id] if a in existing}) for i in invoices}
    for invoice in invoices:
        invoice.dunning_started_at = invoice.updated_at = ctx.now()
    await _hold(ctx, invoices, holds)
    held = sorted({a for ids in holds.values() for a in ids})
    await lifecycle.reconcile_accounts(ctx, held)
    return Batch([i.id for i in invoices], held, more=len(candidates) == limit)


async def _hold(ctx: Ctx, invoices: Sequence[Invoice], account_ids: dict[int, list[int]]) -> None:
    now = ctx.now()
    # A hold lifted earlier (paid, then refunded and overdue again) is taken up again.
    earlier = {
        (h.invoice_id, h.account_id): h
        for h in await repository.holds_of(ctx.session, [i.id for i in invoices], active=False)
    }
    made: list[tuple[Invoice, DunningHold]] = []
    for invoice in invoices:
        for account_id in account_ids[invoice.id]:
            hold = earlier.get((invoice.id, account_id))
            if hold is None:
                hold = DunningHold(
                    provider_id=ctx.provider_id, invoice_id=invoice.id, account_id=account_id, created_at=now
                )
                ctx.session.add(hold)
            elif hold.lifted_at is None:
                continue
            else:
                hold.created_at, hold.lifted_at = now, None
            made.append((invoice, hold))
    await ctx.session.flush()
    every = sorted({a for ids in account_ids.values() for a in ids})
    await repository.set_dunning_hold(ctx.session, ctx.provider_id, every, True, now)
    events = []
    for invoice, hold in made:
        after = {
            "invoice_id": invoice.id,
            "invoice_number": invoice.number,
            "due_date": invoice.due_date,
            "balance_due": _balance_due(invoice),
        }
        events.append(
            audit.event(
                ctx, entity=ENTITY, entity_id=hold.id, action="held", account_id=hold.account_id, after=after
            )
        )
    await audit.record_many(ctx, events)


async def lift(ctx: Ctx, invoices: Sequence[Invoice], why: str) -> list[int]:
    """Lift the holds of these invoices; returns the accounts no longer held by anything.

    An account stays held while another of its invoices is overdue.
    """
    if not invoices:
        return []
    now = ctx.now()
    for invoice in invoices:
        if invoice.dunning_started_at is not None:
            invoice.dunning_started_at, invoice.updated_at = None, now
    holds = await repository.holds_of(ctx.session, [i.id for i in invoices], active=True)
    if not holds:
        await ctx.session.flush()
        return []
    for hold in holds:
        hold.lifted_at = now
    await ctx.session.flush()
    await audit.record_many(
        ctx,
        [
            audit.event(
                ctx,
                entity=ENTITY,
                entity_id=hold.id,
                action="lifted",
                account_id=hold.account_id,
                before={"lifted_at": None},
                after={"invoice_id": hold.invoice_id, "lifted_at": now, "why": why},
            )
            for hold in holds
        ],
    )
    account_ids = sorted({hold.account_id for hold in holds})
    remaining = await repository.still_held(ctx.session, account_ids)
    released = await repository.set_dunning_hold(
        ctx.session, ctx.provider_id, [a for a in account_ids if a not in remaining], False, now
    )
    await lifecycle.reconcile_accounts(ctx, released)
    return released


async def lift_settled(ctx: Ctx, limit: int = BATCH) -> Batch:
    """Lift the holds of invoices settled by any road (paid, credited in full, voided)."""
    invoices = await repository.invoices_settled_under_hold(ctx.session, ctx.provider_id, limit)
    owners = await repository.existing_accounts(
        ctx.session, ctx.provider_id, [i.owner_account_id for i in invoices]
    )
    await accounts_repository.lock(ctx.session, ctx.provider_id, owners)
    released = await lift(ctx, invoices, "settled")
    return Batch([i.id for i in invoices], released, more=len(invoices) == limit)
