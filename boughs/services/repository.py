"""Every query about services, their discounts and their status history. Reads take a Scope."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, Select, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts.models import Account, AccountStatus
from boughs.accounts.repository import IN_BOUND_SUBTREE, in_subtree, subtree_bounds
from boughs.authz.scope import Scope
from boughs.catalog.models import Plan
from boughs.kit.types import storable_id
from boughs.services.models import (
    ScheduledChangeState,
    Service,
    ServiceDiscount,
    ServiceScheduledChange,
    ServiceStatus,
    ServiceStatusChange,
    StatusReason,
    is_live,
)


def _visible(scope: Scope) -> ColumnElement[bool]:
    return and_(
        Service.provider_id == scope.provider_id,
        Account.id == Service.account_id,
        scope.path_condition(Account.path),
    )


async def get(session: AsyncSession, scope: Scope, service_id: int) -> tuple[Service, Account] | None:
    """The service and its account; None when missing or outside the scope."""
    if not storable_id(service_id):
        return None
    result = await session.execute(select(Service, Account).where(Service.id == service_id, _visible(scope)))
    row = result.first()
    return (row[0], row[1]) if row else None


@dataclass(frozen=True)
class ServiceFilter:
    account_id: int | None = None
    status: str | None = None
    plan_id: int | None = None
    login: str | None = None


async def list_by_id(
    session: AsyncSession, scope: Scope, f: ServiceFilter, after: int | None, limit: int
) -> list[Service]:
    stmt = select(Service).join(Account, Account.id == Service.account_id).where(_visible(scope))
    if f.account_id is not None:
        stmt = stmt.where(Service.account_id == f.account_id)
    if f.status is not None:
        stmt = stmt.where(Service.status == f.status)
    if f.plan_id is not None:
        stmt = stmt.where(Service.plan_id == f.plan_id)
    if f.login is not None:
        stmt = stmt.where(Service.login == f.login)
    if after is not None:
        stmt = stmt.where(Service.id > after)
    result = await session.execute(stmt.order_by(Service.id).limit(limit))
    return list(result.scalars())


async def live_holder(
    session: AsyncSession, provider_id: int, column: str, value: str, except_id: int | None
) -> Service | None:
    """The non-archived service of the provider holding ``value`` in ``column`` (login, ipv4_address)."""
    attribute = getattr(Service, column)
    stmt = select(Service).where(
        Service.provider_id == provider_id,
        attribute == value,
        is_live(),
    )
    if except_id is not None:
        stmt = stmt.where(Service.id != except_id)
    result = await session.execute(stmt.limit(1))
    return result.scalar_one_or_none()


async def get_in_tree(session: AsyncSession, scope: Scope, service_id: int, root_id: int) -> Service | None:
    """A service in scope on an account of the tree rooted at ``root_id``."""
    if not storable_id(service_id):
        return None
    result = await session.execute(
        select(Service).where(Service.id == service_id, _visible(scope), Account.root_id == root_id)
    )
    return result.scalar_one_or_none()


async def plans(session: AsyncSession, provider_id: int, ids: Sequence[int]) -> dict[int, Plan]:
    if not ids:
        return {}
    result = await session.execute(
        select(Plan).where(Plan.provider_id == provider_id, Plan.id.in_(sorted(set(ids))))
    )
    return {p.id: p for p in result.scalars()}


async def accounts(session: AsyncSession, provider_id: int, ids: Sequence[int]) -> dict[int, Account]:
    if not ids:
        return {}
    result = await session.execute(
        select(Account).where(Account.provider_id == provider_id, Account.id.in_(sorted(set(ids))))
    )
    return {a.id: a for a in result.scalars()}


async def discounts_of(
    session: AsyncSession, provider_id: int, service_ids: Sequence[int]
) -> dict[int, list[ServiceDiscount]]:
    found: dict[int, list[ServiceDiscount]] = {i: [] for i in service_ids}
    if not service_ids:
        return found
    result = await session.execute(
        select(ServiceDiscount)
        .where(
            ServiceDiscount.provider_id == provider_id,
            ServiceDiscount.service_id.in_(sorted(set(service_ids))),
        )
        .order_by(ServiceDiscount.service_id, ServiceDiscount.start_date, ServiceDiscount.id)
    )
    for discount in result.scalars():
        found[discount.service_id].append(discount)
    return found


async def get_discount(session: AsyncSession, service: Service, discount_id: int) -> ServiceDiscount | None:
    if not storable_id(discount_id):
        return None
    result = await session.execute(
        select(ServiceDiscount).where(
            ServiceDiscount.provider_id == service.provider_id,
            ServiceDiscount.service_id == service.id,
            ServiceDiscount.id == discount_id,
        )
    )
    return result.scalar_one_or_none()


async def delete_discount(session: AsyncSession, discount: ServiceDiscount) -> None:
    await session.execute(
        delete(ServiceDiscount)
        .where(ServiceDiscount.provider_id == discount.provider_id, ServiceDiscount.id == discount.id)
        .execution_options(synchronize_session=False)
    )


async def history(
    session: AsyncSession, service: Service, before: int | None, limit: int
) -> list[ServiceStatusChange]:
    """Newest first."""
    stmt = select(ServiceStatusChange).where(
        ServiceStatusChange.provider_id == service.provider_id,
        ServiceStatusChange.service_id == service.id,
    )
    if before is not None:
        stmt = stmt.where(ServiceStatusChange.id < before)
    result = await session.execute(stmt.order_by(ServiceStatusChange.id.desc()).limit(limit))
    return list(result.scalars())


async def history_count(session: AsyncSession, service: Service) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(ServiceStatusChange)
        .where(
            ServiceStatusChange.provider_id == service.provider_id,
            ServiceStatusChange.service_id == service.id,
        )
    )
    return int(result.scalar_one())


async def delete_service(session: AsyncSession, service: Service) -> None:
    """The database's ON DELETE CASCADE removes its history, discounts and scheduled changes."""
    await session.execute(
        delete(Service)
        .where(Service.provider_id == service.provider_id, Service.id == service.id)
        .execution_options(synchronize_session=False)
    )


