"""What the catalog API reads and writes.

Shapes and ranges are checked here; rules that tie fields together (a cap needs its
action, tiers need their model) are the service's, so a PATCH is checked on the plan
it would produce and every error names the field it is about.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from boughs.catalog.models import CapAction, ChildBillingMode, PayPeriod, PlanKind, PoolKind, PricingModel
from boughs.kit.schema import Input, Output

MAX_BIGINT = 2**63 - 1
MAX_RATE = 10**9  # kbit/s: a terabit
MAX_DEVICES = 16
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class RouterType(StrEnum):
    mikrotik = "mikrotik"
    cisco = "cisco"
    juniper = "juniper"
    ubiquiti = "ubiquiti"
    accel_ppp = "accel-ppp"
    other = "other"


def check_currency(value: str | None) -> str | None:
    if value is not None and not (
        len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()
    ):
        raise ValueError("is not an ISO 4217 code; use three capital letters such as 'EUR'")
    return value


def check_address(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _HOSTNAME.match(value.lower()):
        raise ValueError(
            "is neither an IP address nor a hostname; use one like 192.0.2.1 or nas1.example.com"
        )
    return value.lower()


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("cannot be null; omit it to leave it unchanged")
    return value


# --- plans -------------------------------------------------------------------------------


class UsageTier(Input):
    """A band of usage up to ``up_to`` units (null: no upper end; only the last tier)."""

    up_to: int | None = Field(default=None, ge=1, le=MAX_BIGINT)
    unit_price: Decimal = Field(ge=0, max_digits=24, decimal_places=10)
    flat_amount: int | None = Field(default=None, ge=0, le=MAX_BIGINT)


class UsageCharge(Input):
    meter: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.\-]+$")
    model: PricingModel
    unit_price: Decimal | None = Field(default=None, ge=0, max_digits=24, decimal_places=10)
    tiers: list[UsageTier] = Field(default_factory=list, max_length=50)
    package_size: int | None = Field(default=None, gt=0, le=MAX_BIGINT)
    package_amount: int | None = Field(default=None, ge=0, le=MAX_BIGINT)

    def stored(self) -> dict[str, Any]:
        """The JSON document kept on the plan: decimals as strings, so nothing is rounded."""
        return {
            "meter": self.meter,
            "model": self.model.value,
            "unit_price": str(self.unit_price) if self.unit_price is not None else None,
            "tiers": [
                {
                    "up_to": t.up_to,
                    "unit_price": str(t.unit_price),
                    "flat_amount": t.flat_amount,
                }
                for t in self.tiers
            ],
            "package_size": self.package_size,
            "package_amount": self.package_amount,
        }


class PlanFields(Input):
    name: str = Field(min_length=1, max_length=200)
    kind: PlanKind
    description: str = Field(default="", max_length=10_000)
    price_amount: int = Field(ge=0, le=MAX_BIGINT)
    # Null: the provider's default currency.
    currency: str | None = None
    pay_period: PayPeriod = PayPeriod.month
    public: bool = False
    download_rate: int | None = Field(default=None, ge=1, le=MAX_RATE)
    upload_rate: int | None = Field(default=None, ge=1, le=MAX_RATE)
    data_cap_bytes: int | None = Field(default=None, ge=1, le=MAX_BIGINT)
    cap_action: CapAction | None = None
    # The cap counts the usage of the subscriber's whole subtree, pooled.
    pooled_cap: bool = False
    throttle_download_rate: int | None = Field(default=None, ge=1, le=MAX_RATE)
    throttle_upload_rate: int | None = Field(default=None, ge=1, le=MAX_RATE)
    device_allowance: int = Field(default=1, ge=1, le=MAX_DEVICES)
    usage_charges: list[UsageCharge] = Field(default_factory=list, max_length=50)
    # On a parent's service: how its usage charges bill the subtree (null: its own usage only).
    child_billing_mode: ChildBillingMode | None = None

    _cur = field_validator("currency")(check_currency)


class PlanCreate(PlanFields):
    pass


class PlanUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: PlanKind | None = None
    description: str | None = Field(default=None, max_length=10_000)
    price_amount: int | None = Field(default=None, ge=0, le=MAX_BIGINT)
    currency: str | None = None
    pay_period: PayPeriod | None = None
    public: bool | None = None
    download_rate: int | None = Field(default=None, ge=1, le=MAX_RATE)
    upload_rate: int | None = Field(default=None, ge=1, le=MAX_RATE)
    data_cap_bytes: int | None = Field(default=None, ge=1, le=MAX_BIGINT)
    cap_action: CapAction | None = None
    pooled_cap: bool | None = None
    throttle_download_rate: int | None = Field(default=None, ge=1, le=MAX_RATE)
    throttle_upload_rate: int | None = Field(default=None, ge=1, le=MAX_RATE)
    device_allowance: int | None = Field(default=None, ge=1, le=MAX_DEVICES)
    usage_charges: list[UsageCharge] | None = Field(default=None, max_length=50)
    child_billing_mode: ChildBillingMode | None = None
    # True retires the plan (it keeps its subscribers, takes no new ones); false brings it back.
    retired: bool | None = None

    _cur = field_validator("currency")(check_currency)
    _set = field_validator(
        "name",
        "kind",
        "description",
        "price_amount",
        "currency",
        "pay_period",
        "public",
        "pooled_cap",
        "device_allowance",
        "usage_charges",
        "retired",
    )(_not_null)


class UsageTierOut(Output):
    up_to: int | None
    unit_price: str
    flat_amount: int | None = None


class UsageChargeOut(Output):
    meter: str
    model: str
    unit_price: str | None = None
    tiers: list[UsageTierOut] = []
    package_size: int | None = None
    package_amount: int | None = None


class PlanOut(Output):
    id: int
    name: str
    kind: str
    description: str
    price_amount: int
    currency: str
    pay_period: str
    public: bool
    download_rate: int | None
    upload_rate: int | None
    data_cap_bytes: int | None
    cap_action: str | None
    pooled_cap: bool
    throttle_download_rate: int | None
    throttle_upload_rate: int | None
    device_allowance: int
    usage_charges: list[UsageChargeOut]
    child_billing_mode: str | None = None
    retired: bool = False
    retired_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, plan: Any) -> PlanOut:
        out = cls.model_validate(plan)
        out.retired = plan.retired_at is not None
        return out


class OfferCreate(Input):
    account_id: int


class OfferOut(Output):
    plan_id: int
    account_id: int
    account_name: str
    created_by_user_id: int | None
    created_at: datetime


class OfferSummary(Output):
    """A plan available to an account, as ``effective`` shows it."""

    plan_id: int
    name: str
    kind: str
    # own: offered to the account itself; inherited: to an ancestor; public: open to all.
    source: str
    source_account_id: int | None


# --- routers -----------------------------------------------------------------------------


class RouterCreate(Input):
    name: str = Field(min_length=1, max_length=200)
    address: str = Field(min_length=1, max_length=255)
    type: RouterType
    description: str = Field(default="", max_length=10_000)
    radius_secret: str = Field(min_length=1, max_length=255)

    _addr = field_validator("address")(check_address)


class RouterUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: str | None = Field(default=None, min_length=1, max_length=255)
    type: RouterType | None = None
    description: str | None = Field(default=None, max_length=10_000)
    radius_secret: str | None = Field(default=None, min_length=1, max_length=255)

    _addr = field_validator("address")(check_address)
    _set = field_validator("name", "address", "type", "description", "radius_secret")(_not_null)


class RouterOut(Output):
    """The RADIUS secret is never shown here: POST .../reveal-secret shows it."""

    id: int
    name: str
    address: str
    type: str
    description: str
    created_at: datetime
    updated_at: datetime


class RouterSecretOut(Output):
    router_id: int
    radius_secret: str


# --- IPv4 pools and ports ----------------------------------------------------------------


class IpPoolCreate(Input):
    name: str = Field(min_length=1, max_length=200)
    cidr: str = Field(min_length=1, max_length=18)
    kind: PoolKind
    # Null: the provider's own pool.
    owner_account_id: int | None = None
    shared_with_descendants: bool = False


class IpPoolUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    cidr: str | None = Field(default=None, min_length=1, max_length=18)
    kind: PoolKind | None = None
    owner_account_id: int | None = None
    shared_with_descendants: bool | None = None

    _set = field_validator("name", "cidr", "kind", "shared_with_descendants")(_not_null)


class IpPoolOut(Output):
    id: int
    name: str
    cidr: str
    kind: str
    owner_account_id: int | None
    shared_with_descendants: bool
    created_at: datetime
    updated_at: datetime


class PortCreate(Input):
    name: str = Field(min_length=1, max_length=200)
    location: str = Field(default="", max_length=255)
    speed: int | None = Field(default=None, ge=1, le=MAX_RATE)
    owner_account_id: int | None = None
    shared_with_descendants: bool = False


class PortUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    location: str | None = Field(default=None, max_length=255)
    speed: int | None = Field(default=None, ge=1, le=MAX_RATE)
    owner_account_id: int | None = None
    shared_with_descendants: bool | None = None

    _set = field_validator("name", "location", "shared_with_descendants")(_not_null)


class PortOut(Output):
    id: int
    name: str
    location: str
    speed: int | None
    owner_account_id: int | None
    shared_with_descendants: bool
    created_at: datetime
    updated_at: datetime
