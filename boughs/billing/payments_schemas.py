"""What the payments, credit notes and transactions API reads and answers.

Money is integer minor units of ``currency`` (cents for USD): 1250 is $12.50.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from boughs.kit.schema import Input, Output

MAX_AMOUNT = 2**62
MAX_INVOICES = 100
MAX_LINES = 100


class PaymentMethodName(StrEnum):
    """How the money came: the kinds of payment method, and cash or anything else."""

    card = "card"
    bank_account = "bank_account"
    mobile_money = "mobile_money"
    manual = "manual"
    cash = "cash"
    other = "other"


def _currency(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


class PaymentCreate(Input):
    method: PaymentMethodName
    payment_method_id: int | None = Field(
        default=None, ge=1, description="The account's own method, or an ancestor's shared with children."
    )
    amount: int = Field(gt=0, le=MAX_AMOUNT, description="Minor units of the currency.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="The account's effective currency.")
    received_on: date = Field(description="Not after today in the account's timezone.")
    reference: str = Field(
        min_length=1, max_length=200, description="The sender's reference: a payment is recorded once."
    )
    invoice_ids: list[int] | None = Field(
        default=None,
        max_length=MAX_INVOICES,
        description="Pay these invoices in this order; without it, the oldest open invoices first.",
    )
    note: str = Field(default="", max_length=2000)

    _upper = field_validator("currency", mode="before")(_currency)


class AllocationOut(Output):
    id: int
    invoice_id: int
    # Negative when a refund took money back off the invoice.
    amount: int
    created_at: datetime


class PaymentOut(Output):
    id: int
    account_id: int
    payment_method_id: int | None
    method: str
    amount: int
    currency: str
    received_on: date
    reference: str
    refunded_amount: int
    # Received, not refunded, and on no invoice: the account's credit balance from it.
    unallocated_amount: int
    note: str
    created_by_user_id: int | None
    created_at: datetime
    allocations: list[AllocationOut]


class RefundCreate(Input):
    amount: int = Field(gt=0, le=MAX_AMOUNT, description="At most what is not refunded yet.")
    reason: str = Field(min_length=1, max_length=2000)


class RefundedInvoice(Output):
    invoice_id: int
    amount: int


class RefundOut(Output):
    amount: int
    reason: str
    # Where the money came from: the unallocated part first, then invoices, newest first.
    from_unallocated: int
    from_invoices: list[RefundedInvoice]
    payment: PaymentOut


class CreditNoteLineIn(Input):
    description: str = Field(min_length=1, max_length=500)
    amount: int = Field(gt=0, le=MAX_AMOUNT, description="Before tax, minor units of the invoice's currency.")
    invoice_line_id: int | None = Field(default=None, ge=1, description="The invoice line it corrects.")


class CreditNoteCreate(Input):
    invoice_id: int = Field(ge=1)
    reason: str = Field(min_length=1, max_length=2000)
    lines: list[CreditNoteLineIn] = Field(min_length=1, max_length=MAX_LINES)


class CreditNoteOut(Output):
    id: int
    number: str
    status: str
    invoice_id: int
    account_id: int
    currency: str
    reason: str
    subtotal_amount: int
    tax_amount: int
    total_amount: int
    lines: list[dict[str, Any]]
    created_by_user_id: int | None
    created_at: datetime


class TransactionOut(Output):
    id: int
    # invoice | payment | credit_note | refund | void | adjustment
    kind: str
    # Positive: the account owes more; negative: it owes less.
    amount: int
    balance_after: int
    currency: str
    occurred_on: date
    description: str
    invoice_id: int | None
    payment_id: int | None
    credit_note_id: int | None
    created_at: datetime


class TransactionsPage(Output):
    items: list[TransactionOut]
    next_cursor: str | None
    # What the account owes now (negative: credit in its favour); on the first page only.
    balance: int | None
    currency: str
