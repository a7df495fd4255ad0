"""Billing: payment methods, bill runs, invoices and their lines, credit notes, payments.

Money is integer minor units of ``currency``. A finalized invoice is a legal record:
the database itself refuses to change what it says (see migration 0007's triggers);
it is only ever corrected by a credit note.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from boughs.db import Base
from boughs.kit.types import BigId, JSONDoc, UTCDateTime


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class PaymentMethodKind(StrEnum):
    card = "card"
    bank_account = "bank_account"
    mobile_money = "mobile_money"
    manual = "manual"


class PaymentMethod(Base):
    """How an account pays (seed 002). The token is an opaque reference to a gateway's
    vault; no card or bank number is ever stored, only its last four digits."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        Index("ix_payment_methods_account_id", "account_id"),
        # At most one default per account.
        Index(
            "uq_payment_methods_default",
            "account_id",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
        CheckConstraint(_in("kind", PaymentMethodKind), name="kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    last_four: Mapped[str | None] = mapped_column(String(4), nullable=True)
    holder: Mapped[str | None] = mapped_column(String(200), nullable=True)
    token_reference: Mapped[str | None] = mapped_column(String(255), nullable=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # "Allow child accounts to use this payment method" (seed 002).
    shared_with_children: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BillRunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class BillRun(Base):
    """Billing every invoice owner of a provider for the period ending on ``period_end``.

    The run fans out in chunks of root accounts; each root is billed in its own unit of
    work and the chunk's cursor moves in that same transaction, so a crash resumes where
    it stopped and nothing is billed twice.
    """

    __tablename__ = "bill_runs"
    __table_args__ = (
        Index("ix_bill_runs_provider_id_id", "provider_id", "id"),
        CheckConstraint(_in("status", BillRunStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    period_end: Mapped[date] = mapped_column(Date)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=BillRunStatus.queued.value)
    job_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    roots_total: Mapped[int] = mapped_column(Integer, default=0)
    roots_done: Mapped[int] = mapped_column(Integer, default=0)
    invoices_created: Mapped[int] = mapped_column(Integer, default=0)
    invoices_skipped: Mapped[int] = mapped_column(Integer, default=0)
    total_amount: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BillRunChunk(Base):
    """A slice of a bill run's root accounts, billed by one job; ``after_root_id`` is how
    far it got, moved in the same transaction as the invoices of that root."""

    __tablename__ = "bill_run_chunks"
    __table_args__ = (UniqueConstraint("bill_run_id", "position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    bill_run_id: Mapped[int] = mapped_column(ForeignKey("bill_runs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    first_root_id: Mapped[int] = mapped_column(BigId)
    last_root_id: Mapped[int] = mapped_column(BigId)
    roots: Mapped[int] = mapped_column(Integer)
    after_root_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    roots_done: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    job_id: Mapped[int | None] = mapped_column(BigId, nullable=True)


class InvoiceStatus(StrEnum):
    # A dry run's invoice: exactly what the real run would write, never finalized.
    preview = "preview"
    draft = "draft"
    finalized = "finalized"
    paid = "paid"
    void = "void"
    uncollectible = "uncollectible"


# Statuses whose invoice counts toward "one invoice per owner per period".
BILLED = ("draft", "finalized", "paid", "uncollectible")
# Statuses after finalization: the invoice's content is frozen.
ISSUED = ("finalized", "paid", "void", "uncollectible")


class Invoice(Base):
    """One invoice owner's charges for one billing period.

    ``owner_account_id`` and the line's ``account_id`` carry no foreign key: a finalized
    invoice outlives the accounts it names (their bill-to snapshot is anonymised).
    """

    __tablename__ = "invoices"
    __table_args__ = (
        Index(
            "uq_invoices_owner_period",
            "provider_id",
            "owner_account_id",
            "period_end",
            unique=True,
            sqlite_where=text(f"status IN {BILLED}"),
            postgresql_where=text(f"status IN {BILLED}"),
        ),
        UniqueConstraint("provider_id", "number"),
        Index("ix_invoices_owner_account_id_period_end", "owner_account_id", "period_end"),
        Index("ix_invoices_bill_run_id", "bill_run_id"),
        Index("ix_invoices_provider_id_status_due_date", "provider_id", "status", "due_date"),
        CheckConstraint(_in("status", InvoiceStatus), name="status"),
        CheckConstraint("period_end >= period_start", name="period"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    bill_run_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    owner_account_id: Mapped[int] = mapped_column(BigId)
    status: Mapped[str] = mapped_column(String(16))
    # Gapless per provider, given at finalization.
    number: Mapped[str | None] = mapped_column(String(32), nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    issue_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    net_terms_days: Mapped[int] = mapped_column(Integer, default=0)
    # Parts per million; 0 with tax_exempt for an exempt owner.
    tax_rate_ppm: Mapped[int] = mapped_column(Integer, default=0)
    tax_exempt: Mapped[bool] = mapped_column(Boolean, default=False)
    # parent_breakdown: one section per child account; parent_summary: charges summed.
    layout: Mapped[str] = mapped_column(String(16), default="breakdown")
    subtotal_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    total_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_credited: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bill-to details and the payer as they were when the invoice was made.
    bill_to: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    payer: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    # Accounts this invoice carries charges for: dunning suspends exactly these.
    account_ids: Mapped[list[int]] = mapped_column(JSONDoc, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set while the invoice, overdue, holds its accounts suspended.
    dunning_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LineKind(StrEnum):
    recurring = "recurring"
    usage = "usage"
    discount = "discount"
    tax = "tax"
    adjustment = "adjustment"
    proration = "proration"


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (
        Index("ix_invoice_lines_invoice_id_position", "invoice_id", "position"),
        # What a service was already billed for a cycle, when a later change corrects it.
        Index("ix_invoice_lines_service_id_period_start", "service_id", "period_start"),
        CheckConstraint(_in("kind", LineKind), name="kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    # The account the charge is for (a child's, on its parent's invoice).
    account_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    service_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    plan_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    meter_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    description: Mapped[str] = mapped_column(Text)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    # Decimal strings: exact on both engines, never rounded.
    quantity: Mapped[str] = mapped_column(String(64))
    unit_price: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    # Tiers, proration days, pooled allocation: how the amount came about.
    details: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)


class CreditNoteStatus(StrEnum):
    issued = "issued"
    void = "void"


class CreditNote(Base):
    """A correction of a finalized invoice: reduces what is owed on it."""

    __tablename__ = "credit_notes"
    __table_args__ = (
        UniqueConstraint("provider_id", "number"),
        Index("ix_credit_notes_invoice_id", "invoice_id"),
        Index("ix_credit_notes_account_id", "account_id"),
        CheckConstraint(_in("status", CreditNoteStatus), name="status"),
        CheckConstraint("total_amount > 0", name="total_amount"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="RESTRICT"))
    account_id: Mapped[int] = mapped_column(BigId)
    number: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=CreditNoteStatus.issued.value)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text, default="")
    subtotal_amount: Mapped[int] = mapped_column(BigInteger)
    tax_amount: Mapped[int] = mapped_column(BigInteger)
    total_amount: Mapped[int] = mapped_column(BigInteger)
    # [{"description", "amount", "invoice_line_id"}]
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONDoc, default=list)
    created_by_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Payment(Base):
    """Money received from an account. What is not allocated to invoices is a credit
    balance, allocated oldest-first to the next invoices."""

    __tablename__ = "payments"
    __table_args__ = (
        Index("ix_payments_account_id", "account_id"),
        UniqueConstraint("provider_id", "account_id", "reference"),
        CheckConstraint("amount > 0", name="amount"),
        CheckConstraint("refunded_amount >= 0 AND refunded_amount <= amount", name="refunded_amount"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    account_id: Mapped[int] = mapped_column(BigId)
    payment_method_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    method: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    received_on: Mapped[date] = mapped_column(Date)
    # The sender's reference (bank transfer id, receipt number): a payment is recorded once.
    reference: Mapped[str] = mapped_column(String(200))
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by_user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PaymentAllocation(Base):
    __tablename__ = "payment_allocations"
    __table_args__ = (
        Index("ix_payment_allocations_payment_id", "payment_id"),
        Index("ix_payment_allocations_invoice_id", "invoice_id"),
        CheckConstraint("amount <> 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="RESTRICT"))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="RESTRICT"))
    # Negative when a refund takes money back off an invoice.
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerKind(StrEnum):
    invoice = "invoice"
    payment = "payment"
    credit_note = "credit_note"
    refund = "refund"
    adjustment = "adjustment"
    void = "void"


class LedgerEntry(Base):
    """The account's transaction history (seed 000): what it owes goes up with invoices and
    down with payments and credits. ``amount`` is signed: positive is owed by the account."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_account_id_id", "account_id", "id"),
        CheckConstraint(_in("kind", LedgerKind), name="kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    account_id: Mapped[int] = mapped_column(BigId)
    kind: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    invoice_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    payment_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    credit_note_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    occurred_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DunningHold(Base):
    """An account suspended because an invoice carrying its charges is overdue. Paying the
    invoice lifts the hold; the account's own status is never touched."""

    __tablename__ = "dunning_holds"
    __table_args__ = (
        UniqueConstraint("invoice_id", "account_id"),
        Index("ix_dunning_holds_account_id", "account_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
