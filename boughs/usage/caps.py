"""Data caps on metered usage (seed 004): warn at 80%, apply the plan's cap action at 100%.

Counting. Usage of a meter that counts toward caps adds its bytes to a counter per capped
service and pay period (the period holding the usage's local day in the service
account's timezone): the counter of the service it was reported on, when that service's
plan has its own cap, and the counter of every pooled-cap service held by an account of
the usage's chain as it stood when the usage happened (a pooled cap counts its subtree).
A period's cap is the plan's cap plus that period's top-ups.

Exactly once. When a counter is at or over a threshold, the alert for (service, period,
threshold, cap) is inserted unless it exists; only the call whose insert wrote it acts,
so each threshold fires once per period and cap value however many workers ingest at
the same time. A top-up raises the cap, and the raised cap's thresholds fire again.

Acting. 80%: the alert (outcome ``warned``) is what a notification reads later. 100% in
the current period: the plan's cap action until the next period begins (disabled with
reason ``cap``, or throttled). A pooled cap acts on the pooled service and on every
service in its account's subtree that moves data (internet and SIM plans; voice and
custom services are left alone): the subtree shares the allowance, so it runs out for
all of them. Late usage for another period records its alerts as ``unchanged`` and
changes no status.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum

from boughs.audit import service as audit
from boughs.catalog import service as catalog
from boughs.catalog.models import PlanKind
from boughs.context import Ctx
from boughs.kit.clock import local_date
from boughs.kit.errors import Conflict
from boughs.kit.paths import ids_of
from boughs.kit.periods import Period
from boughs.providers import repository as providers
from boughs.services import changes, lifecycle
from boughs.services import repository as services_repository
from boughs.services import service as services
from boughs.services.models import Service, ServiceStatus
from boughs.usage import caps_repository, fold, fold_repository
from boughs.usage import repository as usage_repository
from boughs.usage.caps_repository import CappedService, PeriodKey
from boughs.usage.models import TopUp
from boughs.usage.schemas import CapStateOut, TopUpCreate

ENTITY = "service"
WARN_PERCENT, CAP_PERCENT = 80, 100
THRESHOLDS = (WARN_PERCENT, CAP_PERCENT)
# Before any usage a provider could send: the open start of a service's first period.
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
# Services that move data share a pooled allowance.
POOL_MEMBER_KINDS = (PlanKind.internet.value, PlanKind.sim.value)


class AlertOutcome(StrEnum):
    warned = "warned"
    disabled = "disabled"
    throttled = "throttled"
    unchanged = "unchanged"


@dataclass(frozen=True)
class CapUsageDelta:
    """Bytes of cap-counting usage an accepted event added."""

    service_id: int | None
    account_id: int
    chain: tuple[int, ...]
    occurred_at: datetime
    bytes: int


# --- pay periods in each account's timezone ----------------------------------------------------


@dataclass
class Periods:
    """The pay periods of some capped services, with their accounts' timezones read once."""

    now: datetime
    timezones: dict[int, str]
    _today: dict[str, date] = field(default_factory=dict)

    @classmethod
    async def load(cls, ctx: Ctx, capped: Sequence[CappedService]) -> Periods:
        """One query for the timezones of every account on the services' paths."""
        if not capped:
            return cls(ctx.now(), {})
        own = await caps_repository.account_timezones(
            ctx.session, ctx.provider_id, [i for c in capped for i in ids_of(c.account_path)]
        )
        default = (await providers.get(ctx.session, ctx.provider_id)).default_timezone
        timezones: dict[int, str] = {}
        for c in capped:
            inherited = (own.get(i) for i in reversed(ids_of(c.account_path)))
            timezones[c.service.account_id] = next((tz for tz in inherited if tz is not None), default)
        return cls(ctx.now(), timezones)

    def timezone(self, capped: CappedService) -> str:
        return self.timezones[capped.service.account_id]

    def containing(self, capped: CappedService, moment: datetime) -> tuple[date, date]:
        """The service's pay period [start, end) holding ``moment``'s local day."""
        day = local_date(moment, self.timezone(capped))
        period = Period(capped.service.pay_period or capped.plan.pay_period)
        return lifecycle.period_containing(capped.service.start_date, period, day)

    def current(self, capped: CappedService) -> tuple[date, date]:
        timezone = self.timezone(capped)
        if timezone not in self._today:
            self._today[timezone] = local_date(self.now, timezone)
        period = Period(capped.service.pay_period or capped.plan.pay_period)
        return lifecycle.period_containing(capped.service.start_date, period, self._today[timezone])


