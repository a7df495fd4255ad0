"""Credit notes: the only correction of an issued invoice (its own content never changes).

A credit note lowers what is owed on one issued invoice (finalized, paid or
uncollectible), by at most its balance due: lines before tax, taxed at the invoice's
rate with one rounding on the credit's subtotal. Numbers are gapless per provider: the
provider's counter is moved by an UPDATE in the issuing transaction, so concurrent
issuers queue on its row and a failed issue gives its number back.

A credit note can be voided while nothing depends on it: no later credit note on the same
invoice is still issued (each was sized against the balance it left). Voiding restores
the invoice's balance, and a paid invoice is owed again.

Only the provider's staff with billing rights issue and void them; they are read by
whoever may read the invoice's owner account.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from boughs.audit import service as audit
from boughs.authz.scope import scope_of
from boughs.billing import ledger
from boughs.billing import payments_repository as repository
from boughs.billing.models import CreditNote, CreditNoteStatus, Invoice, InvoiceStatus, LedgerKind
from boughs.billing.payments import require_billing_staff
from boughs.billing.payments_schemas import CreditNoteCreate
from boughs.context import Ctx
from boughs.kit.errors import BoughsError, Conflict, InvalidInput, NotFound
from boughs.kit.money import round_half_up
from boughs.kit.pagination import PageOf, check_limit, id_cursor, page_of

ENTITY = "credit_note"
CREDITABLE = (InvoiceStatus.finalized.value, InvoiceStatus.paid.value, InvoiceStatus.uncollectible.value)
PPM = Decimal(1_000_000)


def not_found(credit_note_id: int) -> NotFound:
    return NotFound(
        detail=f"There is no credit note {credit_note_id}.",
        fix="check the id; you can only reach credit notes of invoices of accounts in your own scope",
    )


def tax_on(subtotal: int, rate_ppm: int) -> int:
    """The one rounding of the credit's tax, on its subtotal."""
    return round_half_up(Decimal(subtotal) * Decimal(rate_ppm) / PPM)


def largest_subtotal(total: int, rate_ppm: int) -> int:
    """The largest pre-tax amount whose total with tax is at most ``total``."""
    if total <= 0:
        return 0
    subtotal = int(Decimal(total) * PPM / (PPM + rate_ppm))
    while subtotal + 1 + tax_on(subtotal + 1, rate_ppm) <= total:
        subtotal += 1
    while subtotal > 0 and subtotal + tax_on(subtotal, rate_ppm) > total:
        subtotal -= 1
    return subtotal


def snapshot(note: CreditNote) -> dict[str, Any]:
    return {
        "number": note.number, "status": note.status, "invoice_id": note.invoice_id,
        "account_id": note.account_id, "currency": note.currency, "reason": note.reason,
        "subtotal_amount": note.subtotal_amount, "tax_amount": note.tax_amount,
        "total_amount": note.total_amount, "lines": note.lines,
    }  # fmt: skip


_NOT_CREDITABLE_FIX = {
    InvoiceStatus.draft.value: "finalize it first, then credit it",
    InvoiceStatus.preview.value: "a dry run's preview is never issued; credit the invoice the real run makes",
    InvoiceStatus.void.value: "a void invoice owes nothing to credit",
}


def _not_creditable(invoice: Invoice) -> Conflict:
    return Conflict(
        detail=f"Invoice {invoice.id} is {invoice.status}; only an issued invoice "
        "(finalized, paid or uncollectible) is corrected with a credit note.",
        fix=_NOT_CREDITABLE_FIX.get(invoice.status, "credit an issued invoice"),
    )


def _over_credit(invoice: Invoice, total: int) -> BoughsError:
    balance = max(ledger.balance_due(invoice), 0)
    subtotal = largest_subtotal(balance, invoice.tax_rate_ppm)
    return InvalidInput.on_field(
        "lines",
        f"credit {total} with tax is more than the {balance} still due on invoice {invoice.number}; "
        f"the most it can credit is {balance} with tax ({subtotal} before tax)",
        f"credit at most {subtotal} before tax",
        maximum_total=balance,
        maximum_subtotal=subtotal,
    )


async def _check_lines(ctx: Ctx, invoice: Invoice, data: CreditNoteCreate) -> None:
    """A line naming an invoice line credits at most what that line charged, with what
    earlier credit notes took from it."""
    named = [line.invoice_line_id for line in data.lines if line.invoice_line_id is not None]
    if not named:
        return
    lines = await repository.lines_of_invoice(ctx.session, invoice.id, named)
    credited: dict[int, int] = defaultdict(int)
    for note in await repository.issued_credit_notes_of(ctx.session, invoice.id):
        for earlier in note.lines:
            if earlier.get("invoice_line_id") is not None:
                credited[int(earlier["invoice_line_id"])] += int(earlier["amount"])
    for position, line in enumerate(data.lines):
        if line.invoice_line_id is None:
            continue
        field = f"lines.{position}.invoice_line_id"
        target = lines.get(line.invoice_line_id)
        if target is None:
            raise InvalidInput.on_field(
                field,
                f"invoice {invoice.id} has no line {line.invoice_line_id}",
                "name a line of this invoice (GET /api/v1/invoices/{id} lists them), or leave it out",
            )
        credited[target.id] += line.amount
        if credited[target.id] > target.amount:
            left = max(target.amount - (credited[target.id] - line.amount), 0)
            raise InvalidInput.on_field(
                f"lines.{position}.amount",
                f"is more than the {left} of line {target.id} not credited yet",
                f"credit at most {left} against that line",
                maximum=left,
            )


