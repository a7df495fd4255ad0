"""The billing console: an account's invoices, transactions and payment methods; the invoice
page with its document, PDF and actions; the provider's invoices and bill runs."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select

from boughs.auth.actor import StaffRole
from boughs.billing.models import BillRun, Invoice, LedgerEntry, PaymentMethod
from boughs.config import Settings
from boughs.console.frame import templates
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from tests.billing.payments_matrix_cases import make_invoice
from tests.billing.support import new_account, new_plan, new_service, run_jobs
from tests.console.conftest import ConsoleClient, MakeConsoleUser, SignIn
from tests.usage.support import member


def money(amount: int) -> str:
    return str(templates.env.filters["money"](amount, "USD"))


async def rows(ctx_factory: Any, model: Any, *where: Any) -> list[Any]:
    async with ctx_factory() as ctx:
        return list(await ctx.session.scalars(select(model).where(*where).order_by(model.id)))


async def test_account_tabs_by_role_and_scope(
    owner_console: ConsoleClient, sign_in: SignIn, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        home = await new_account(ctx, "Harbour Lofts")
        other = await new_account(ctx, "Elsewhere Ltd")
        issued = await make_invoice(ctx, home, 4_200)
        draft = await make_invoice(ctx, home, 1_000, status="draft")
        theirs = await make_invoice(ctx, other, 900)
        billing = await member(ctx, home, "billing")
        viewer = await member(ctx, home, "viewer")
    number = str(issued.number)

    invoices = await owner_console.get(f"/accounts/{home}/invoices")
    assert invoices.status_code == 200
    assert invoices.text.count('data-testid="invoice-row"') == 2 and number in invoices.text
    assert 'aria-current="page">Invoices<' in invoices.text
    drafts = await owner_console.get(f"/accounts/{home}/invoices", params={"status": "draft"})
    assert drafts.text.count('data-testid="invoice-row"') == 1 and f"/invoices/{draft.id}" in drafts.text
    ledger = await owner_console.get(f"/accounts/{home}/transactions")
    assert ledger.status_code == 200 and f"Invoice {number}" in ledger.text
    assert money(4_200) in ledger.text and "Record payment" in ledger.text
    assert (await owner_console.get(f"/accounts/{home}/payment-methods")).status_code == 200

    # A billing member reads the account's invoices; a viewer reads its ledger but records nothing.
    as_billing = await sign_in(billing.user_id)
    seen = await as_billing.get(f"/accounts/{home}/invoices")
    assert seen.status_code == 200 and number in seen.text
    assert (await as_billing.get(f"/invoices/{issued.id}")).status_code == 200
    as_viewer = await sign_in(viewer.user_id)
    page = await as_viewer.get(f"/accounts/{home}/transactions")
    assert page.status_code == 200 and "Record payment" not in page.text
    refused = await as_viewer.submit(
        f"/accounts/{home}/payments",
        {"method": "cash", "amount": "10", "received_on": "2026-01-10", "reference": "R-1"},
    )
    assert refused.status_code == 403
    no_method = await as_viewer.submit(f"/accounts/{home}/payment-methods", {"kind": "card"})
    assert no_method.status_code == 403
    assert len(await rows(ctx_factory, LedgerEntry, LedgerEntry.account_id == home)) == 1
    # Out of scope reads exactly like missing; the provider-wide list is staff's.
    assert (await as_viewer.get(f"/invoices/{theirs.id}")).status_code == 404
    assert (await as_viewer.get(f"/invoices/{theirs.id}.pdf")).status_code == 404
    assert (await as_viewer.get(f"/accounts/{other}/invoices")).status_code == 404
    assert (await as_viewer.get("/invoices")).status_code == 403
    assert (await as_viewer.get("/bill-runs")).status_code == 403


async def test_record_payment_from_the_transactions_tab(
    owner_console: ConsoleClient, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        home = await new_account(ctx, "Pays by transfer")
        invoice = await make_invoice(ctx, home, 5_000)
    url = f"/accounts/{home}/payments"
    form = {"method": "bank_account", "received_on": "2026-01-14", "reference": "TRF-77"}

    bad = await owner_console.submit(url, {**form, "amount": "12.345"})
    assert bad.status_code == 422 and 'data-field-error="amount"' in bad.text
    assert "USD has 2 decimal places" in bad.text and 'value="TRF-77"' in bad.text
    future = await owner_console.submit(url, {**form, "amount": "12.50", "received_on": "2026-02-01"})
    assert future.status_code == 422 and 'data-field-error="received_on"' in future.text
    assert len(await rows(ctx_factory, LedgerEntry, LedgerEntry.account_id == home)) == 1

    done = await owner_console.submit(url, {**form, "amount": "12.50"})
    assert done.status_code == 303 and done.headers["location"] == f"/accounts/{home}/transactions"
    entries = await rows(ctx_factory, LedgerEntry, LedgerEntry.account_id == home)
    assert [(e.kind, e.amount) for e in entries] == [("invoice", 5_000), ("payment", -1_250)]
    (paid,) = await rows(ctx_factory, Invoice, Invoice.id == invoice.id)
    assert paid.amount_paid == 1_250
    ledger = await owner_console.get(f"/accounts/{home}/transactions")
    assert "Payment TRF-77 (bank_account)" in ledger.text and f"Owes <strong>{money(3_750)}" in ledger.text


async def test_payment_methods_add_edit_share_and_delete(
    owner_console: ConsoleClient, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        parent = await new_account(ctx, "Acme Group")
        office = await new_account(ctx, "Second office", parent_id=parent)
    url = f"/accounts/{parent}/payment-methods"
    listed = await owner_console.get(url)
    assert "Allow child accounts to use this payment method" in listed.text

    card = {"kind": "card", "label": "Company Visa", "holder": "Acme Ltd", "token_reference": "tok_1"}
    bad = await owner_console.submit(url, {**card, "last_four": "12", "shared_with_children": "on"})
    assert bad.status_code == 422 and 'data-field-error="last_four"' in bad.text
    assert "must be exactly 4 digits" in bad.text
    assert await rows(ctx_factory, PaymentMethod, PaymentMethod.account_id == parent) == []

    added = await owner_console.submit(url, {**card, "last_four": "4242", "shared_with_children": "on"})
    assert added.status_code == 303
    (method,) = await rows(ctx_factory, PaymentMethod, PaymentMethod.account_id == parent)
    assert method.shared_with_children and method.is_default and method.last_four == "4242"
    assert 'data-testid="shared"' in (await owner_console.get(url)).text
    child = await owner_console.get(f"/accounts/{office}/payment-methods")
    assert "Pays with <strong>Company Visa ending 4242</strong>, shared by" in child.text
    assert f'href="/accounts/{parent}/payment-methods">Acme Group<' in child.text

    form = await owner_console.get(f"{url}/{method.id}/edit")
    assert form.status_code == 200 and 'value="Company Visa"' in form.text
    unshared = await owner_console.submit(
        f"{url}/{method.id}", {"kind": "card", "label": "Old Visa", "last_four": "4242", "is_default": "on"}
    )
    assert unshared.status_code == 303
    child = await owner_console.get(f"/accounts/{office}/payment-methods")
    assert "No payment method" in child.text

    confirm = await owner_console.get(f"{url}/{method.id}/delete")
    assert "What is kept" in confirm.text and 'data-testid="confirm-delete"' in confirm.text
    assert (await owner_console.submit(f"{url}/{method.id}/delete")).status_code == 303
    assert await rows(ctx_factory, PaymentMethod, PaymentMethod.account_id == parent) == []


async def test_bill_run_from_the_form_then_the_invoice_page(
    owner_console: ConsoleClient,
    make_console_user: MakeConsoleUser,
    sign_in: SignIn,
    ctx_factory: Any,
    settings: Settings,
    db: Database,
    clock: FrozenClock,
) -> None:
    async with ctx_factory() as ctx:
        home = await new_account(ctx, "Harbour Lofts")
        plan = await new_plan(ctx, 3_000, name="Fibre 100")
        await new_service(ctx, home, plan, date(2026, 1, 1))

    listed = await owner_console.get("/bill-runs")
    assert listed.status_code == 200 and 'name="period_end"' in listed.text
    bad = await owner_console.submit("/bill-runs", {"period_end": "2026-02-30"})
    assert bad.status_code == 422 and 'data-field-error="period_end"' in bad.text
    assert await rows(ctx_factory, BillRun) == []

    preview = await owner_console.submit("/bill-runs", {"period_end": "2026-01-31", "dry_run": "on"})
    assert preview.status_code == 303
    await run_jobs(settings, db, clock)
    (dry,) = await rows(ctx_factory, BillRun)
    previewed = await owner_console.get(f"/bill-runs/{dry.id}")
    assert "What the real run would write" in previewed.text
    assert previewed.text.count('data-testid="invoice-row"') == 1 and "Preview #" in previewed.text

    started = await owner_console.submit("/bill-runs", {"period_end": "2026-01-31"})
    assert started.status_code == 303
    (run,) = await rows(ctx_factory, BillRun, BillRun.id != dry.id)
    assert started.headers["location"] == f"/bill-runs/{run.id}"
    watching = await owner_console.get(f"/bill-runs/{run.id}")
    assert watching.status_code == 200 and 'data-testid="progress"' in watching.text
    queued = await owner_console.htmx("GET", f"/bill-runs/{run.id}/progress")
    assert 'hx-trigger="every 1s"' in queued.text and "HX-Refresh" not in queued.headers

    await run_jobs(settings, db, clock)
    finished = await owner_console.htmx("GET", f"/bill-runs/{run.id}/progress")
    assert finished.headers["HX-Refresh"] == "true" and "hx-trigger" not in finished.text
    assert f'href="/invoices?bill_run_id={run.id}"' in finished.text
    done = await owner_console.get(f"/bill-runs/{run.id}")
    assert done.text.count('data-testid="invoice-row"') == 1
    (invoice,) = await rows(ctx_factory, Invoice, Invoice.bill_run_id == run.id)
    provider_list = await owner_console.get("/invoices", params={"bill_run_id": run.id, "status": "draft"})
    assert f"/invoices/{invoice.id}" in provider_list.text and "Harbour Lofts" in provider_list.text

    shown = await owner_console.get(f"/invoices/{invoice.id}")
    assert shown.status_code == 200 and f'<iframe src="/invoices/{invoice.id}/document"' in shown.text
    assert 'data-testid="finalize"' in shown.text and "Download PDF" in shown.text
    document = await owner_console.get(f"/invoices/{invoice.id}/document")
    assert document.status_code == 200 and "Fibre 100" in document.text
    pdf = await owner_console.get(f"/invoices/{invoice.id}.pdf")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    assert f'filename="draft-{invoice.id}.pdf"' in pdf.headers["content-disposition"]

    # Support staff read invoices but neither bill nor change them.
    support = await make_console_user("desk@isp.test", staff_role=StaffRole.support)
    as_support = await sign_in(support.id)
    assert (await as_support.get("/bill-runs")).status_code == 403
    seen = await as_support.get(f"/invoices/{invoice.id}")
    assert seen.status_code == 200 and 'data-testid="finalize"' not in seen.text
    assert (await as_support.submit(f"/invoices/{invoice.id}/finalize")).status_code == 403

    finalized = await owner_console.submit(f"/invoices/{invoice.id}/finalize")
    assert finalized.status_code == 303 and finalized.headers["location"] == f"/invoices/{invoice.id}"
    (after,) = await rows(ctx_factory, Invoice, Invoice.id == invoice.id)
    assert after.status == "finalized" and after.number is not None
    page = await owner_console.get(f"/invoices/{invoice.id}")
    assert f"Invoice {after.number}" in page.text and 'data-testid="uncollectible"' in page.text
    assert 'data-testid="finalize"' not in page.text