# --- counting usage (called by ingest, in its transaction) -------------------------------------


async def observe(ctx: Ctx, deltas: list[CapUsageDelta]) -> None:
    """Count the bytes toward the caps they fall under and act on thresholds reached."""
    if not deltas:
        return
    capped = await caps_repository.capped_services(
        ctx.session,
        ctx.provider_id,
        [d.service_id for d in deltas if d.service_id is not None],
        [account for d in deltas for account in d.chain],
    )
    if not capped:
        return
    own_caps = {c.service.id: c for c in capped if not c.pooled}
    pools_of: dict[int, list[CappedService]] = defaultdict(list)
    for c in capped:
        if c.pooled:
            pools_of[c.service.account_id].append(c)
    periods = await Periods.load(ctx, capped)

    amounts: dict[PeriodKey, int] = defaultdict(int)
    for delta in deltas:
        if delta.bytes == 0:
            continue
        counted = [own_caps[delta.service_id]] if delta.service_id in own_caps else []
        counted += [pool for account in delta.chain for pool in pools_of.get(account, ())]
        for c in counted:
            period_start, _ = periods.containing(c, delta.occurred_at)
            amounts[(c.service.id, period_start)] += delta.bytes
    if not amounts:
        return
    after = await caps_repository.add_cap_usage(
        ctx.session, ctx.provider_id, [(s, p, amount) for (s, p), amount in sorted(amounts.items())]
    )

    by_id = {c.service.id: c for c in capped}
    # Below 80% of the plan's cap no top-up can put a counter over a threshold: most batches
    # stop here without reading top-ups or alerts.
    near = sorted(
        key for key, used in after.items() if used * 100 >= WARN_PERCENT * by_id[key[0]].data_cap_bytes
    )
    if not near:
        return
    topped_up = await caps_repository.top_up_totals(ctx.session, near)
    recorded = await caps_repository.recorded_alerts(ctx.session, near)
    for key in near:
        c, used = by_id[key[0]], after[key]
        cap = c.data_cap_bytes + topped_up.get(key, 0)
        for percent in THRESHOLDS:
            if used * 100 >= percent * cap and (*key, percent, cap) not in recorded:
                await _threshold_reached(ctx, c, key[1], percent, cap, used, periods)


async def _threshold_reached(
    ctx: Ctx, capped: CappedService, period_start: date, percent: int, cap: int, used: int, periods: Periods
) -> None:
    service = capped.service
    current_start, next_start = periods.current(capped)
    current = period_start == current_start
    outcome = AlertOutcome.warned if percent == WARN_PERCENT and current else AlertOutcome.unchanged
    alert_id = await caps_repository.record_alert(
        ctx.session,
        {
            "provider_id": ctx.provider_id, "service_id": service.id, "account_id": service.account_id,
            "period_start": period_start, "threshold_percent": percent, "cap_bytes": cap,
            "used_bytes": used, "outcome": outcome.value, "created_at": ctx.now(),
        },
    )  # fmt: skip
    if alert_id is None:
        return  # another worker reached it first, and acts
    if percent == CAP_PERCENT and current:
        outcome = await _apply_cap(ctx, capped, cap, next_start, periods.timezone(capped))
        if outcome != AlertOutcome.unchanged:
            await caps_repository.set_alert_outcome(ctx.session, alert_id, outcome.value)
    await audit.record(
        ctx, entity=ENTITY, entity_id=service.id, action="cap_alert", account_id=service.account_id,
        after={"alert_id": alert_id, "threshold_percent": percent, "cap_bytes": cap, "used_bytes": used,
               "period_start": period_start, "pooled": capped.pooled, "outcome": outcome.value},
    )  # fmt: skip


