"""Payments: recording the money an account sends, putting it on invoices, refunding it.

A payment is recorded once per sender's reference: a retry with the same reference and
the same content answers the payment already recorded, other content is a conflict. The
money goes on the invoices named, in their order, or else on the account's open invoices
oldest first (by due date, then id); what no invoice takes stays unallocated, the
account's credit balance, and pays the next invoices as they are finalized
(``ledger.invoice_finalized``). An invoice paid in full is ``paid`` and its dunning lifts.

A refund gives back money from the unallocated part first, then off the invoices the
payment paid, newest first (negative allocations): those invoices are owed again.

Only the provider's staff with billing rights record and refund payments; the account's
users who may read it see its payments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from boughs.accounts import inheritance
from boughs.accounts import repository as accounts_repository
from boughs.accounts import service as accounts
from boughs.audit import service as audit
from boughs.authz.permissions import Permission
from boughs.authz.scope import scope_of
from boughs.billing import ledger
from boughs.billing import payments_repository as repository
from boughs.billing.models import Invoice, LedgerKind, Payment
from boughs.billing.payments_schemas import AllocationOut, PaymentCreate, PaymentOut, RefundCreate
from boughs.context import Ctx
from boughs.kit.clock import local_date
from boughs.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from boughs.kit.pagination import PageOf, check_limit, id_cursor, page_of

ENTITY = "payment"
# What makes two payments with one reference the same payment.
CONTENT = ("method", "payment_method_id", "amount", "currency", "received_on", "note")


def not_found(payment_id: int) -> NotFound:
    return NotFound(
        detail=f"There is no payment {payment_id}.",
        fix="check the id; you can only reach payments of accounts in your own scope",
    )


async def require_billing_staff(ctx: Ctx, path: str, doing: str) -> None:
    """Money received and paid out is the provider's to record: its staff with billing
    rights (owner, admin, billing), never the account's own users."""
    scope = await scope_of(ctx)
    if ctx.actor.is_staff and scope.allows(path, Permission.manage_billing):
        return
    role = ctx.actor.staff_role or ", ".join(sorted(scope.roles_at(path))) or "none"
    raise Forbidden(
        detail=f"Your role ({role}) does not allow you to {doing}: only the provider's billing staff may.",
        fix="ask the provider's owner, an admin or its billing staff to do it",
    )


def snapshot(payment: Payment) -> dict[str, Any]:
    return {
        "account_id": payment.account_id, "payment_method_id": payment.payment_method_id,
        "method": payment.method, "amount": payment.amount, "currency": payment.currency,
        "received_on": payment.received_on, "reference": payment.reference,
        "refunded_amount": payment.refunded_amount, "note": payment.note,
    }  # fmt: skip


# --- recording ---------------------------------------------------------------------------------


def _check_same(existing: Payment, data: PaymentCreate) -> None:
    wanted = {name: getattr(data, name) for name in CONTENT}
    wanted["method"] = data.method.value
    differs = sorted(name for name in CONTENT if getattr(existing, name) != wanted[name])
    if differs:
        raise Conflict.on_field(
            "reference",
            f"'{data.reference}' is already recorded for this account as payment {existing.id}, "
            f"with another {', '.join(differs)}",
            "a retry must send the same content; a different payment needs its own reference",
            payment_id=existing.id,
        )


async def _chosen(ctx: Ctx, account_id: int, currency: str, ids: Sequence[int]) -> list[Invoice]:
    """The invoices named, in their order: each an open invoice of this account."""
    found = await repository.invoices_for_update(ctx.session, ctx.provider_id, ids)
    chosen: list[Invoice] = []
    seen: set[int] = set()
    for position, invoice_id in enumerate(ids):
        field = f"invoice_ids.{position}"
        if invoice_id in seen:
            raise InvalidInput.on_field(
                field, f"invoice {invoice_id} is listed twice", "name each invoice once"
            )
        seen.add(invoice_id)
        invoice = found.get(invoice_id)
        if invoice is None or invoice.owner_account_id != account_id:
            raise InvalidInput.on_field(
                field,
                f"there is no invoice {invoice_id} of account {account_id}",
                "name invoices this account received (GET /api/v1/invoices?account_id=…)",
            )
        if invoice.status not in repository.OPEN or ledger.balance_due(invoice) <= 0:
            why = "has nothing left to pay" if invoice.status in repository.OPEN else f"is {invoice.status}"
            raise InvalidInput.on_field(
                field,
                f"invoice {invoice_id} {why}",
                "name finalized or uncollectible invoices with a balance due, or leave invoice_ids out",
            )
        if invoice.currency != currency:
            raise InvalidInput.on_field(
                field,
                f"invoice {invoice_id} is in {invoice.currency}, the payment in {currency}",
                "pay each invoice in its own currency",
            )
        chosen.append(invoice)
    return chosen