async def count_on_account(session: AsyncSession, provider_id: int, account_id: int) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(Service)
        .where(Service.provider_id == provider_id, Service.account_id == account_id)
    )
    return int(result.scalar_one())


# --- the status machine (lifecycle.py) --------------------------------------------------


async def non_active_statuses(
    session: AsyncSession, provider_id: int, account_ids: Sequence[int]
) -> dict[int, str]:
    """The status of each of these accounts that is not active; active ones are left out."""
    result = await session.execute(
        select(Account.id, Account.status).where(
            Account.provider_id == provider_id,
            Account.id.in_(account_ids),
            Account.status != AccountStatus.active.value,
        )
    )
    return {row[0]: row[1] for row in result.all()}


async def account_path(session: AsyncSession, provider_id: int, account_id: int) -> str:
    result = await session.execute(
        select(Account.path).where(Account.provider_id == provider_id, Account.id == account_id)
    )
    return str(result.scalar_one())


async def account_by_id(session: AsyncSession, provider_id: int, account_id: int) -> Account:
    """The provider's account; it must exist."""
    result = await session.execute(
        select(Account).where(Account.provider_id == provider_id, Account.id == account_id)
    )
    return result.scalar_one()


async def service_status(session: AsyncSession, provider_id: int, service_id: int) -> str | None:
    result = await session.execute(
        select(Service.status).where(Service.provider_id == provider_id, Service.id == service_id)
    )
    return result.scalar_one_or_none()


async def pending_waiters_with_paths(
    session: AsyncSession, provider_id: int, waits_on_ids: Sequence[int]
) -> list[tuple[Service, str]]:
    """Pending services waiting on any of these, with their account's path, by id."""
    result = await session.execute(
        select(Service, Account.path)
        .join(Account, Account.id == Service.account_id)
        .where(
            Service.provider_id == provider_id,
            Service.waits_on_service_id.in_(waits_on_ids),
            Service.status == ServiceStatus.pending.value,
        )
        .order_by(Service.id)
    )
    return [(row[0], row[1]) for row in result.all()]


_NON_ACTIVE_INSIDE = select(Account.id, Account.path, Account.status).where(
    Account.provider_id == bindparam("provider_id"),
    IN_BOUND_SUBTREE,
    Account.status != AccountStatus.active.value,
)
_NON_ACTIVE_INSIDE_OR_BLOCKING_ABOVE = _NON_ACTIVE_INSIDE.union_all(
    select(Account.id, Account.path, Account.status).where(
        Account.id.in_(bindparam("ancestor_ids", expanding=True)),
        Account.provider_id == bindparam("provider_id"),
        Account.status.in_(bindparam("blocking_statuses", expanding=True)),
    )
)