async def _apply_cap(
    ctx: Ctx, capped: CappedService, cap: int, next_start: date, timezone: str
) -> AlertOutcome:
    """The plan's cap action on the service (and, for a pooled cap, on its subtree's data
    services) until the next period; rows are locked in id order."""
    if capped.pooled:
        why = f"pooled data cap of {cap} bytes of service {capped.service.id} reached by its subtree"
        members = await caps_repository.pool_members(
            ctx.session, ctx.provider_id, capped.account_path, POOL_MEMBER_KINDS,
            also_ids=[capped.service.id], lock=True,
        )  # fmt: skip
        targets = [s for s, _ in members]
    else:
        why = f"data cap of {cap} bytes reached"
        await ctx.session.refresh(capped.service, with_for_update={"key_share": True})
        targets = [capped.service]
    outcomes = [
        await changes.apply_cap_action(ctx, s, capped.plan, next_start, timezone, why) for s in targets
    ]
    changed = [AlertOutcome(o) for o in outcomes if o != AlertOutcome.unchanged.value]
    return changed[0] if changed else AlertOutcome.unchanged


# --- reading a cap -----------------------------------------------------------------------------


async def _capped(ctx: Ctx, service: Service, path: str) -> tuple[CappedService, Periods]:
    plan = await catalog.get_plan(ctx, service.plan_id)
    changes.require_cap(service, plan)
    capped = CappedService(service, path, plan)
    return capped, await Periods.load(ctx, [capped])


async def state(ctx: Ctx, service_id: int) -> CapStateOut:
    """The service's cap in its current period: the plan's cap plus the period's top-ups."""
    service = await services.get(ctx, service_id)
    path = await services_repository.account_path(ctx.session, ctx.provider_id, service.account_id)
    capped, periods = await _capped(ctx, service, path)
    start, end = periods.current(capped)
    key = (service.id, start)
    topped_up = (await caps_repository.top_up_totals(ctx.session, [key])).get(key, 0)
    return CapStateOut(
        service_id=service.id,
        period_start=start,
        period_end=end,
        cap_bytes=capped.data_cap_bytes + topped_up,
        used_bytes=await _used_in(ctx, capped, start, end, periods.timezone(capped)),
        pooled=capped.pooled,
        throttled_until=service.throttled_until if changes.is_throttled(service, ctx.now()) else None,
    )


async def _used_in(ctx: Ctx, capped: CappedService, start: date, end: date, timezone: str) -> int:
    """The cap's counter for the period, with the usage still waiting for the fold that
    will count it: what the cap will see, not only what it has seen."""
    meters = await usage_repository.all_meters(ctx.session, ctx.provider_id)
    counting = tuple(m.id for m in meters if m.counts_toward_cap)
    if not counting:
        return await caps_repository.cap_used(ctx.session, capped.service.id, start)
    kind, subject_id = (
        (fold_repository.SUBTREE, capped.service.account_id)
        if capped.pooled
        else (fold_repository.SERVICE, capped.service.id)
    )
    # The first period also holds what was used before the service started (as counting does).
    since = EARLIEST if start <= capped.service.start_date else lifecycle.local_midnight(start, timezone)
    until = lifecycle.local_midnight(end, timezone)
    wanted = fold_repository.Wanted(
        ctx.provider_id, counting, kind, subject_id, capped.account_path, since, until
    )
    used, pending = await fold_repository.cap_used_with_pending(ctx.session, capped.service.id, start, wanted)
    history = fold.LinkHistory(ctx.session)
    for event in pending:
        if await history.counts_for(event, kind, subject_id):
            used += event.quantity
    return used


