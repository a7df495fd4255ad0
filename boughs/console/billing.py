"""Console pages: billing.

An account's invoices, its transaction history (with payments recorded by the provider's
billing staff) and its payment methods; the invoice itself, as the customer receives it,
with what may be done to it; the provider's invoices and its bill runs, watched while
they run. Every rule stays in the billing services; these routes parse and authorise.
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlalchemy import Select
from starlette.concurrency import run_in_threadpool

from boughs.accounts import inheritance
from boughs.accounts import repository as accounts_repository
from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.authz.permissions import Permission
from boughs.authz.scope import require
from boughs.billing import ledger, payments, render, service
from boughs.billing import payment_methods as methods
from boughs.billing import payments_repository as money_repo
from boughs.billing import repository as repo
from boughs.billing.models import BillRun, BillRunStatus, Invoice, InvoiceStatus, PaymentMethodKind
from boughs.billing.payment_methods_schemas import PaymentMethodCreate, PaymentMethodUpdate
from boughs.billing.payments_schemas import PaymentCreate, PaymentMethodName
from boughs.billing.schemas import BillRunCreate, VoidRequest
from boughs.console.frame import (
    Console,
    ConsoleDep,
    FormState,
    checkbox,
    console_router,
    form_errors,
    form_values,
    fragment,
    page,
    redirect,
    reject,
)
from boughs.console.lists import ListPage, ListQuery, fetch_page
from boughs.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from boughs.kit.money import parse_major

router = console_router()

INVOICE_SORTS = tuple(repo.INVOICE_SORT_COLUMNS)
BILL_RUN_SORTS = tuple(repo.BILL_RUN_SORT_COLUMNS)
INVOICE_STATUSES = [s.value for s in InvoiceStatus]
RUNNING = (BillRunStatus.queued.value, BillRunStatus.running.value)
LEDGER_ROWS = 25
METHODS_SHOWN = 100
KIND_LABELS = {
    PaymentMethodKind.card.value: "Card",
    PaymentMethodKind.bank_account.value: "Bank account",
    PaymentMethodKind.mobile_money.value: "Mobile money",
    PaymentMethodKind.manual.value: "Manual (invoice, transfer by hand)",
}
PAYMENT_LABELS = {
    **KIND_LABELS,
    PaymentMethodName.manual.value: "Manual",
    PaymentMethodName.cash.value: "Cash",
    PaymentMethodName.other.value: "Other",
}


# --- shared pieces ------------------------------------------------------------------------------


def _status_filter(con: Console, lq: ListQuery) -> str | None:
    status = lq.filters.get("status")
    # Previews (a dry run's invoices) are for the provider's staff.
    allowed = [s for s in INVOICE_STATUSES if con.scope.whole_provider or s != "preview"]
    if status is not None and status not in allowed:
        raise InvalidInput.on_field("status", f"{status!r} is not an invoice status", f"use one of {allowed}")
    return status


def _id_filter(lq: ListQuery, name: str) -> int | None:
    raw = lq.filters.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise InvalidInput.on_field(name, f"{raw!r} is not an id", "give the number only, such as 42")
    return int(raw)


def _invoice_lq(con: Console, filters: list[str]) -> ListQuery:
    return ListQuery.parse(
        con.request.query_params,
        sorts=INVOICE_SORTS,
        default_sort="id",
        default_descending=True,
        filters=filters,
    )


def _minor_amount(raw: str | None, currency: str, field: str = "amount") -> int:
    """An amount received, typed in major units ("12.50"), as minor units."""
    if not raw:
        raise InvalidInput.on_field(field, "is required", f"type the amount in {currency}, such as 12.50")
    return parse_major(raw, currency, field, positive=True)


async def _invoice_page(con: Console, statement: Select[*tuple[Any, ...]], lq: ListQuery) -> ListPage[Any]:
    """Rows of (invoice, owner name), newest first unless the list asks otherwise."""
    columns = repo.INVOICE_SORT_COLUMNS
    return await fetch_page(con.ctx.session, statement, lq, columns, columns["id"], scalars=False)


async def _document(con: Console, invoice: Invoice) -> render.InvoiceDocument:
    lines = await service.invoice_lines(con.ctx, invoice)
    provider = await repo.provider(con.ctx.session, con.ctx.provider_id)
    ids = {invoice.owner_account_id, *(ln.account_id for ln in lines if ln.account_id is not None)}
    return render.InvoiceDocument(
        invoice=invoice,
        lines=lines,
        provider_name=provider.name,
        account_names=await service.account_names(con.ctx, sorted(ids)),
        credit_notes=await money_repo.issued_credit_notes_of(con.ctx.session, invoice.id),
    )


# --- an account's invoices -----------------------------------------------------------------------


@router.get("/accounts/{account_id}/invoices", response_class=HTMLResponse)
async def account_invoices(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await accounts.get(con.ctx, account_id)
    lq = _invoice_lq(con, ["status"])
    f = repo.InvoiceFilter(owner_account_id=account.id, status=_status_filter(con, lq))
    statement = repo.invoice_list_statement(con.scope, f)
    pg = await _invoice_page(con, statement, lq)
    context = {"account": account, "tab": "invoices", "pg": pg, "lq": lq, "statuses": INVOICE_STATUSES}
    return await page(con, "billing/account_invoices.html", context, account=account, section="account")


# --- an account's transactions and payments ------------------------------------------------------


async def _currency_of(con: Console, account: Account) -> str:
    found = await accounts_repository.chain_of(con.ctx.session, con.scope, account.id)
    if found is None:
        raise accounts.not_found(account.id)
    return str(inheritance.resolve(found.accounts, "currency", found.provider_currency).value)


async def _transactions_context(
    con: Console, account: Account, form: FormState | None = None
) -> dict[str, Any]:
    cursor = con.request.query_params.get("cursor") or None
    found = await ledger.transactions(con.ctx, account.id, cursor, LEDGER_ROWS)
    # Payments are the provider's to record (its billing staff), never the account users'.
    may_record = con.ctx.actor.is_staff and con.can(Permission.manage_billing, account)
    if form is None:
        today = await ledger.local_today(con.ctx, account.id)
        form = FormState(values={"method": PaymentMethodName.bank_account.value, "received_on": today})
    return {
        "account": account,
        "tab": "transactions",
        "tx": found,
        "cursor": cursor,
        "may_record": may_record,
        "form": form,
        "payment_methods": list(PAYMENT_LABELS.items()),
    }


@router.get("/accounts/{account_id}/transactions", response_class=HTMLResponse)
async def account_transactions(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await accounts.get(con.ctx, account_id)
    context = await _transactions_context(con, account)
    return await page(con, "billing/transactions.html", context, account=account, section="account")


@router.post("/accounts/{account_id}/payments")
async def record_payment(con: ConsoleDep, account_id: int) -> Response:
    account = await accounts.get(con.ctx, account_id)
    await payments.require_billing_staff(con.ctx, account.path, "record payments")
    values = form_values(await con.request.form())
    try:
        currency = await _currency_of(con, account)
        body: dict[str, Any] = {
            "method": values.get("method"),
            "amount": _minor_amount(values.get("amount"), currency),
            "currency": currency,
            "received_on": values.get("received_on"),
            "reference": values.get("reference"),
            "note": values.get("note", ""),
        }
        data = PaymentCreate.model_validate({k: v for k, v in body.items() if v is not None})
        payment, created = await payments.record(con.ctx, account.id, data)
    except (ValidationError, InvalidInput, Conflict) as error:
        state = form_errors(values, error)
        context = await _transactions_context(con, account, state)
        raise await reject(
            con, "billing/transactions.html", state, context, account=account, section="account"
        ) from None
    done = (
        f"Payment {payment.reference} recorded and allocated to the oldest open invoices first."
        if created
        else f"Payment {payment.reference} was already recorded; nothing changed."
    )
    return redirect(con, f"/accounts/{account.id}/transactions", flash=done)


# --- an account's payment methods ---------------------------------------------------------------


async def _payer(con: Console, account: Account) -> dict[str, Any]:
    """Who pays for this account, and where that comes from, in the names this actor may see."""
    effective = await accounts.effective(con.ctx, account.id)
    visible = {a.id: a for a in await accounts.ancestors(con.ctx, account.id)}
    visible[account.id] = account

    def named(account_id: int | None) -> dict[str, Any] | None:
        if account_id is None:
            return None
        seen = visible.get(account_id)
        return {"id": account_id, "name": seen.name if seen else "an ancestor account", "link": bool(seen)}

    method = effective["payment_method"]
    owner = effective["invoice_owner"]
    return {
        "method": method["value"],
        "source": method["source"],
        "from": named(method["source_account_id"]),
        "owner": named(owner["value"]) if owner["source"] != "own" else None,
    }


async def _methods_context(con: Console, account: Account, form: FormState | None = None) -> dict[str, Any]:
    listed = await methods.list_methods(con.ctx, account.id, None, METHODS_SHOWN)
    return {
        "account": account,
        "tab": "payment-methods",
        "methods": listed.items,
        "more": listed.next_cursor is not None,
        "payer": await _payer(con, account),
        "may_manage": con.can(Permission.manage_billing, account),
        "kinds": list(KIND_LABELS.items()),
        "kind_labels": KIND_LABELS,
        "form": form or FormState(values={"kind": PaymentMethodKind.card.value}),
    }


def _method_fields(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": values.get("kind"),
        "label": values.get("label", ""),
        "last_four": values.get("last_four"),
        "holder": values.get("holder"),
        "shared_with_children": checkbox(values, "shared_with_children"),
    }


@router.get("/accounts/{account_id}/payment-methods", response_class=HTMLResponse)
async def payment_methods(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await accounts.get(con.ctx, account_id)
    context = await _methods_context(con, account)
    return await page(con, "billing/payment_methods.html", context, account=account, section="account")


@router.post("/accounts/{account_id}/payment-methods")
async def add_payment_method(con: ConsoleDep, account_id: int) -> Response:
    account = await accounts.get(con.ctx, account_id)
    # Refused before the form is read: a role that may not add methods learns nothing from errors.
    await require(con.ctx, account.path, Permission.manage_billing, "add payment methods to this account")
    values = form_values(await con.request.form())
    body = _method_fields(values)
    body["token_reference"] = values.get("token_reference")
    # Unticked: the account's first method still becomes its default, as the service decides.
    body["is_default"] = True if checkbox(values, "is_default") else None
    try:
        data = PaymentMethodCreate.model_validate({k: v for k, v in body.items() if v is not None})
        method = await methods.create_method(con.ctx, account.id, data)
    except (ValidationError, InvalidInput) as error:
        state = form_errors(values, error)
        context = await _methods_context(con, account, state)
        raise await reject(
            con, "billing/payment_methods.html", state, context, account=account, section="account"
        ) from None
    label = method.label or KIND_LABELS[method.kind]
    return redirect(con, f"/accounts/{account.id}/payment-methods", flash=f"Payment method {label} added.")


@router.get("/accounts/{account_id}/payment-methods/{method_id}/edit", response_class=HTMLResponse)
async def edit_payment_method(con: ConsoleDep, account_id: int, method_id: int) -> HTMLResponse:
    account = await accounts.get(con.ctx, account_id)
    await require(con.ctx, account.path, Permission.manage_billing, "change this account's payment methods")
    method = await methods.get_method(con.ctx, account.id, method_id)
    form = FormState(
        values={
            "kind": method.kind,
            "label": method.label,
            "last_four": method.last_four or "",
            "holder": method.holder or "",
            "is_default": "on" if method.is_default else "",
            "shared_with_children": "on" if method.shared_with_children else "",
        }
    )
    context = {"account": account, "tab": "payment-methods", "method": method, "form": form}
    context["kinds"] = list(KIND_LABELS.items())
    return await page(con, "billing/payment_method_edit.html", context, account=account, section="account")


@router.post("/accounts/{account_id}/payment-methods/{method_id}")
async def update_payment_method(con: ConsoleDep, account_id: int, method_id: int) -> Response:
    account = await accounts.get(con.ctx, account_id)
    await require(con.ctx, account.path, Permission.manage_billing, "change this account's payment methods")
    method = await methods.get_method(con.ctx, account.id, method_id)
    values = form_values(await con.request.form())
    # Blank last four and holder clear them; a blank token keeps the one the gateway gave.
    body = _method_fields(values)
    body["is_default"] = checkbox(values, "is_default")
    if values.get("token_reference"):
        body["token_reference"] = values["token_reference"]
    try:
        data = PaymentMethodUpdate.model_validate(body)
        await methods.update_method(con.ctx, account.id, method.id, data)
    except (ValidationError, InvalidInput) as error:
        state = form_errors(values, error)
        context = {"account": account, "tab": "payment-methods", "method": method}
        context["kinds"] = list(KIND_LABELS.items())
        raise await reject(
            con, "billing/payment_method_edit.html", state, context, account=account, section="account"
        ) from None
    return redirect(con, f"/accounts/{account.id}/payment-methods", flash="Payment method saved.")


@router.get("/accounts/{account_id}/payment-methods/{method_id}/delete", response_class=HTMLResponse)
async def confirm_delete_payment_method(con: ConsoleDep, account_id: int, method_id: int) -> HTMLResponse:
    account = await accounts.get(con.ctx, account_id)
    await require(con.ctx, account.path, Permission.manage_billing, "remove this account's payment methods")
    method = await methods.get_method(con.ctx, account.id, method_id)
    context = {
        "account": account,
        "tab": "payment-methods",
        "method": method,
        "kind_labels": KIND_LABELS,
        "may_manage": con.can(Permission.manage_billing, account),
    }
    return await page(con, "billing/payment_method_delete.html", context, account=account, section="account")


@router.post("/accounts/{account_id}/payment-methods/{method_id}/delete")
async def delete_payment_method(con: ConsoleDep, account_id: int, method_id: int) -> Response:
    account = await accounts.get(con.ctx, account_id)
    await methods.delete_method(con.ctx, account.id, method_id)
    return redirect(con, f"/accounts/{account.id}/payment-methods", flash="Payment method removed.")


# --- one invoice ---------------------------------------------------------------------------------


# Before /invoices/{invoice_id}, which would otherwise take "12.pdf" for an id.
@router.get("/invoices/{invoice_id}.pdf")
async def invoice_pdf(con: ConsoleDep, invoice_id: int) -> Response:
    invoice = await service.get_invoice(con.ctx, invoice_id)
    doc = await _document(con, invoice)
    name = invoice.number or f"draft-{invoice.id}"
    # WeasyPrint is CPU-bound: off the event loop, so other requests keep being served.
    return Response(
        await run_in_threadpool(render.invoice_pdf, doc),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
    )


@router.get("/invoices/{invoice_id}/document", response_class=HTMLResponse)
async def invoice_document(con: ConsoleDep, invoice_id: int) -> HTMLResponse:
    """The invoice as the customer receives it, standalone (the invoice page frames it)."""
    invoice = await service.get_invoice(con.ctx, invoice_id)
    return HTMLResponse(render.invoice_html(await _document(con, invoice)))


@router.get("/invoices/{invoice_id}", response_class=HTMLResponse)
async def invoice_page(con: ConsoleDep, invoice_id: int) -> HTMLResponse:
    invoice = await service.get_invoice(con.ctx, invoice_id)
    try:
        owner: Account | None = await accounts.get(con.ctx, invoice.owner_account_id)
    except NotFound:
        owner = None  # deleted: its issued invoices outlive it
    context = {
        "invoice": invoice,
        "name": _invoice_name(invoice),
        "owner": owner,
        "balance_due": ledger.balance_due(invoice),
        # The invoice service lets only the provider's billing staff change invoices.
        "may_manage": con.can_provider(Permission.manage_billing),
    }
    section = "invoices" if con.scope.whole_provider else "account"
    return await page(con, "billing/invoice.html", context, account=owner, section=section)


def _invoice_name(invoice: Invoice) -> str:
    if invoice.number:
        return f"Invoice {invoice.number}"
    return f"{'Preview' if invoice.status == InvoiceStatus.preview.value else 'Draft invoice'} #{invoice.id}"


@router.post("/invoices/{invoice_id}/finalize")
async def finalize_invoice(con: ConsoleDep, invoice_id: int) -> Response:
    invoice = await service.finalize(con.ctx, invoice_id)
    done = f"Invoice {invoice.number} finalized, due {invoice.due_date}, and added to the account's ledger."
    return redirect(con, f"/invoices/{invoice.id}", flash=done)


@router.post("/invoices/{invoice_id}/recalculate")
async def recalculate_invoice(con: ConsoleDep, invoice_id: int) -> Response:
    invoice = await service.recalculate(con.ctx, invoice_id)
    return redirect(
        con, f"/invoices/{invoice.id}", flash="Draft recalculated from current services and usage."
    )


@router.post("/invoices/{invoice_id}/void")
async def void_invoice(con: ConsoleDep, invoice_id: int) -> Response:
    values = form_values(await con.request.form())
    try:
        data = VoidRequest.model_validate({"reason": values.get("reason", "")})
    except ValidationError as error:
        raise InvalidInput.on_field("reason", str(error.errors()[0]["msg"]), "shorten the reason") from None
    invoice = await service.void(con.ctx, invoice_id, data.reason)
    return redirect(con, f"/invoices/{invoice.id}", flash=f"{_invoice_name(invoice)} voided.")


@router.post("/invoices/{invoice_id}/uncollectible")
async def uncollectible_invoice(con: ConsoleDep, invoice_id: int) -> Response:
    invoice = await service.mark_uncollectible(con.ctx, invoice_id)
    return redirect(
        con, f"/invoices/{invoice.id}", flash=f"{_invoice_name(invoice)} written off as uncollectible."
    )


# --- the provider's invoices ---------------------------------------------------------------------


@router.get("/invoices", response_class=HTMLResponse)
async def provider_invoices(con: ConsoleDep) -> HTMLResponse:
    if not con.scope.whole_provider:
        raise Forbidden(
            detail="The list of every invoice is for the provider's staff.",
            fix="open the Invoices tab of your account instead",
        )
    lq = _invoice_lq(con, ["status", "bill_run_id", "account_id"])
    f = repo.InvoiceFilter(
        owner_account_id=_id_filter(lq, "account_id"),
        bill_run_id=_id_filter(lq, "bill_run_id"),
        status=_status_filter(con, lq),
    )
    statement = repo.invoice_list_statement(con.scope, f, lq.q)
    pg = await _invoice_page(con, statement, lq)
    context = {"pg": pg, "lq": lq, "statuses": INVOICE_STATUSES}
    return await page(con, "billing/invoices.html", context, section="invoices")


# --- bill runs -----------------------------------------------------------------------------------


async def _bill_runs_context(con: Console, form: FormState | None = None) -> dict[str, Any]:
    lq = ListQuery.parse(
        con.request.query_params,
        sorts=BILL_RUN_SORTS,
        default_sort="id",
        default_descending=True,
        filters=["status"],
    )
    status = lq.filters.get("status")
    statuses = [s.value for s in BillRunStatus]
    if status is not None and status not in statuses:
        raise InvalidInput.on_field(
            "status", f"{status!r} is not a bill run status", f"use one of {statuses}"
        )
    statement = repo.bill_run_list_statement(con.ctx.provider_id, status)
    columns = repo.BILL_RUN_SORT_COLUMNS
    pg = await fetch_page(con.ctx.session, statement, lq, columns, columns["id"])
    return {"pg": pg, "lq": lq, "statuses": statuses, "form": form or FormState(), "running": RUNNING}


@router.get("/bill-runs", response_class=HTMLResponse)
async def bill_runs(con: ConsoleDep) -> HTMLResponse:
    service.require_staff_billing(con.ctx, "see bill runs")
    return await page(con, "billing/bill_runs.html", await _bill_runs_context(con), section="bill-runs")


@router.post("/bill-runs")
async def start_bill_run(con: ConsoleDep) -> Response:
    service.require_staff_billing(con.ctx, "start bill runs")
    values = form_values(await con.request.form())
    body = {
        "period_end": values.get("period_end"),
        "dry_run": checkbox(values, "dry_run"),
        "finalize": checkbox(values, "finalize"),
    }
    try:
        data = BillRunCreate.model_validate({k: v for k, v in body.items() if v is not None})
        run = await service.start_bill_run(con.ctx, data)
    except (ValidationError, InvalidInput) as error:
        state = form_errors(values, error)
        context = await _bill_runs_context(con, state)
        raise await reject(con, "billing/bill_runs.html", state, context, section="bill-runs") from None
    kind = "Dry run" if run.dry_run else "Bill run"
    done = f"{kind} {run.id} started for the period ending {run.period_end.isoformat()}."
    return redirect(con, f"/bill-runs/{run.id}", flash=done)


def _progress_context(run: BillRun) -> dict[str, Any]:
    return {
        "run": run,
        "running": run.status in RUNNING,
        "progress_url": f"/bill-runs/{run.id}/progress",
    }


@router.get("/bill-runs/{bill_run_id}", response_class=HTMLResponse)
async def bill_run_page(con: ConsoleDep, bill_run_id: int) -> HTMLResponse:
    run = await service.get_bill_run(con.ctx, bill_run_id)
    lq = _invoice_lq(con, [])
    # A dry run wrote previews: exactly what the real run would write.
    status = InvoiceStatus.preview.value if run.dry_run else None
    statement = repo.invoice_list_statement(con.scope, repo.InvoiceFilter(bill_run_id=run.id, status=status))
    pg = await _invoice_page(con, statement, lq)
    context = {**_progress_context(run), "pg": pg, "lq": lq}
    return await page(con, "billing/bill_run.html", context, section="bill-runs")


@router.get("/bill-runs/{bill_run_id}/progress", response_class=HTMLResponse)
async def bill_run_progress(con: ConsoleDep, bill_run_id: int) -> HTMLResponse:
    """The bar polls this every second; once the run is over the page reloads to show its
    invoices (a plain request gets the finished state instead)."""
    run = await service.get_bill_run(con.ctx, bill_run_id)
    response = fragment(con, "billing/_bill_run_progress.html", _progress_context(run))
    if run.status not in RUNNING and con.is_htmx:
        response.headers["HX-Refresh"] = "true"
    return response
