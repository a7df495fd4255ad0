"""What the usage API reads and answers.

Quantities travel as decimal strings (numbers are accepted) and come back as strings,
so no float ever touches them.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from boughs.kit.schema import Input, Output
from boughs.usage.models import Aggregation

MAX_BATCH = 1000
CODE_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"


class MeterCreate(Input):
    code: str = Field(pattern=CODE_PATTERN, description="Lower-case id events name the meter by.")
    name: str = Field(min_length=1, max_length=200)
    unit: str = Field(min_length=1, max_length=32, description="bytes, minutes, calls, …")
    aggregation: Aggregation
    precision: int = Field(default=0, ge=0, le=6, description="Decimal places a quantity may carry.")
    unique_property: str | None = Field(default=None, min_length=1, max_length=64)
    counts_toward_cap: bool = False
    description: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _unique_property_fits(self) -> MeterCreate:
        if self.aggregation == Aggregation.unique_count and not self.unique_property:
            raise ValueError(
                "unique_property: is required for a unique_count meter; "
                "name the event property whose distinct values it counts"
            )
        if self.aggregation != Aggregation.unique_count and self.unique_property:
            raise ValueError("unique_property: only a unique_count meter counts a property; remove it")
        return self


class MeterUpdate(Input):
    """What may change once events exist: the code, aggregation and precision may not."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    unit: str | None = Field(default=None, min_length=1, max_length=32)
    counts_toward_cap: bool | None = None
    description: str | None = Field(default=None, max_length=2000)


class MeterOut(Output):
    id: int
    code: str
    name: str
    unit: str
    aggregation: str
    precision: int
    unique_property: str | None
    counts_toward_cap: bool
    description: str
    created_at: datetime
    updated_at: datetime


class EventIn(Input):
    """One event; exactly one subject names whose usage it is."""

    id: str = Field(min_length=1, max_length=200, description="The sender's id: the idempotency key.")
    meter: str = Field(min_length=1, max_length=64)
    quantity: Decimal = Field(ge=0, allow_inf_nan=False)
    timestamp: datetime
    account_id: int | None = Field(default=None, ge=1)
    external_account_id: str | None = Field(default=None, min_length=1, max_length=100)
    service_id: int | None = Field(default=None, ge=1)
    login: str | None = Field(default=None, min_length=1, max_length=128)
    iccid: str | None = Field(default=None, pattern=r"^[0-9]{18,22}F?$")
    properties: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> EventIn:
        # Run for each of a batch's thousand events: its fields read from the instance's
        # dict, and the texts searched for a NUL together before one by one.
        fields = self.__dict__
        given = [name for name in SUBJECTS if fields[name] is not None]
        if len(given) != 1:
            raise ValueError(
                "subject: give exactly one of "
                + ", ".join(SUBJECTS)
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.timestamp.tzinfo is None:
            raise ValueError("timestamp: needs a timezone; send UTC as 2026-01-15T12:00:00Z")
        texts = (self.id, self.meter, self.external_account_id or "", self.login or "")
        if "\x00" in "".join(texts):
            name = next(n for n, t in zip(_TEXT_FIELDS, texts, strict=True) if "\x00" in t)
            raise ValueError(f"{name}: holds a NUL character; remove it")
        if self.properties is not None:
            _check_storable("properties", self.properties)
        return self


_TEXT_FIELDS = ("id", "meter", "external_account_id", "login")


def _check_storable(where: str, value: Any) -> None:
    """What a JSON column keeps on both engines: no NaN or infinities, no NUL characters."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} is not a JSON number; send a finite number or a string")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{where}: holds a NUL character; remove it")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_storable(f"{where}.{key}", key)
            _check_storable(f"{where}.{key}", item)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            _check_storable(f"{where}.{position}", item)


SUBJECTS = ("account_id", "external_account_id", "service_id", "login", "iccid")


class EventBatch(Input):
    # Each event is checked on its own, even one that is not an object, so one bad event
    # never costs its neighbours.
    events: list[Any] = Field(max_length=MAX_BATCH)


class EventStatus(StrEnum):
    accepted = "accepted"
    duplicate = "duplicate"
    conflict = "conflict"
    rejected = "rejected"


class EventResult(Output):
    index: int
    id: str | None
    status: EventStatus
    reason: str | None = None
    late: bool = False


class BatchResult(Output):
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int
    results: list[EventResult]


class Granularity(StrEnum):
    hour = "hour"
    day = "day"
    month = "month"


class UsageScope(StrEnum):
    self = "self"
    subtree = "subtree"


class UsageBucket(Output):
    start: datetime
    quantity: str
    events: int


class UsageOut(Output):
    meter: str
    unit: str
    aggregation: str
    granularity: Granularity
    scope: Literal["self", "subtree", "service"]
    timezone: str
    start: datetime
    end: datetime
    quantity: str
    events: int
    buckets: list[UsageBucket]


class TopUpCreate(Input):
    bytes: int = Field(gt=0, le=2**62, description="Bytes added to the current period's allowance.")
    note: str = Field(default="", max_length=500)


class TopUpOut(Output):
    id: int
    service_id: int
    period_start: date
    bytes: int
    note: str
    created_at: datetime


class CapStateOut(Output):
    """Where a capped service stands in its current period."""

    service_id: int
    period_start: date
    period_end: date
    cap_bytes: int
    used_bytes: int
    pooled: bool
    throttled_until: datetime | None