async def list_top_ups(ctx: Ctx, service_id: int) -> list[TopUp]:
    """Every top-up of the service, oldest first."""
    service = await services.get(ctx, service_id)
    return await caps_repository.top_ups_of(ctx.session, service.id)


# --- top-ups -----------------------------------------------------------------------------------


async def add_top_up(ctx: Ctx, service_id: int, data: TopUpCreate) -> TopUp:
    """Bytes added to the current period's cap. What the cap held (disabled, throttled) comes
    back when its usage is under the raised cap; for a pooled cap, so do the subtree's
    services the pool held (unless another cap still holds them)."""
    service, account = await changes.writable(ctx, service_id, "top up this service's data cap")
    if service.status == ServiceStatus.archived.value:
        raise Conflict(
            detail=f"Service {service.id} is archived; archived services only keep their history.",
            fix="top up a live service, or set this one to another status first",
        )
    capped, periods = await _capped(ctx, service, account.path)
    start, _ = periods.current(capped)
    # Taking the counter's row lock first: an ingest that adds to it meanwhile waits, then
    # counts against the raised cap.
    await caps_repository.add_cap_usage(ctx.session, ctx.provider_id, [(service.id, start, 0)])
    top_up = await caps_repository.add_top_up(
        ctx.session,
        {
            "provider_id": ctx.provider_id, "service_id": service.id, "period_start": start,
            "bytes": data.bytes, "note": data.note, "created_by_user_id": ctx.actor.user_id,
            "created_at": ctx.now(),
        },
    )  # fmt: skip
    await audit.record(
        ctx, entity=ENTITY, entity_id=service.id, action="top_up_added", account_id=service.account_id,
        after={"top_up_id": top_up.id, "bytes": data.bytes, "period_start": start, "note": data.note},
    )  # fmt: skip
    if capped.pooled:
        candidates = await caps_repository.pool_members(
            ctx.session, ctx.provider_id, account.path, POOL_MEMBER_KINDS, also_ids=[service.id], lock=True
        )
    else:
        candidates = [(service, account.path)]
    held = [(s, path) for s, path in candidates if changes.held_by_cap(s, ctx.now())]
    still_held = await _still_held(ctx, held) if held else {}
    for s, _ in held:
        if s.id not in still_held:
            await changes.lift_cap(ctx, s, f"top-up {top_up.id} of service {service.id}")
        elif s.cap_resets_at is not None and s.cap_resets_at != still_held[s.id]:
            # Held by another cap now: back when that one resets.
            s.cap_resets_at = still_held[s.id]
    await ctx.session.flush()
    return top_up


async def _still_held(ctx: Ctx, candidates: Iterable[tuple[Service, str]]) -> dict[int, datetime]:
    """Which of these services a cap still holds (their own, or a pooled cap held by an
    account above them or by themselves, used up in its current period), each with when
    the last of those caps resets."""
    candidates = list(candidates)
    capped = await caps_repository.capped_services(
        ctx.session,
        ctx.provider_id,
        [s.id for s, _ in candidates],
        [i for _, path in candidates for i in ids_of(path)],
    )
    periods = await Periods.load(ctx, capped)
    keys = {c.service.id: (c.service.id, periods.current(c)[0]) for c in capped}
    used = await caps_repository.cap_used_many(ctx.session, list(keys.values()))
    topped_up = await caps_repository.top_up_totals(ctx.session, list(keys.values()))
    resets: dict[int, datetime] = {}
    for c in capped:
        key = keys[c.service.id]
        if used.get(key, 0) >= c.data_cap_bytes + topped_up.get(key, 0):
            resets[c.service.id] = lifecycle.local_midnight(periods.current(c)[1], periods.timezone(c))
    pools = {c.service.account_id: c.service.id for c in capped if c.pooled and c.service.id in resets}
    held: dict[int, datetime] = {}
    for s, path in candidates:
        holders = [s.id] if s.id in resets else []
        holders += [pools[account] for account in ids_of(path) if account in pools]
        if holders:
            held[s.id] = max(resets[h] for h in holders)
    return held