async def non_active_accounts_in_subtree_or_blocking_ancestors(
    session: AsyncSession,
    provider_id: int,
    path: str,
    ancestor_ids: Sequence[int],
    subtree_blocking: Sequence[str],
) -> list[tuple[int, str, str]]:
    """(id, path, status) of the non-active accounts of the subtree at ``path``, and of
    those ``ancestor_ids`` whose status is one of ``subtree_blocking``.

    Two statements joined by UNION ALL rather than one with OR: each half is then a range
    of the subtree index or primary-key lookups, where an OR lets a planner with
    statistics choose to read every account of the provider.
    """
    params = {"provider_id": provider_id, **subtree_bounds(path)}
    if ancestor_ids:
        params.update(ancestor_ids=list(ancestor_ids), blocking_statuses=list(subtree_blocking))
        result = await session.execute(_NON_ACTIVE_INSIDE_OR_BLOCKING_ABOVE, params)
    else:
        result = await session.execute(_NON_ACTIVE_INSIDE, params)
    return [(row[0], row[1], row[2]) for row in result.all()]


def _stopped_by_account() -> ColumnElement[bool]:
    return and_(
        Service.status == ServiceStatus.stopped.value,
        Service.status_reason == StatusReason.account.value,
    )


def _services_in_subtree(condition: ColumnElement[bool]) -> Select[Service, str]:
    """The services meeting ``condition`` in the bound subtree, with their account's path, by id."""
    return (
        select(Service, Account.path)
        .join(Account, Account.id == Service.account_id)
        .where(
            Account.provider_id == bindparam("provider_id"),
            IN_BOUND_SUBTREE,
            Service.provider_id == bindparam("provider_id"),
            condition,
        )
        .order_by(Service.id)
    )


_ACTIVE = Service.status == ServiceStatus.active.value
_STOPPED_BY_ACCOUNT_IN_SUBTREE = _services_in_subtree(_stopped_by_account())
_STOPPED_BY_ACCOUNT_OR_ACTIVE_IN_SUBTREE = _services_in_subtree(or_(_stopped_by_account(), _ACTIVE))


async def services_to_follow_block_in_subtree(
    session: AsyncSession,
    provider_id: int,
    path: str,
    *,
    any_active: bool,
    blocked_subtrees: Sequence[str],
    blocked_account_ids: Sequence[int],
) -> list[tuple[Service, str]]:
    """Services in the subtree at ``path`` that may have to follow a block, with their
    account's path, by id: those stopped by an earlier block, and the active ones that may
    have to stop: every active one when ``any_active``, otherwise those in the subtrees at
    ``blocked_subtrees`` or on ``blocked_account_ids``."""
    params = {"provider_id": provider_id, **subtree_bounds(path)}
    if any_active:
        statement = _STOPPED_BY_ACCOUNT_OR_ACTIVE_IN_SUBTREE
    elif blocked_subtrees or blocked_account_ids:
        ranges = [in_subtree(p) for p in blocked_subtrees]
        where = [*ranges, *([Account.id.in_(blocked_account_ids)] if blocked_account_ids else [])]
        statement = _services_in_subtree(or_(_stopped_by_account(), and_(_ACTIVE, or_(*where))))
    else:
        statement = _STOPPED_BY_ACCOUNT_IN_SUBTREE  # nothing blocked: nothing to stop
    result = await session.execute(statement, params)
    return [(row[0], row[1]) for row in result.all()]


async def services_to_follow_block_on_accounts(
    session: AsyncSession, provider_id: int, account_ids: Sequence[int]
) -> list[tuple[Service, str]]:
    """The active and the stopped-by-account services of these accounts, with their path, by id."""
    result = await session.execute(
        select(Service, Account.path)
        .join(Account, Account.id == Service.account_id)
        .where(
            Service.provider_id == provider_id,
            Service.account_id.in_(account_ids),
            or_(_stopped_by_account(), Service.status == ServiceStatus.active.value),
        )
        .order_by(Service.id)
    )
    return [(row[0], row[1]) for row in result.all()]


