"""What the bill-run and invoice API reads and writes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import Field

from boughs.kit.schema import Input, Output


class BillRunCreate(Input):
    period_end: date = Field(description="The last day of the billing period to bill (YYYY-MM-DD).")
    dry_run: bool = Field(default=False, description="Preview the invoices without writing drafts.")
    finalize: bool = Field(default=False, description="Finalize the invoices as they are made.")


class BillRunOut(Output):
    id: int
    period_end: date
    dry_run: bool
    status: str
    job_id: int | None
    roots_total: int
    roots_done: int
    invoices_created: int
    invoices_skipped: int
    total_amount: dict[str, int]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class InvoiceLineOut(Output):
    id: int
    position: int
    kind: str
    account_id: int | None
    service_id: int | None
    plan_id: int | None
    meter_code: str | None
    description: str
    period_start: date
    period_end: date
    quantity: str
    unit_price: str
    amount: int
    details: dict[str, Any]


class InvoiceOut(Output):
    id: int
    bill_run_id: int | None
    owner_account_id: int
    status: str
    number: str | None
    currency: str
    period_start: date
    period_end: date
    issue_date: date | None
    due_date: date | None
    net_terms_days: int
    tax_rate_ppm: int
    tax_exempt: bool
    layout: str
    subtotal_amount: int
    tax_amount: int
    total_amount: int
    amount_paid: int
    amount_credited: int
    balance_due: int = 0
    bill_to: dict[str, Any]
    payer: dict[str, Any]
    account_ids: list[int]
    created_at: datetime
    finalized_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    dunning_started_at: datetime | None

    @classmethod
    def of(cls, invoice: Any) -> InvoiceOut:
        out = cls.model_validate(invoice)
        out.balance_due = invoice.total_amount - invoice.amount_paid - invoice.amount_credited
        return out


class InvoiceDetailOut(InvoiceOut):
    lines: list[InvoiceLineOut] = []


class BillRunDetailOut(BillRunOut):
    # A dry run's invoices: exactly what the real run would write.
    previews: list[InvoiceDetailOut] = []


class VoidRequest(Input):
    reason: str = Field(default="", max_length=2000)
