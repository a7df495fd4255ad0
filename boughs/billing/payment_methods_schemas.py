"""What the payment-methods API reads and answers (seed 002: "allow child accounts to use
this payment method" is ``shared_with_children``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from boughs.billing.models import PaymentMethodKind
from boughs.kit.schema import Input, Output

# A run of 12 to 19 digits, optionally grouped by single spaces or dashes: a card number.
_PAN = re.compile(r"(?<![0-9])(?:[0-9][ -]?){11,18}[0-9](?![0-9])")


def check_token_reference(value: str | None) -> str | None:
    if value is not None and _PAN.search(value):
        raise ValueError(
            "looks like a full card or account number (12 to 19 digits), which is never stored; "
            "send the opaque token your payment gateway returned for it, and the last four digits "
            "in last_four"
        )
    return value


def check_last_four(value: str | None) -> str | None:
    if value is not None and not (len(value) == 4 and value.isascii() and value.isdigit()):
        raise ValueError("must be exactly 4 digits; send only the last four digits of the number")
    return value


class PaymentMethodCreate(Input):
    kind: PaymentMethodKind
    label: str = Field(default="", max_length=200, description="What the customer calls it.")
    last_four: str | None = Field(default=None, description="Last 4 digits; card and bank_account only.")
    holder: str | None = Field(default=None, min_length=1, max_length=200)
    token_reference: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The gateway's opaque reference to the stored method; never a card number.",
    )
    is_default: bool | None = Field(
        default=None,
        description="The account pays with its default method. Omitted: the account's first method is it.",
    )
    shared_with_children: bool = Field(
        default=False, description="Allow child accounts to use this payment method."
    )

    _last_four = field_validator("last_four")(check_last_four)
    _token = field_validator("token_reference")(check_token_reference)


class PaymentMethodUpdate(Input):
    """Only what is sent changes; null clears last_four, holder and token_reference."""

    kind: PaymentMethodKind | None = None
    label: str | None = Field(default=None, max_length=200)
    last_four: str | None = None
    holder: str | None = Field(default=None, min_length=1, max_length=200)
    token_reference: str | None = Field(default=None, min_length=1, max_length=255)
    is_default: bool | None = None
    shared_with_children: bool | None = None

    _last_four = field_validator("last_four")(check_last_four)
    _token = field_validator("token_reference")(check_token_reference)

    # Runs only for fields the request sent: that is when null is a mistake.
    @field_validator("kind", "label", "is_default", "shared_with_children")
    @classmethod
    def _required_stay_set(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit it to leave it unchanged")
        return value


class PaymentMethodOut(Output):
    id: int
    account_id: int
    kind: PaymentMethodKind
    label: str
    last_four: str | None
    holder: str | None
    token_reference: str | None
    is_default: bool
    shared_with_children: bool
    created_at: datetime
    updated_at: datetime
