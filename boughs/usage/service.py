"""Meters, and the usage questions the rollups answer.

Rollups are hourly in UTC; a day or a month is taken in the timezone of the account the
usage belongs to (its own, inherited, or the provider's), so a day bucket is that
customer's day.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from boughs.accounts import inheritance
from boughs.accounts import repository as accounts_repository
from boughs.accounts import service as accounts
from boughs.audit import service as audit
from boughs.authz.permissions import Permission
from boughs.authz.scope import require, scope_of
from boughs.context import Ctx
from boughs.kit.clock import start_of_hour
from boughs.kit.errors import Conflict, InvalidInput, NotFound
from boughs.kit.pagination import PageOf, check_limit, id_cursor, page_of
from boughs.services import service as services
from boughs.usage import fold, fold_repository, repository
from boughs.usage.models import Aggregation, Meter
from boughs.usage.schemas import Granularity, MeterCreate, MeterUpdate, UsageBucket, UsageOut, UsageScope

ENTITY = "meter"
AUDITED = ("code", "name", "unit", "aggregation", "precision", "unique_property", "counts_toward_cap")
# The most buckets one answer holds: about three months of hours, ten years of days.
MAX_BUCKETS = {Granularity.hour: 24 * 93, Granularity.day: 3700, Granularity.month: 1200}


# --- meters ------------------------------------------------------------------------------------


def meter_not_found(meter_id: int | str) -> NotFound:
    return NotFound(detail=f"There is no meter {meter_id}.", fix="list meters with GET /api/v1/meters")


async def get_meter(ctx: Ctx, meter_id: int) -> Meter:
    found = await repository.get_meter(ctx.session, ctx.provider_id, meter_id)
    if found is None:
        raise meter_not_found(meter_id)
    return found


async def meter_by_code(ctx: Ctx, code: str) -> Meter:
    found = (await repository.meters_by_code(ctx.session, ctx.provider_id, [code])).get(code)
    if found is None:
        raise NotFound.on_field("meter", f"there is no meter '{code}'", "list meters with GET /api/v1/meters")
    return found


async def list_meters(ctx: Ctx, cursor: str | None, limit: int) -> PageOf[Meter]:
    check_limit(limit)
    return page_of(
        await repository.list_meters(ctx.session, ctx.provider_id, id_cursor(cursor), limit + 1), limit
    )


async def _require_provider(ctx: Ctx, doing: str) -> None:
    # Meters are the provider's catalog: no account role reaches them.
    await require(ctx, "", Permission.manage_provider, doing)


def _check_cap_precision(precision: int, counts_toward_cap: bool) -> None:
    if counts_toward_cap and precision != 0:
        raise InvalidInput.on_field(
            "counts_toward_cap",
            "data caps count whole bytes",
            "use precision 0 for a meter that counts toward caps",
        )


def _snapshot(meter: Meter) -> dict[str, Any]:
    return {name: getattr(meter, name) for name in AUDITED}


async def create_meter(ctx: Ctx, data: MeterCreate) -> Meter:
    await _require_provider(ctx, "add meters")
    _check_cap_precision(data.precision, data.counts_toward_cap)
    if await repository.meters_by_code(ctx.session, ctx.provider_id, [data.code]):
        raise Conflict.on_field("code", f"'{data.code}' is already a meter's code", "choose another code")
    now = ctx.now()
    meter = Meter(
        provider_id=ctx.provider_id,
        **data.model_dump(mode="json"),
        created_at=now,
        updated_at=now,
    )
    ctx.session.add(meter)
    await ctx.session.flush()
    await audit.record(
        ctx, entity=ENTITY, entity_id=meter.id, action="created", account_id=None, after=_snapshot(meter)
    )
    return meter


async def update_meter(ctx: Ctx, meter_id: int, data: MeterUpdate) -> Meter:
    meter = await get_meter(ctx, meter_id)
    await _require_provider(ctx, "change meters")
    changes = data.model_dump(mode="json", exclude_unset=True)
    for name in ("name", "unit", "counts_toward_cap", "description"):
        if name in changes and changes[name] is None:
            raise InvalidInput.on_field(name, "cannot be null", "leave it out to keep the current value")
    _check_cap_precision(meter.precision, changes.get("counts_toward_cap", meter.counts_toward_cap))
    before = _snapshot(meter)
    for name, value in changes.items():
        setattr(meter, name, value)
    old, new = audit.changed(before, _snapshot(meter))
    if new or "description" in changes:
        meter.updated_at = ctx.now()
        await ctx.session.flush()
    if new:
        await audit.record(
            ctx, entity=ENTITY, entity_id=meter.id, action="updated", account_id=None, before=old, after=new
        )
    return meter


async def delete_meter(ctx: Ctx, meter_id: int) -> None:
    meter = await get_meter(ctx, meter_id)
    await _require_provider(ctx, "delete meters")
    if await repository.meter_in_use(ctx.session, meter):
        raise Conflict(
            detail=f"Meter {meter.code} has usage; its history needs it.",
            fix="keep it; rename it or stop sending events for it instead",
        )
    await audit.record(
        ctx, entity=ENTITY, entity_id=meter.id, action="deleted", account_id=None, before=_snapshot(meter)
    )
    await repository.delete_meter(ctx.session, meter)


# --- usage ---------------------------------------------------------------------------------------


def format_quantity(scaled: int, precision: int) -> str:
    return str(Decimal(scaled).scaleb(-precision)) if precision else str(scaled)


def _ceil_hour(moment: datetime) -> datetime:
    floor = start_of_hour(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def _local_month_start(moment: datetime, zone: ZoneInfo) -> datetime:
    local = moment.astimezone(zone)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _bucket_start(hour: datetime, granularity: Granularity, zone: ZoneInfo) -> datetime:
    """The bucket's first instant, as a local time in ``zone`` (UTC for hours)."""
    if granularity is Granularity.hour:
        return hour
    local = hour.astimezone(zone)
    if granularity is Granularity.day:
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_bucket(start: datetime, granularity: Granularity, zone: ZoneInfo) -> datetime:
    if granularity is Granularity.hour:
        return start + timedelta(hours=1)
    if granularity is Granularity.day:
        # Wall-clock arithmetic, then back through the zone: a DST day has 23 or 25 hours.
        following = (start.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=zone)
        return following
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month)


