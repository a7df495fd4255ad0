"""A service's status machine: every change goes through here and is kept as history.

The rules (seed 004), which the automatic transitions keep true at every commit:
- an account is *blocked* when its own status is not active (suspended, cancelled, or
  expired by the sweep), it is held for an unpaid invoice (``dunning_hold``: itself
  only, never its subtree), or an ancestor is suspended or cancelled;
- on a blocked account no service is active: what would be active is stopped with
  reason ``account``, and only those come back when the block lifts;
- a service disabled by its data cap (reason ``cap``) comes back at ``cap_resets_at``
  (the start of its next period) or on a top-up; a throttle by the data cap ends at
  ``throttled_until`` by itself (readers compare it with now; ``reset_caps`` clears it);
- a pending service that waits on another activates (``activated_with``) when that
  one becomes active.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts import inheritance
from boughs.accounts import repository as accounts
from boughs.accounts.models import Account, AccountStatus
from boughs.audit import service as audit
from boughs.billing import payments_repository as billing_holds
from boughs.context import Ctx
from boughs.kit.clock import end_of_local_day, local_date
from boughs.kit.paths import ids_of
from boughs.kit.periods import Period, add_period
from boughs.providers import repository as providers
from boughs.services import repository
from boughs.services.models import Service, ServiceStatus, ServiceStatusChange, StatusReason

ENTITY = "service"
ACTIVE, STOPPED = ServiceStatus.active.value, ServiceStatus.stopped.value
# Statuses of an ancestor that block its whole subtree; the account's own non-active
# status blocks only itself (an expiry reaches descendants through their own sweep).
SUBTREE_BLOCKING = (AccountStatus.suspended.value, AccountStatus.cancelled.value)
# How a held account (``dunning_hold``) appears among the blocked ones of a subtree.
DUNNING_HOLD = "dunning_hold"
CHUNK = 500
# Beyond this many blocked accounts in a subtree, scan its active services instead of
# naming the blocked ranges one by one in the query.
MAX_NAMED_BLOCKERS = 200


# --- which accounts are blocked ---------------------------------------------------------


@dataclass(frozen=True)
class Blockers:
    """The non-active accounts along some paths: enough to tell whether each path is blocked."""

    statuses: dict[int, str]
    # Accounts held for an unpaid invoice: blocked themselves, their descendants not.
    held: frozenset[int] = frozenset()

    def blocks(self, path: str) -> bool:
        ids = ids_of(path)
        if ids[-1] in self.held:
            return True
        if self.statuses.get(ids[-1], AccountStatus.active.value) != AccountStatus.active.value:
            return True
        return any(self.statuses.get(i) in SUBTREE_BLOCKING for i in ids[:-1])


async def blockers_along(session: AsyncSession, provider_id: int, paths: Iterable[str]) -> Blockers:
    """One query per chunk of ids: the accounts on these paths that are not active, and
    (only the paths' own accounts can be blocked by it) those held for an unpaid invoice."""
    path_list = list(paths)
    ids = sorted({i for path in path_list for i in ids_of(path)})
    own = sorted({ids_of(path)[-1] for path in path_list})
    statuses: dict[int, str] = {}
    for start in range(0, len(ids), CHUNK):
        statuses.update(
            await repository.non_active_statuses(session, provider_id, ids[start : start + CHUNK])
        )
    held = await billing_holds.held_among(session, provider_id, own) if own else set()
    return Blockers(statuses, frozenset(held))


async def account_blocked(ctx: Ctx, account_id: int) -> bool:
    path = await repository.account_path(ctx.session, ctx.provider_id, account_id)
    return (await blockers_along(ctx.session, ctx.provider_id, [path])).blocks(path)


# --- the one way a status changes --------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    service: Service
    status: str
    reason: str
    note: str = ""


async def record_created(ctx: Ctx, service: Service, note: str = "") -> None:
    """The first entry of a new service's history (the service must be flushed).

    The status a service starts in is what the rules make of the one asked for: active
    on a blocked account starts stopped (account); pending on a service that is already
    active starts active (activated_with).
    """
    waits_on = service.waits_on_service_id
    pending = service.status == ServiceStatus.pending.value
    if (
        pending
        and waits_on is not None
        and await repository.service_status(ctx.session, ctx.provider_id, waits_on) == ACTIVE
    ):
        service.status, service.status_reason = ACTIVE, StatusReason.activated_with.value
    if service.status == ACTIVE and await account_blocked(ctx, service.account_id):
        service.status, service.status_reason = STOPPED, StatusReason.account.value
    service.status_changed_at = ctx.now()
    ctx.session.add(
        ServiceStatusChange(
            provider_id=service.provider_id,
            service_id=service.id,
            from_status=None,
            to_status=service.status,
            reason=service.status_reason,
            note=note,
            changed_by_user_id=ctx.actor.user_id,
            changed_at=ctx.now(),
        )
    )
    if service.status == ACTIVE:
        await _activate_waiters(ctx, [service.id])


async def set_status(ctx: Ctx, service: Service, status: str, reason: str, note: str = "") -> bool:
    """Move a service to ``status`` for ``reason``; False when it already is exactly that.

    Active on a blocked account lands as stopped (account): it comes back by itself when
    the block lifts.
    """
    if status == ACTIVE and await account_blocked(ctx, service.account_id):
        status, reason = STOPPED, StatusReason.account.value
        note = note or "the account is blocked; the service returns to active when it is unblocked"
    return bool(await _apply(ctx, [Transition(service, status, reason, note)]))


async def _apply(ctx: Ctx, transitions: Sequence[Transition]) -> list[Service]:
    """Write the changes with their history and audit in bulk; returns the services changed.

    Services that become active take their waiters with them.
    """
    now = ctx.now()
    changed: list[Service] = []
    history: list[ServiceStatusChange] = []
    events: list[dict[str, Any]] = []
    for t in transitions:
        service = t.service
        if service.status == t.status and service.status_reason == t.reason:
            continue
        history.append(
            ServiceStatusChange(
                provider_id=service.provider_id,
                service_id=service.id,
                from_status=service.status,
                to_status=t.status,
                reason=t.reason,
                note=t.note,
                changed_by_user_id=ctx.actor.user_id,
                changed_at=now,
            )
        )
        events.append(
            audit.event(
                ctx,
                entity=ENTITY,
                entity_id=service.id,
                action="status_changed",
                account_id=service.account_id,
                before={"status": service.status, "status_reason": service.status_reason},
                after={"status": t.status, "status_reason": t.reason, "note": t.note},
            )
        )
        if service.status == ServiceStatus.disabled.value and service.status_reason == StatusReason.cap.value:
            service.cap_resets_at = None  # whatever ends a cap block ends its reset too
        service.status, service.status_reason = t.status, t.reason
        service.status_changed_at = service.updated_at = now
        changed.append(service)
    if not changed:
        return changed
    ctx.session.add_all(history)
    await audit.record_many(ctx, events)
    await ctx.session.flush()
    await _activate_waiters(ctx, [s.id for s in changed if s.status == ACTIVE])
    return changed


async def _activate_waiters(ctx: Ctx, activated_ids: list[int]) -> None:
    """Pending services waiting on these become active too (stopped if their account is blocked)."""
    if not activated_ids:
        return
    waiters: list[tuple[Service, str]] = []
    for start in range(0, len(activated_ids), CHUNK):
        waiters += await repository.pending_waiters_with_paths(
            ctx.session, ctx.provider_id, activated_ids[start : start + CHUNK]
        )
    if not waiters:
        return
    blockers = await blockers_along(ctx.session, ctx.provider_id, [path for _, path in waiters])
    note = "the service it waited on became active"
    transitions = [
        Transition(service, STOPPED, StatusReason.account.value, note)
        if blockers.blocks(path)
        else Transition(service, ACTIVE, StatusReason.activated_with.value, note)
        for service, path in waiters
    ]
    await _apply(ctx, transitions)


# --- following the account's block -------------------------------------------------------


def _follow_block(rows: Iterable[tuple[Service, str]], blockers: Blockers) -> list[Transition]:
    transitions = []
    for service, path in rows:
        blocked = blockers.blocks(path)
        if blocked and service.status == ACTIVE:
            transitions.append(
                Transition(service, STOPPED, StatusReason.account.value, "the account is blocked")
            )
        elif (
            not blocked and service.status == STOPPED and service.status_reason == StatusReason.account.value
        ):
            transitions.append(
                Transition(service, ACTIVE, StatusReason.account.value, "the account is no longer blocked")
            )
    return transitions


async def blocked_around(ctx: Ctx, path: str) -> list[tuple[int, str, str]]:
    """(id, path, status) of the subtree's non-active accounts and its blocking ancestors."""
    return await repository.non_active_accounts_in_subtree_or_blocking_ancestors(
        ctx.session, ctx.provider_id, path, ids_of(path)[:-1], SUBTREE_BLOCKING
    )


async def reconcile_subtree(ctx: Ctx, path: str, blocked: list[tuple[int, str, str]] | None = None) -> None:
    """Make every service in the subtree at ``path`` follow its account's block.

    One query finds the blocked accounts (``blocked_around``, unless the caller read them
    already as ``blocked``), one the services that may have to change: those stopped by an
    earlier block, and the active ones on blocked accounts.
    """
    ancestor_ids = ids_of(path)[:-1]
    rows = blocked if blocked is not None else await blocked_around(ctx, path)
    held = await billing_holds.held_in_subtree(ctx.session, ctx.provider_id, path)
    blockers = Blockers({r[0]: r[2] for r in rows}, frozenset(i for i, _ in held))
    # A held account blocks only itself, as an account's own expiry does.
    inside = [r for r in rows if r[1].startswith(path)]
    inside += [(i, p, DUNNING_HOLD) for i, p in held if i not in blockers.statuses]
    # Every active service may have to stop when an ancestor blocks or too many accounts
    # inside do; otherwise only those under the blocked subtrees and on the expired accounts.
    any_active = any(r[0] in ancestor_ids for r in rows) or len(inside) > MAX_NAMED_BLOCKERS
    candidates = await repository.services_to_follow_block_in_subtree(
        ctx.session,
        ctx.provider_id,
        path,
        any_active=any_active,
        blocked_subtrees=[] if any_active else [r[1] for r in inside if r[2] in SUBTREE_BLOCKING],
        blocked_account_ids=[] if any_active else [r[0] for r in inside if r[2] not in SUBTREE_BLOCKING],
    )
    await _apply(ctx, _follow_block(candidates, blockers))


async def reconcile_accounts(ctx: Ctx, account_ids: Sequence[int]) -> None:
    """The same for the services of these accounts only (not their subtrees).

    For a change that blocks or unblocks exactly these accounts, like the expiry sweep.
    """
    ids = sorted(set(account_ids))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        rows = await repository.services_to_follow_block_on_accounts(ctx.session, ctx.provider_id, chunk)
        if not rows:
            continue
        blockers = await blockers_along(ctx.session, ctx.provider_id, {path for _, path in rows})
        await _apply(ctx, _follow_block(rows, blockers))


# --- periods and the data cap ------------------------------------------------------------


def period_containing(start: date, period: Period, day: date) -> tuple[date, date]:
    """The pay period [start, end) that holds ``day``: periods run from the service's start
    date, each boundary computed from the start (so the 31st stays the 31st where it can).
    Before the start date, the first period."""
    if day < start:
        return start, add_period(start, period)
    if period is Period.day:
        count = (day - start).days
    elif period is Period.week:
        count = (day - start).days // 7
    else:
        months = {Period.month: 1, Period.quarter: 3, Period.year: 12}[period]
        count = ((day.year - start.year) * 12 + day.month - start.month) // months
    count = max(count, 0)
    while add_period(start, period, count) > day:
        count -= 1
    while add_period(start, period, count + 1) <= day:
        count += 1
    return add_period(start, period, count), add_period(start, period, count + 1)


@dataclass(frozen=True)
class Where:
    """What a service's rules need to know about its account."""

    account: Account
    timezone: str
    blocked: bool

    def today(self, now: datetime) -> date:
        return local_date(now, self.timezone)


async def where_is(ctx: Ctx, service: Service) -> Where:
    """The service's account, its effective timezone and whether it is blocked: one chain read."""
    account = await repository.account_by_id(ctx.session, ctx.provider_id, service.account_id)
    chain = await accounts.chain(ctx.session, account)
    provider = await providers.get(ctx.session, ctx.provider_id)
    timezone = inheritance.resolve(chain, "timezone", provider.default_timezone).value
    blockers = Blockers(
        {a.id: a.status for a in chain if a.status != AccountStatus.active.value},
        frozenset(a.id for a in chain if a.dunning_hold),
    )
    return Where(account, timezone, blockers.blocks(account.path))


def local_midnight(day: date, timezone: str) -> datetime:
    """The first instant of ``day`` in ``timezone``, as UTC."""
    return end_of_local_day(day - timedelta(days=1), timezone)


async def reset_caps(ctx: Ctx, limit: int = CHUNK) -> list[int]:
    """Services disabled by their cap whose period has rolled over come back (or stop, if
    their account is blocked). Returns the ids; call again while it returns ``limit`` ids.

    Throttles that ran out are cleared too (up to ``limit`` a call). Readers already treat
    a ``throttled_until`` in the past as no throttle, so a throttle ends on time even
    before this runs; clearing it keeps the row saying what holds now.
    """
    await _clear_ended_throttles(ctx, limit)
    rows = await repository.cap_resets_due(ctx.session, ctx.provider_id, ctx.now(), limit)
    blockers = await blockers_along(ctx.session, ctx.provider_id, {path for _, path in rows})
    note = "a new period began"
    await _apply(
        ctx,
        [
            Transition(service, STOPPED, StatusReason.account.value, note)
            if blockers.blocks(path)
            else Transition(service, ACTIVE, StatusReason.cap_reset.value, note)
            for service, path in rows
        ],
    )
    return [service.id for service, _ in rows]


async def _clear_ended_throttles(ctx: Ctx, limit: int) -> None:
    ended = await repository.throttles_ended(ctx.session, ctx.provider_id, ctx.now(), limit)
    if not ended:
        return
    events = []
    for service in ended:
        events.append(
            audit.event(
                ctx, entity=ENTITY, entity_id=service.id, action="throttle_ended",
                account_id=service.account_id, before={"throttled_until": service.throttled_until},
                after={"throttled_until": None, "note": "a new period began"},
            )
        )  # fmt: skip
        service.throttled_until = None
    await audit.record_many(ctx, events)
    await ctx.session.flush()
