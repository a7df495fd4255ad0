"""The child connection form (seed 000), its rows, and the dual device users view."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from boughs.accounts.models import AccountStatus, InvoiceMode
from boughs.accounts.schemas import AccountOut
from boughs.kit.schema import Input, Output
from boughs.services.schemas import ServiceOut


class ChildConnectionCreate(Input):
    """One form: the child account (label, expiry, invoice mode) and its internet service."""

    label: str = Field(min_length=1, max_length=200, description="Becomes the child account's name.")
    username: str = Field(min_length=1, max_length=128, description="The service's login.")
    password: str = Field(min_length=1, max_length=128)
    plan_id: int = Field(description="An internet plan offered to the parent (or public).")
    ip_address: str | None = Field(default=None, description="A permanent IPv4 address; blank: dynamic.")
    mac_address: str | None = Field(default=None, description="Lock the connection to one device.")
    expiry_date: date | None = Field(default=None, description="Blank inherits the parent's expiry.")
    invoice_mode: InvoiceMode


class ChildConnectionUpdate(Input):
    """Only the fields sent change. expiry_date null clears it (the child inherits again);
    ip_address null makes the address dynamic; mac_address null unlocks the device."""

    label: str | None = Field(default=None, min_length=1, max_length=200)
    plan_id: int | None = None
    ip_address: str | None = None
    mac_address: str | None = None
    expiry_date: date | None = None
    invoice_mode: InvoiceMode | None = None

    # A field validator so the error names the field; it only runs for fields sent.
    @field_validator("label", "plan_id", "invoice_mode")
    @classmethod
    def _required_stay_set(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit it to leave it unchanged")
        return value


class PlanRef(Output):
    id: int
    name: str


class EffectiveExpiry(Output):
    value: date | None
    # own | inherited | none
    source: str
    source_account_id: int | None


class ChildConnectionOut(Output):
    account_id: int
    label: str
    # The effective status: a suspended parent shows its children suspended.
    status: AccountStatus
    username: str | None
    plan: PlanRef | None
    effective_expiry: EffectiveExpiry
    invoice_mode: InvoiceMode
    service_id: int | None
    ip_address: str | None
    mac_address: str | None


class ChildConnectionCreated(Output):
    account: AccountOut
    service: ServiceOut


class DualDeviceKind(StrEnum):
    children = "children"
    companion = "companion"
    all = "all"


class DualDeviceUserOut(Output):
    account_id: int
    name: str
    child_count: int
    companion_allowed: bool
    # Null when no service of the account allows a companion device.
    device_allowance: int | None
    devices_in_use: int | None