async def cap_resets_due(
    session: AsyncSession, provider_id: int, now: datetime, limit: int
) -> list[tuple[Service, str]]:
    """Services disabled by their cap whose reset time has come, with their account's path,
    soonest reset first."""
    result = await session.execute(
        select(Service, Account.path)
        .join(Account, Account.id == Service.account_id)
        .where(
            Service.provider_id == provider_id,
            Service.status == ServiceStatus.disabled.value,
            Service.status_reason == StatusReason.cap.value,
            Service.cap_resets_at <= now,
        )
        .order_by(Service.cap_resets_at, Service.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in result.all()]


async def throttles_ended(
    session: AsyncSession, provider_id: int, now: datetime, limit: int
) -> list[Service]:
    """Services whose data-cap throttle ran out and still carry its end time, earliest first."""
    result = await session.execute(
        select(Service)
        .where(Service.provider_id == provider_id, Service.throttled_until <= now)
        .order_by(Service.throttled_until, Service.id)
        .limit(limit)
    )
    return list(result.scalars())


# --- scheduled changes (changes.py) -----------------------------------------------------


async def service_by_id(session: AsyncSession, provider_id: int, service_id: int) -> Service:
    """The provider's service; it must exist."""
    result = await session.execute(
        select(Service).where(Service.provider_id == provider_id, Service.id == service_id)
    )
    return result.scalar_one()


async def scheduled_changes_of(
    session: AsyncSession, provider_id: int, service_id: int, after: int | None, limit: int
) -> list[ServiceScheduledChange]:
    """The service's scheduled changes, pending or not, oldest first, after id ``after``."""
    query = (
        select(ServiceScheduledChange)
        .where(
            ServiceScheduledChange.provider_id == provider_id,
            ServiceScheduledChange.service_id == service_id,
        )
        .order_by(ServiceScheduledChange.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(ServiceScheduledChange.id > after)
    return list((await session.execute(query)).scalars())


async def get_scheduled_change(
    session: AsyncSession, provider_id: int, service_id: int, change_id: int
) -> ServiceScheduledChange | None:
    if not storable_id(change_id):
        return None
    result = await session.execute(
        select(ServiceScheduledChange).where(
            ServiceScheduledChange.provider_id == provider_id,
            ServiceScheduledChange.service_id == service_id,
            ServiceScheduledChange.id == change_id,
        )
    )
    return result.scalar_one_or_none()


async def move_scheduled_change_state(
    session: AsyncSession, change_id: int, to: ScheduledChangeState, now: datetime
) -> bool:
    """pending → ``to`` if it is still pending; False when another unit of work got there first."""
    stamp = {"applied_at": now} if to is ScheduledChangeState.applied else {"cancelled_at": now}
    result = await session.execute(
        update(ServiceScheduledChange)
        .where(
            ServiceScheduledChange.id == change_id,
            ServiceScheduledChange.state == ScheduledChangeState.pending.value,
        )
        .values(state=to.value, **stamp)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


async def pending_changes_due_by(
    session: AsyncSession, provider_id: int, horizon: date, after: tuple[date, int] | None, limit: int
) -> list[ServiceScheduledChange]:
    """Pending changes effective on or before ``horizon``, by (effective_date, id), after ``after``."""
    query = (
        select(ServiceScheduledChange)
        .where(
            ServiceScheduledChange.provider_id == provider_id,
            ServiceScheduledChange.state == ScheduledChangeState.pending.value,
            ServiceScheduledChange.effective_date <= horizon,
        )
        .order_by(ServiceScheduledChange.effective_date, ServiceScheduledChange.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            or_(
                ServiceScheduledChange.effective_date > after[0],
                and_(ServiceScheduledChange.effective_date == after[0], ServiceScheduledChange.id > after[1]),
            )
        )
    return list((await session.execute(query)).scalars())


# --- console lists ------------------------------------------------------------------------


def account_services_statement(
    scope: Scope, account_id: int, status: str | None, search: str
) -> Select[Service, Plan]:
    """An account's services in scope, each with its plan, unordered: a console list orders
    and pages it. ``search`` matches the login, the description or the plan's name."""
    stmt = (
        select(Service, Plan)
        .join(Account, Account.id == Service.account_id)
        .join(Plan, Plan.id == Service.plan_id)
        .where(_visible(scope), Service.account_id == account_id)
    )
    if status is not None:
        stmt = stmt.where(Service.status == status)
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        stmt = stmt.where(
            or_(
                func.lower(Service.login).like(pattern, escape="\\"),
                func.lower(Service.description).like(pattern, escape="\\"),
                func.lower(Plan.name).like(pattern, escape="\\"),
            )
        )
    return stmt


async def count_by_status(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """Services of accounts in the scope per status; staff count the provider's without a join."""
    stmt = select(Service.status, func.count()).where(Service.provider_id == scope.provider_id)
    if not scope.whole_provider:
        stmt = stmt.join(Account, Account.id == Service.account_id).where(scope.path_condition(Account.path))
    result = await session.execute(stmt.group_by(Service.status))
    return {str(status): int(count) for status, count in result.all()}