async def record(ctx: Ctx, account_id: int, data: PaymentCreate) -> tuple[Payment, bool]:
    """The payment, and whether it was recorded now (False: a retry of one already recorded)."""
    found = await accounts_repository.chain_of(ctx.session, await scope_of(ctx), account_id)
    if found is None:
        raise accounts.not_found(account_id)
    account = found.account
    await require_billing_staff(ctx, account.path, "record payments")
    # Taken before looking the reference up: a concurrent retry waits and then finds it.
    await ledger.lock_account(ctx, account.id)
    existing = await repository.payment_by_reference(ctx.session, ctx.provider_id, account.id, data.reference)
    if existing is not None:
        _check_same(existing, data)
        return existing, False

    currency = inheritance.resolve(found.accounts, "currency", found.provider_currency).value
    if data.currency != currency:
        raise InvalidInput.on_field(
            "currency",
            f"account {account.id} is billed in {currency}, not {data.currency}",
            f"record the payment in {currency}",
        )
    timezone = inheritance.resolve(found.accounts, "timezone", found.provider_timezone).value
    today = local_date(ctx.now(), timezone)
    if data.received_on > today:
        raise InvalidInput.on_field(
            "received_on",
            f"{data.received_on.isoformat()} is in the future (today is {today.isoformat()} in {timezone})",
            "record a payment on or after the day it is received",
        )
    if data.payment_method_id is not None and (
        await repository.usable_payment_method(
            ctx.session, ctx.provider_id, data.payment_method_id, account.path, account.id
        )
        is None
    ):
        raise InvalidInput.on_field(
            "payment_method_id",
            f"account {account.id} has no payment method {data.payment_method_id}",
            "give one of its own methods, or an ancestor's method shared with its children",
        )
    chosen = None if data.invoice_ids is None else await _chosen(ctx, account.id, currency, data.invoice_ids)

    now = ctx.now()
    payment = Payment(
        provider_id=ctx.provider_id, account_id=account.id, payment_method_id=data.payment_method_id,
        method=data.method.value, amount=data.amount, currency=currency, received_on=data.received_on,
        reference=data.reference, refunded_amount=0, note=data.note,
        created_by_user_id=ctx.actor.user_id, created_at=now,
    )  # fmt: skip
    ctx.session.add(payment)
    await ctx.session.flush()
    await ledger.record(
        ctx, account_id=account.id, kind=LedgerKind.payment, amount=-payment.amount, currency=currency,
        occurred_on=payment.received_on, description=f"Payment {payment.reference} ({payment.method})",
        payment_id=payment.id,
    )  # fmt: skip
    invoices = (
        chosen
        if chosen is not None
        else await repository.open_invoices(ctx.session, ctx.provider_id, account.id, currency)
    )
    left = payment.amount
    touched: list[Invoice] = []
    allocated: list[dict[str, int]] = []
    for invoice in invoices:
        amount = min(left, ledger.balance_due(invoice))
        if amount <= 0:
            break
        ledger.allocate(ctx, payment, invoice, amount)
        touched.append(invoice)
        allocated.append({"invoice_id": invoice.id, "amount": amount})
        left -= amount
    await ctx.session.flush()
    await audit.record(
        ctx, entity=ENTITY, entity_id=payment.id, action="recorded", account_id=account.id,
        after={**snapshot(payment), "allocations": allocated, "unallocated_amount": left},
    )  # fmt: skip
    await ledger.settle(ctx, touched, "payment")
    return payment, True


# --- reading -----------------------------------------------------------------------------------


async def get(ctx: Ctx, payment_id: int) -> Payment:
    found = await repository.get_payment(ctx.session, await scope_of(ctx), payment_id)
    if found is None:
        raise not_found(payment_id)
    return found[0]