def _default_window(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = _local_month_start(now, zone)
    return start, _next_bucket(start, Granularity.month, zone)


async def _timezone_of(ctx: Ctx, account_id: int) -> str:
    found = await accounts_repository.chain_of(ctx.session, await scope_of(ctx), account_id)
    if found is None:
        raise accounts.not_found(account_id)
    return str(inheritance.resolve(found.accounts, "timezone", found.provider_timezone).value)


async def account_usage(
    ctx: Ctx,
    account_id: int,
    meter_code: str,
    start: datetime | None,
    end: datetime | None,
    granularity: Granularity,
    scope: UsageScope,
) -> UsageOut:
    account = await accounts.get(ctx, account_id)
    kind = fold_repository.SUBTREE if scope is UsageScope.subtree else fold_repository.ACCOUNT
    return await _usage(
        ctx,
        account.id,
        Subject(kind, account.id, account.path),
        meter_code,
        start,
        end,
        granularity,
        scope.value,
    )


async def service_usage(
    ctx: Ctx,
    service_id: int,
    meter_code: str,
    start: datetime | None,
    end: datetime | None,
    granularity: Granularity,
) -> UsageOut:
    found = await services.get(ctx, service_id)
    return await _usage(
        ctx,
        found.account_id,
        Subject(fold_repository.SERVICE, found.id),
        meter_code,
        start,
        end,
        granularity,
        "service",
    )


@dataclass(frozen=True)
class Subject:
    """Whose usage: a service, an account's own or its subtree (``fold_repository``'s
    kinds of read), and the subject; a subtree's top also by its path today."""

    kind: str
    id: int
    path: str | None = None


async def _usage(
    ctx: Ctx,
    account_id: int,
    subject: Subject,
    meter_code: str,
    start: datetime | None,
    end: datetime | None,
    granularity: Granularity,
    scope_name: str,
) -> UsageOut:
    meter = await meter_by_code(ctx, meter_code)
    timezone = await _timezone_of(ctx, account_id)
    zone = ZoneInfo(timezone)
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput.on_field(name, "needs a timezone", "send UTC as 2026-01-15T00:00:00Z")
    # Without a window: this local month. With only a start: to the end of its local month.
    default_start, default_end = _default_window(start or ctx.now(), zone)
    window_start = start_of_hour(start) if start is not None else default_start.astimezone(UTC)
    window_end = _ceil_hour(end) if end is not None else default_end.astimezone(UTC)
    if window_end <= window_start:
        raise InvalidInput.on_field("to", "must be after from", "give a to later than from")

    starts = _bucket_starts(window_start, window_end, granularity, zone)
    totals: dict[datetime, list[int]] = {s: [0, 0, 0] for s in starts}  # total, peak, events
    # Rollups, plus the events the fold has not added to them yet.
    history = fold.LinkHistory(ctx.session)
    wanted = fold_repository.Wanted(
        ctx.provider_id, (meter.id,), subject.kind, subject.id, subject.path, window_start, window_end
    )
    rows = await fold_repository.hourly_with_pending(ctx.session, wanted)
    for row in rows:
        if row.pending is not None and not await history.counts_for(row.pending, subject.kind, subject.id):
            continue
        bucket = totals[_bucket_start(start_of_hour(row.at), granularity, zone)]
        bucket[0] += row.total
        bucket[1] = max(bucket[1], row.peak)
        bucket[2] += row.events
    distinct: dict[datetime, set[str]] = defaultdict(set)
    every: set[str] = set()
    if meter.aggregation == Aggregation.unique_count.value:
        # Pending events first: a fold in between puts their values in the rollups too,
        # which a set takes twice without harm (the other order could miss them).
        seen_values: list[tuple[datetime, str]] = []
        for pending in await fold_repository.pending_of_meter(ctx.session, wanted):
            seen_value = fold.distinct_value(meter, pending)
            if seen_value is not None and await history.counts_for(pending, subject.kind, subject.id):
                seen_values.append((start_of_hour(pending.occurred_at), seen_value))
        seen_values += await repository.unique_values(
            ctx.session,
            meter.id,
            fold_repository.stored_kinds(subject.kind),
            subject.id,
            window_start,
            window_end,
        )
        for seen_at, seen in seen_values:
            distinct[_bucket_start(seen_at, granularity, zone)].add(seen)
            every.add(seen)

    def measure(values: list[int], seen: set[str]) -> int:
        aggregation = meter.aggregation
        if aggregation == Aggregation.sum.value:
            return values[0]
        if aggregation == Aggregation.max.value:
            return values[1]
        if aggregation == Aggregation.count.value:
            return values[2]
        return len(seen)

    # Counts are whole numbers; sums and peaks are in the meter's unit.
    precision = meter.precision if meter.aggregation in (Aggregation.sum.value, Aggregation.max.value) else 0
    buckets = []
    overall = [0, 0, 0]
    for bucket_start in starts:
        values = totals[bucket_start]
        overall[0] += values[0]
        overall[1] = max(overall[1], values[1])
        overall[2] += values[2]
        quantity = measure(values, distinct.get(bucket_start, set()))
        buckets.append(
            UsageBucket(start=bucket_start, quantity=format_quantity(quantity, precision), events=values[2])
        )
    return UsageOut(
        meter=meter.code,
        unit=meter.unit,
        aggregation=meter.aggregation,
        granularity=granularity,
        scope=scope_name,
        timezone=timezone,
        start=window_start,
        end=window_end,
        quantity=format_quantity(measure(overall, every), precision),
        events=overall[2],
        buckets=buckets,
    )


def _bucket_starts(
    start: datetime, end: datetime, granularity: Granularity, zone: ZoneInfo
) -> list[datetime]:
    starts: list[datetime] = []
    current = _bucket_start(start, granularity, zone)
    while current.astimezone(UTC) < end:
        starts.append(current)
        if len(starts) > MAX_BUCKETS[granularity]:
            raise InvalidInput.on_field(
                "from",
                f"the window holds more than {MAX_BUCKETS[granularity]} {granularity.value} buckets",
                "ask for a shorter window or a coarser granularity",
            )
        current = _next_bucket(current, granularity, zone)
    return starts
