"""What the services API reads and answers (seed 004).

Passwords come in and never go out: an answer says whether a password applies and where
it comes from (``password_source``), and only POST /services/{id}/reveal-password shows it.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator

from boughs.catalog.models import PayPeriod
from boughs.kit.schema import Input, Output
from boughs.services.models import Ipv4Mode, ServiceStatus

MAX_MACS = 16
MAX_NETWORKS = 64


def _split_macs(value: Any) -> Any:
    """The seed's form takes MACs "separated by comma": a string is split here, a list kept."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _check_pool(value: Any) -> Any:
    if value is None or value == "any" or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError("must be 'any' or the id of a dynamic IPv4 pool; give 'any', a pool id, or null")


class DiscountCreate(Input):
    """A percentage off between two dates; start_date null means from the service's start."""

    percent: Decimal = Field(gt=0, le=100, decimal_places=2, description="0 < percent <= 100, 2 decimals.")
    start_date: date | None = None
    end_date: date | None = None
    description: str = Field(default="", max_length=500)


class ServiceOptions(Input):
    """Fields create and update share (update makes each optional)."""

    description: str = Field(default="", max_length=10_000)
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    unit: str | None = Field(default=None, max_length=32)
    # Minor units of the plan's currency; null uses the plan's price.
    unit_price_amount: int | None = Field(default=None, ge=0, le=2**62)
    pay_period: PayPeriod | None = None
    end_date: date | None = None
    router_id: int | None = None
    login: str | None = Field(default=None, max_length=128)
    # Blank or null: the account's main service password.
    password: str | None = Field(default=None, max_length=128)
    ipv4_mode: Ipv4Mode = Ipv4Mode.none
    ipv4_address: str | None = Field(default=None, max_length=15)
    additional_networks: list[str] = Field(default_factory=list, max_length=MAX_NETWORKS)
    # Dynamic mode only: "any" pool the account may use, or a pool id.
    ipv4_pool: int | Literal["any"] | None = None
    # A list, or one comma-separated string; any common notation.
    mac_addresses: list[str] = Field(default_factory=list, max_length=MAX_MACS)
    port_id: int | None = None
    geo_address: str | None = Field(default=None, max_length=500)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)

    _macs = field_validator("mac_addresses", mode="before")(_split_macs)
    _pool = field_validator("ipv4_pool", mode="before")(_check_pool)


class ServiceCreate(ServiceOptions):
    plan_id: int
    # Default: today in the account's timezone.
    start_date: date | None = None
    status: ServiceStatus = ServiceStatus.active
    # Only with status pending: the service this one activates with.
    waits_on_service_id: int | None = None
    discounts: list[DiscountCreate] = Field(default_factory=list, max_length=50)


class ServiceUpdate(Input):
    """PATCH: only the fields sent change; null clears a nullable field.

    ``plan_id`` and ``status`` are accepted only to answer where they are changed
    (POST /services/{id}/change-plan and POST /services/{id}/status).
    """

    plan_id: int | None = None
    status: ServiceStatus | None = None
    description: str | None = Field(default=None, max_length=10_000)
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    unit: str | None = Field(default=None, max_length=32)
    unit_price_amount: int | None = Field(default=None, ge=0, le=2**62)
    pay_period: PayPeriod | None = None
    start_date: date | None = None
    end_date: date | None = None
    router_id: int | None = None
    login: str | None = Field(default=None, max_length=128)
    password: str | None = Field(default=None, max_length=128)
    ipv4_mode: Ipv4Mode | None = None
    ipv4_address: str | None = Field(default=None, max_length=15)
    additional_networks: list[str] | None = Field(default=None, max_length=MAX_NETWORKS)
    ipv4_pool: int | Literal["any"] | None = None
    mac_addresses: list[str] | None = Field(default=None, max_length=MAX_MACS)
    port_id: int | None = None
    geo_address: str | None = Field(default=None, max_length=500)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)

    _macs = field_validator("mac_addresses", mode="before")(_split_macs)
    _pool = field_validator("ipv4_pool", mode="before")(_check_pool)

    # Runs only for fields the request sent, which is exactly when null is a mistake.
    @field_validator(
        "description", "quantity", "start_date", "ipv4_mode", "additional_networks", "mac_addresses"
    )
    @classmethod
    def _required_stay_set(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; omit it to leave it unchanged")
        return value


class StatusChangeRequest(Input):
    status: ServiceStatus
    note: str = Field(default="", max_length=500)


class ServicePasswordSet(Input):
    """The account's main service password; blank or null clears it."""

    password: str | None = Field(default=None, max_length=128)


class DiscountOut(Output):
    id: int
    service_id: int
    percent: Decimal
    start_date: date
    end_date: date | None
    description: str
    created_at: datetime


class ServiceOut(Output):
    id: int
    account_id: int
    plan_id: int
    plan_name: str
    plan_kind: str
    description: str
    quantity: int
    unit: str | None
    unit_price_amount: int | None
    pay_period: PayPeriod | None
    start_date: date
    end_date: date | None
    status: ServiceStatus
    status_reason: str
    status_changed_at: datetime
    waits_on_service_id: int | None
    cap_resets_at: datetime | None
    # Held to the plan's throttle rates by its data cap until then; null when not throttled.
    throttled_until: datetime | None = None
    router_id: int | None
    login: str | None
    # Whether a password applies (the service's own, or the account's main one).
    has_password: bool
    password_source: Literal["own", "account"]
    ipv4_mode: Ipv4Mode
    ipv4_address: str | None
    additional_networks: list[str]
    # Dynamic mode: "any" or the pool id; otherwise null.
    ipv4_pool: int | Literal["any"] | None
    mac_addresses: list[str]
    port_id: int | None
    geo_address: str | None
    latitude: float | None
    longitude: float | None
    discounts: list[DiscountOut]
    created_at: datetime
    updated_at: datetime


class StatusChangeOut(Output):
    id: int
    service_id: int
    from_status: ServiceStatus | None
    to_status: ServiceStatus
    reason: str
    note: str
    changed_by_user_id: int | None
    changed_at: datetime


class RevealedPassword(Output):
    """``password`` is null when neither the service nor its account has one."""

    password: str | None
    source: Literal["own", "account"]


class ServicePasswordOut(Output):
    account_id: int
    has_service_password: bool
