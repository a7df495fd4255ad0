"""The provider's own settings: defaults its accounts inherit, and how long raw usage is kept."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator

from boughs.accounts.schemas import check_currency, check_timezone
from boughs.kit.schema import Input, Output


class ProviderUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    default_timezone: str | None = None
    default_currency: str | None = None
    max_account_depth: int | None = Field(default=None, ge=0, le=1000)
    usage_retention_days: int | None = Field(
        default=None, ge=1, le=36_500, description="Days raw usage events are kept; rollups are kept forever."
    )

    _tz = field_validator("default_timezone")(check_timezone)
    _cur = field_validator("default_currency")(check_currency)


class ProviderOut(Output):
    id: int
    name: str
    default_timezone: str
    default_currency: str
    max_account_depth: int | None
    usage_retention_days: int
    created_at: datetime
    updated_at: datetime
