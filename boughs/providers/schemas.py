"""The provider's own settings: defaults its accounts inherit, and how long raw usage is kept."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import AliasChoices, Field, field_validator

from boughs.accounts.schemas import check_currency, check_tax_rate, check_timezone, rate_out
from boughs.kit.schema import Input, Output


def check_number_prefix(value: str | None) -> str | None:
    if value is not None and not all((c.isascii() and c.isalnum()) or c in "-_/ " for c in value):
        raise ValueError(
            "may hold only letters, digits, '-', '_', '/' and spaces; use a prefix such as 'INV-2026/'"
        )
    return value


class ProviderUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    default_timezone: str | None = None
    default_currency: str | None = None
    max_account_depth: int | None = Field(default=None, ge=0, le=1000)
    usage_retention_days: int | None = Field(
        default=None, ge=1, le=36_500, description="Days raw usage events are kept; rollups are kept forever."
    )
    default_tax_rate: Decimal | None = Field(
        default=None, description='Tax percent such as "8.875" where no account sets one.'
    )
    default_net_terms_days: int | None = Field(
        default=None, ge=0, le=365, description="Days from issue to due date for accounts that set none."
    )
    dunning_grace_days: int | None = Field(
        default=None, ge=0, le=365, description="Days past due before an unpaid invoice suspends."
    )
    invoice_number_prefix: str | None = Field(default=None, min_length=1, max_length=16)
    credit_note_number_prefix: str | None = Field(default=None, min_length=1, max_length=16)

    _tz = field_validator("default_timezone")(check_timezone)
    _cur = field_validator("default_currency")(check_currency)
    _rate = field_validator("default_tax_rate", mode="before")(check_tax_rate)
    _prefix = field_validator("invoice_number_prefix", "credit_note_number_prefix")(check_number_prefix)


class ProviderOut(Output):
    id: int
    name: str
    default_timezone: str
    default_currency: str
    max_account_depth: int | None
    usage_retention_days: int
    # Read from the row's default_tax_rate_ppm.
    default_tax_rate: str = Field(validation_alias=AliasChoices("default_tax_rate", "default_tax_rate_ppm"))
    default_net_terms_days: int
    dunning_grace_days: int
    invoice_number_prefix: str
    credit_note_number_prefix: str
    created_at: datetime
    updated_at: datetime

    _rate = field_validator("default_tax_rate", mode="before")(rate_out)
