from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import available_timezones

from pydantic import AliasChoices, EmailStr, Field, field_validator

from boughs.accounts.models import AccountStatus, InvoiceMode, ParentAccess
from boughs.billing.terms import parse_rate, rate_text
from boughs.catalog.schemas import OfferSummary
from boughs.kit.periods import Period
from boughs.kit.schema import Input, Output

_TIMEZONES = frozenset(available_timezones())
KNOWN_FEATURES = frozenset({"subaccounts"})


def check_timezone(value: str | None) -> str | None:
    if value is not None and value not in _TIMEZONES:
        raise ValueError("is not an IANA timezone name; use one like 'Europe/Berlin' or 'UTC'")
    return value


def check_currency(value: str | None) -> str | None:
    if value is not None and not (len(value) == 3 and value.isalpha() and value.isupper()):
        raise ValueError("is not an ISO 4217 code; use three capital letters such as 'EUR'")
    return value


def check_tax_rate(value: Any) -> Decimal | None:
    """A percent such as "8.875" (null: inherit); stored as parts per million."""
    return None if value is None else parse_rate(value)


def rate_out(value: Any) -> Any:
    """Parts per million read from a row, as the percent text the API shows."""
    return rate_text(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _check_features(value: dict[str, bool] | None) -> dict[str, bool] | None:
    if value is not None:
        unknown = sorted(set(value) - KNOWN_FEATURES)
        if unknown:
            raise ValueError(
                f"has unknown feature(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_FEATURES))}"
            )
    return value


class AccountFields(Input):
    """Fields an operator writes on create and update; null means inherit where it can."""

    name: str = Field(min_length=1, max_length=200)
    external_id: str | None = Field(default=None, min_length=1, max_length=100)
    description: str = Field(default="", max_length=10_000)
    contact_email: EmailStr | None = None
    technical_contact_email: EmailStr | None = None
    expiry_date: date | None = None
    invoice_mode: InvoiceMode = InvoiceMode.separate
    parent_access: ParentAccess = ParentAccess.manage
    timezone: str | None = None
    currency: str | None = None
    features: dict[str, bool] = Field(default_factory=dict)
    billing_address: str | None = Field(default=None, max_length=2_000)
    billing_tax_id: str | None = Field(default=None, max_length=64)
    billing_email: EmailStr | None = None
    tax_rate: Decimal | None = Field(
        default=None, description='Tax percent such as "8.875" (at most 4 decimals); null inherits.'
    )
    tax_exempt: bool = Field(default=False, description="No tax here and below it.")
    net_terms_days: int | None = Field(default=None, ge=0, le=365, description="Days to pay; null inherits.")
    billing_anchor_day: int = Field(default=1, ge=1, le=28, description="Billing periods start on this day.")

    _tz = field_validator("timezone")(check_timezone)
    _cur = field_validator("currency")(check_currency)
    _feat = field_validator("features")(_check_features)
    _rate = field_validator("tax_rate", mode="before")(check_tax_rate)


class AccountCreate(AccountFields):
    parent_id: int | None = None
    # Seed 003: the new account's administrators, existing users or emails to invite.
    administrators: list[EmailStr] = Field(default_factory=list, max_length=50)
    # Seed 002: accept the MSA and AUP for the child now, or leave them to its admin.
    preaccept_agreements: bool = False


class AgreementsAccept(Input):
    msa: bool = False
    aup: bool = False


class AccountUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    external_id: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=10_000)
    contact_email: EmailStr | None = None
    technical_contact_email: EmailStr | None = None
    expiry_date: date | None = None
    invoice_mode: InvoiceMode | None = None
    parent_access: ParentAccess | None = None
    timezone: str | None = None
    currency: str | None = None
    features: dict[str, bool] | None = None
    billing_address: str | None = Field(default=None, max_length=2_000)
    billing_tax_id: str | None = Field(default=None, max_length=64)
    billing_email: EmailStr | None = None
    tax_rate: Decimal | None = None
    tax_exempt: bool | None = None
    net_terms_days: int | None = Field(default=None, ge=0, le=365)
    billing_anchor_day: int | None = Field(default=None, ge=1, le=28)

    _tz = field_validator("timezone")(check_timezone)
    _cur = field_validator("currency")(check_currency)
    _feat = field_validator("features")(_check_features)
    _rate = field_validator("tax_rate", mode="before")(check_tax_rate)

    # A field validator (not a model one) so the error names the field; it only runs
    # for fields the request sent, which is exactly when null is a mistake.
    @field_validator(
        "name", "invoice_mode", "parent_access", "features", "description", "tax_exempt", "billing_anchor_day"
    )
    @classmethod
    def _required_stay_set(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit it to leave it unchanged")
        return value


class MoveRequest(Input):
    parent_id: int | None


class RenewRequest(Input):
    """Exactly one of expiry_date, or period (times count). The service checks the pair, so
    its error can name both fields."""

    expiry_date: date | None = None
    period: Period | None = None
    count: int = Field(default=1, ge=1, le=120)


class StatusChange(Input):
    reason: str = Field(default="", max_length=500)


class AccountOut(Output):
    id: int
    parent_id: int | None
    root_id: int
    path: str
    depth: int
    name: str
    external_id: str | None
    description: str
    contact_email: str | None
    technical_contact_email: str | None
    status: AccountStatus
    expiry_date: date | None
    invoice_mode: InvoiceMode
    parent_access: ParentAccess
    timezone: str | None
    currency: str | None
    features: dict[str, Any]
    billing_address: str | None
    billing_tax_id: str | None
    billing_email: str | None
    # Read from the row's tax_rate_ppm; a percent such as "8.875", or null (inherits).
    tax_rate: str | None = Field(validation_alias=AliasChoices("tax_rate", "tax_rate_ppm"))
    tax_exempt: bool
    net_terms_days: int | None
    billing_anchor_day: int
    msa_accepted_at: datetime | None
    aup_accepted_at: datetime | None
    created_at: datetime
    updated_at: datetime

    _rate = field_validator("tax_rate", mode="before")(rate_out)


class AdministratorAdded(Output):
    """A named administrator: a membership now, or an invitation with its one-time link."""

    membership_id: int | None = None
    invitation_id: int | None = None
    email: str
    link: str | None = None


class AccountCreated(AccountOut):
    administrators: list[AdministratorAdded] = []


class AccountLinkOut(Output):
    parent_id: int | None
    valid_from: datetime
    valid_to: datetime | None


class InheritedValue(Output):
    value: Any
    source_account_id: int | None
    source: str


class EffectiveStatus(Output):
    value: AccountStatus
    source_account_id: int | None
    blocked: bool
    # "unpaid" while an overdue invoice holds the account (it alone, not its subtree).
    reason: str | None = None


class BillingDetails(Output):
    address: InheritedValue
    tax_id: InheritedValue
    email: InheritedValue


class AgreementsOut(Output):
    msa_accepted_at: datetime | None
    msa_accepted_by: int | None
    msa_version: str | None
    aup_accepted_at: datetime | None
    aup_accepted_by: int | None
    aup_version: str | None
    complete: bool


class EffectiveOut(Output):
    account_id: int
    status: EffectiveStatus
    expiry_date: InheritedValue
    timezone: InheritedValue
    currency: InheritedValue
    billing_details: BillingDetails
    # value: {id, kind, label, last_four, holder, account_id} or null.
    payment_method: InheritedValue
    # value: {rate_ppm, exempt, rate}; rate is a percent such as "8.875".
    tax_rate: InheritedValue
    # value: days from issue to due date.
    net_terms: InheritedValue
    # value: the id of the account whose invoice carries this account's charges.
    invoice_owner: InheritedValue
    agreements: AgreementsOut
    offers: list[OfferSummary] = []


class SubtreeSummaryOut(Output):
    accounts: int
    active: int
    max_depth: int


class DeletionReport(Output):
    account_id: int
    removed: dict[str, int]
    kept: dict[str, int]
    refused_because: list[str]