async def create(ctx: Ctx, data: CreditNoteCreate) -> CreditNote:
    found = await repository.invoice_with_owner_path(ctx.session, await scope_of(ctx), data.invoice_id)
    if found is None:
        # Unknown and out-of-scope invoices answer alike.
        raise InvalidInput.on_field(
            "invoice_id",
            "there is no invoice with this id",
            "give the id of an issued invoice of an account you can reach",
        )
    invoice, path = found
    await require_billing_staff(ctx, path, "issue credit notes")
    if invoice.status not in CREDITABLE:
        raise _not_creditable(invoice)
    await _check_lines(ctx, invoice, data)
    subtotal = sum(line.amount for line in data.lines)
    tax = tax_on(subtotal, invoice.tax_rate_ppm)
    total = subtotal + tax
    if total > ledger.balance_due(invoice):
        raise _over_credit(invoice, total)

    # The provider's counter first, then the owner's lock: the order finalization takes them.
    number = await repository.take_credit_note_number(ctx.session, ctx.provider_id)
    await ledger.lock_account(ctx, invoice.owner_account_id)
    invoice = (await repository.invoices_for_update(ctx.session, ctx.provider_id, [invoice.id]))[invoice.id]
    if invoice.status not in CREDITABLE:
        raise _not_creditable(invoice)
    if total > ledger.balance_due(invoice):
        raise _over_credit(invoice, total)

    now = ctx.now()
    note = CreditNote(
        provider_id=ctx.provider_id, invoice_id=invoice.id, account_id=invoice.owner_account_id,
        number=number, status=CreditNoteStatus.issued.value, currency=invoice.currency,
        reason=data.reason, subtotal_amount=subtotal, tax_amount=tax, total_amount=total,
        lines=[line.model_dump() for line in data.lines], created_by_user_id=ctx.actor.user_id,
        created_at=now,
    )  # fmt: skip
    ctx.session.add(note)
    await ctx.session.flush()
    invoice.amount_credited += total
    invoice.updated_at = now
    await ledger.record(
        ctx, account_id=invoice.owner_account_id, kind=LedgerKind.credit_note, amount=-total,
        currency=invoice.currency, occurred_on=await ledger.local_today(ctx, invoice.owner_account_id),
        description=f"Credit note {number} on invoice {invoice.number}: {data.reason}",
        invoice_id=invoice.id, credit_note_id=note.id,
    )  # fmt: skip
    await ctx.session.flush()
    await audit.record(
        ctx, entity=ENTITY, entity_id=note.id, action="issued", account_id=invoice.owner_account_id,
        after=snapshot(note),
    )  # fmt: skip
    await ledger.settle(ctx, [invoice], "credit note")
    return note


async def void(ctx: Ctx, credit_note_id: int) -> CreditNote:
    found = await repository.get_credit_note(ctx.session, await scope_of(ctx), credit_note_id)
    if found is None:
        raise not_found(credit_note_id)
    note, path = found
    await require_billing_staff(ctx, path, "void credit notes")
    await ledger.lock_account(ctx, note.account_id)
    note = await repository.lock_credit_note(ctx.session, note.id)
    if note.status == CreditNoteStatus.void.value:
        raise Conflict(detail=f"Credit note {note.number} is void already.", fix="there is nothing to undo")
    later = [
        n.number
        for n in await repository.issued_credit_notes_of(ctx.session, note.invoice_id)
        if n.id > note.id
    ]
    if later:
        raise Conflict(
            detail=f"Credit note {note.number} cannot be voided: {', '.join(later)} issued after it "
            "on the same invoice depend on the balance it left.",
            fix="void the later credit notes first, newest first",
        )
    invoice = (await repository.invoices_for_update(ctx.session, ctx.provider_id, [note.invoice_id]))[
        note.invoice_id
    ]
    if invoice.status == InvoiceStatus.void.value:
        raise _not_creditable(invoice)
    note.status = CreditNoteStatus.void.value
    invoice.amount_credited -= note.total_amount
    invoice.updated_at = ctx.now()
    await ledger.record(
        ctx, account_id=note.account_id, kind=LedgerKind.void, amount=note.total_amount,
        currency=note.currency, occurred_on=await ledger.local_today(ctx, note.account_id),
        description=f"Credit note {note.number} voided", invoice_id=invoice.id, credit_note_id=note.id,
    )  # fmt: skip
    await ctx.session.flush()
    await audit.record(
        ctx, entity=ENTITY, entity_id=note.id, action="voided", account_id=note.account_id,
        before={"status": CreditNoteStatus.issued.value}, after={"status": note.status},
    )  # fmt: skip
    await ledger.settle(ctx, [invoice], "credit note voided")
    return note


async def get(ctx: Ctx, credit_note_id: int) -> CreditNote:
    found = await repository.get_credit_note(ctx.session, await scope_of(ctx), credit_note_id)
    if found is None:
        raise not_found(credit_note_id)
    return found[0]


async def list_credit_notes(
    ctx: Ctx, f: repository.CreditNoteFilter, cursor: str | None, limit: int
) -> PageOf[CreditNote]:
    """Newest first, of the invoices whose owner the actor may read."""
    check_limit(limit)
    rows = await repository.list_credit_notes(
        ctx.session, await scope_of(ctx), f, id_cursor(cursor), limit + 1
    )
    return page_of(rows, limit)