async def list_for_account(ctx: Ctx, account_id: int, cursor: str | None, limit: int) -> PageOf[Payment]:
    """Newest first."""
    check_limit(limit)
    account = await accounts.get(ctx, account_id)
    rows = await repository.list_payments(
        ctx.session, ctx.provider_id, account.id, id_cursor(cursor), limit + 1
    )
    return page_of(rows, limit)


async def to_out_many(ctx: Ctx, payments: Sequence[Payment]) -> list[PaymentOut]:
    """With their allocations: one query for them all."""
    allocations = await repository.allocations_of(ctx.session, [p.id for p in payments])
    out = []
    for payment in payments:
        rows = allocations[payment.id]
        unallocated = payment.amount - payment.refunded_amount - sum(a.amount for a in rows)
        out.append(
            PaymentOut(
                id=payment.id, account_id=payment.account_id, payment_method_id=payment.payment_method_id,
                method=payment.method, amount=payment.amount, currency=payment.currency,
                received_on=payment.received_on, reference=payment.reference,
                refunded_amount=payment.refunded_amount, unallocated_amount=unallocated, note=payment.note,
                created_by_user_id=payment.created_by_user_id, created_at=payment.created_at,
                allocations=[AllocationOut.model_validate(a) for a in rows],
            )
        )  # fmt: skip
    return out


async def to_out(ctx: Ctx, payment: Payment) -> PaymentOut:
    return (await to_out_many(ctx, [payment]))[0]


# --- refunds -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refund:
    payment: Payment
    amount: int
    reason: str
    from_unallocated: int
    # (invoice id, amount taken back off it), newest invoice first
    from_invoices: list[tuple[int, int]]


async def refund(ctx: Ctx, payment_id: int, data: RefundCreate) -> Refund:
    found = await repository.get_payment(ctx.session, await scope_of(ctx), payment_id)
    if found is None:
        raise not_found(payment_id)
    payment, path = found
    await require_billing_staff(ctx, path, "refund payments")
    await ledger.lock_account(ctx, payment.account_id)
    payment = await repository.lock_payment(ctx.session, payment.id)
    refundable = payment.amount - payment.refunded_amount
    if refundable == 0:
        raise Conflict(
            detail=f"Payment {payment.id} is refunded in full already.",
            fix="there is nothing left of it to refund",
        )
    if data.amount > refundable:
        raise InvalidInput.on_field(
            "amount",
            f"is more than the {refundable} of payment {payment.id} not refunded yet",
            f"refund at most {refundable}",
            maximum=refundable,
        )
    free = max(await repository.unallocated_of(ctx.session, payment.id), 0)
    from_free = min(data.amount, free)
    rest = data.amount - from_free
    taken: list[tuple[int, int]] = []
    touched: list[Invoice] = []
    if rest:
        paid = await repository.paid_invoices_of_payment(ctx.session, payment.id)
        invoices = await repository.invoices_for_update(ctx.session, ctx.provider_id, [i for i, _ in paid])
        for invoice_id, on_invoice in paid:
            amount = min(rest, on_invoice)
            ledger.allocate(ctx, payment, invoices[invoice_id], -amount)
            touched.append(invoices[invoice_id])
            taken.append((invoice_id, amount))
            rest -= amount
            if rest == 0:
                break
    # What is not refunded is either unallocated or on invoices, so the two always cover it.
    assert rest == 0, f"payment {payment.id}: {rest} of the refund found nowhere"
    before = payment.refunded_amount
    payment.refunded_amount += data.amount
    await ledger.record(
        ctx, account_id=payment.account_id, kind=LedgerKind.refund, amount=data.amount,
        currency=payment.currency, occurred_on=await ledger.local_today(ctx, payment.account_id),
        description=f"Refund of payment {payment.reference}: {data.reason}", payment_id=payment.id,
    )  # fmt: skip
    await ctx.session.flush()
    await audit.record(
        ctx, entity=ENTITY, entity_id=payment.id, action="refunded", account_id=payment.account_id,
        before={"refunded_amount": before},
        after={
            "refunded_amount": payment.refunded_amount, "amount": data.amount, "reason": data.reason,
            "from_unallocated": from_free,
            "from_invoices": [{"invoice_id": i, "amount": a} for i, a in taken],
        },
    )  # fmt: skip
    await ledger.settle(ctx, touched, "refund")
    return Refund(payment, data.amount, data.reason, from_free, taken)
