"""Every query about plans, offers, routers, IPv4 pools and ports. Reads take a Scope."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    false,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts.models import Account
from boughs.authz.scope import Scope
from boughs.catalog.models import IpPool, Offer, Plan, Port, Router
from boughs.kit.paths import ids_of
from boughs.kit.types import storable_id
from boughs.services.models import Service, ServiceScheduledChange, is_live

Owned = TypeVar("Owned", IpPool, Port)
Row = TypeVar("Row", Plan, Router, IpPool, Port)


# --- who may see and use what ----------------------------------------------------------


def _grant_lineage(scope: Scope) -> list[int]:
    """Every account at or above a grant: what is offered or shared there reaches the grant."""
    ids: set[int] = set()
    for grant in scope.grants:
        ids.update(ids_of(grant.path))
    return sorted(ids)


def _in_scope_accounts(scope: Scope) -> Any:
    return select(Account.id).where(
        Account.provider_id == scope.provider_id, scope.path_condition(Account.path)
    )


def plans_visible(scope: Scope) -> ColumnElement[bool]:
    """Staff see every plan; members those available to some account in their scope."""
    if scope.whole_provider:
        return true()
    if not scope.grants:
        return false()
    offered_here = select(Offer.plan_id).where(
        Offer.provider_id == scope.provider_id,
        or_(Offer.account_id.in_(_grant_lineage(scope)), Offer.account_id.in_(_in_scope_accounts(scope))),
    )
    return or_(Plan.public.is_(True), Plan.id.in_(offered_here))


def plans_available_to(provider_id: int, chain_ids: Sequence[int]) -> ColumnElement[bool]:
    """Public plans, and those offered to the account or one of its ancestors."""
    offered = select(Offer.plan_id).where(Offer.provider_id == provider_id, Offer.account_id.in_(chain_ids))
    return or_(Plan.public.is_(True), Plan.id.in_(offered))


def usable_by(model: type[Owned], account: Account) -> ColumnElement[bool]:
    """The provider's, the account's own, and those its ancestors share downwards."""
    ancestors = ids_of(account.path)[:-1]
    return or_(
        model.owner_account_id.is_(None),
        model.owner_account_id == account.id,
        and_(model.owner_account_id.in_(ancestors), model.shared_with_descendants.is_(True)),
    )


def owned_visible(model: type[Owned], scope: Scope) -> ColumnElement[bool]:
    """Staff see every pool or port; members those some account in their scope may use."""
    if scope.whole_provider:
        return true()
    if not scope.grants:
        return false()
    return or_(
        model.owner_account_id.is_(None),
        model.owner_account_id.in_(_in_scope_accounts(scope)),
        and_(model.owner_account_id.in_(_grant_lineage(scope)), model.shared_with_descendants.is_(True)),
    )


def _visible(model: type[Row], scope: Scope) -> ColumnElement[bool]:
    if model is Plan:
        return plans_visible(scope)
    if model is Router:
        return true() if scope.whole_provider else false()
    return owned_visible(model, scope)  # type: ignore[type-var]


# --- generic reads ---------------------------------------------------------------------


async def get(session: AsyncSession, model: type[Row], provider_id: int, row_id: int) -> Row | None:
    """Within the provider, whatever the actor's scope (for checks made on its behalf)."""
    if not storable_id(row_id):
        return None
    result = await session.execute(select(model).where(model.id == row_id, model.provider_id == provider_id))
    return result.scalar_one_or_none()


async def get_visible(session: AsyncSession, model: type[Row], scope: Scope, row_id: int) -> Row | None:
    if not storable_id(row_id):
        return None
    result = await session.execute(
        select(model).where(
            model.id == row_id, model.provider_id == scope.provider_id, _visible(model, scope)
        )
    )
    return result.scalar_one_or_none()


async def get_by_name(session: AsyncSession, model: type[Row], provider_id: int, name: str) -> Row | None:
    result = await session.execute(select(model).where(model.provider_id == provider_id, model.name == name))
    return result.scalar_one_or_none()


@dataclass(frozen=True)
class PlanFilter:
    kind: str | None = None
    include_retired: bool = False
    # Plans available to the account with this chain of ids (root first).
    available_to: Sequence[int] | None = None


async def list_plans(
    session: AsyncSession, scope: Scope, f: PlanFilter, after_id: int | None, limit: int
) -> list[Plan]:
    stmt = select(Plan).where(Plan.provider_id == scope.provider_id, plans_visible(scope))
    if f.kind is not None:
        stmt = stmt.where(Plan.kind == f.kind)
    if not f.include_retired:
        stmt = stmt.where(Plan.retired_at.is_(None))
    if f.available_to is not None:
        stmt = stmt.where(plans_available_to(scope.provider_id, f.available_to))
    if after_id is not None:
        stmt = stmt.where(Plan.id > after_id)
    result = await session.execute(stmt.order_by(Plan.id).limit(limit))
    return list(result.scalars())


async def list_rows(
    session: AsyncSession,
    model: type[Row],
    scope: Scope,
    after_id: int | None,
    limit: int,
    conditions: Sequence[ColumnElement[bool]] = (),
) -> list[Row]:
    stmt = select(model).where(model.provider_id == scope.provider_id, _visible(model, scope), *conditions)
    if after_id is not None:
        stmt = stmt.where(model.id > after_id)
    result = await session.execute(stmt.order_by(model.id).limit(limit))
    return list(result.scalars())


# --- plans and offers ------------------------------------------------------------------


async def plan_available(
    session: AsyncSession, provider_id: int, plan_id: int, chain_ids: Sequence[int]
) -> bool:
    result = await session.execute(
        select(Plan.id).where(
            Plan.id == plan_id, Plan.provider_id == provider_id, plans_available_to(provider_id, chain_ids)
        )
    )
    return result.first() is not None


def _available_plans_statement() -> Select[Plan, int | None]:
    """Each live plan that is public or offered along a chain, with every offer of it
    along the chain. Built once; parameters ``provider_id`` and ``chain_ids``."""
    chain_ids: BindParameter[list[int]] = bindparam("chain_ids", expanding=True)
    offered = and_(
        Offer.plan_id == Plan.id,
        Offer.provider_id == bindparam("provider_id"),
        Offer.account_id.in_(chain_ids),
    )
    return (
        select(Plan, Offer.account_id)
        .outerjoin(Offer, offered)
        .where(
            Plan.provider_id == bindparam("provider_id"),
            Plan.retired_at.is_(None),
            or_(Plan.public.is_(True), Offer.account_id.is_not(None)),
        )
        .order_by(Plan.id)
    )


_AVAILABLE_PLANS = _available_plans_statement()


async def available_plans(
    session: AsyncSession, provider_id: int, chain_ids: Sequence[int]
) -> list[tuple[Plan, int | None]]:
    """Live plans available to the account at the end of the chain, each with the nearest
    account of the chain that was offered it (None for a public plan offered nowhere on it)."""
    rows = await session.execute(_AVAILABLE_PLANS, {"provider_id": provider_id, "chain_ids": list(chain_ids)})
    depth = {account_id: i for i, account_id in enumerate(chain_ids)}
    plans: dict[int, Plan] = {}
    nearest: dict[int, int] = {}
    for plan, offered_to in rows.all():
        plans[plan.id] = plan
        known = nearest.get(plan.id)
        if offered_to is not None and (known is None or depth[offered_to] > depth[known]):
            nearest[plan.id] = offered_to
    return [(plan, nearest.get(plan_id)) for plan_id, plan in plans.items()]


async def get_offer(session: AsyncSession, plan_id: int, account_id: int) -> Offer | None:
    result = await session.execute(
        select(Offer).where(Offer.plan_id == plan_id, Offer.account_id == account_id)
    )
    return result.scalar_one_or_none()


async def list_offers(session: AsyncSession, scope: Scope, plan_id: int) -> list[tuple[Offer, Account]]:
    """The plan's offers to accounts the actor can see."""
    result = await session.execute(
        select(Offer, Account)
        .join(Account, Account.id == Offer.account_id)
        .where(
            Offer.plan_id == plan_id,
            Offer.provider_id == scope.provider_id,
            scope.path_condition(Account.path),
        )
        .order_by(Account.path)
    )
    return [(row[0], row[1]) for row in result.all()]


async def delete_offer(session: AsyncSession, offer: Offer) -> None:
    await session.execute(delete(Offer).where(Offer.id == offer.id))


async def plan_use(session: AsyncSession, provider_id: int, plan_id: int) -> int:
    """Services on the plan, and scheduled changes that would move one onto it."""
    services = await services_using(session, provider_id, Service.plan_id, plan_id)
    result = await session.execute(
        select(func.count())
        .select_from(ServiceScheduledChange)
        .where(ServiceScheduledChange.provider_id == provider_id, ServiceScheduledChange.plan_id == plan_id)
    )
    return services + int(result.scalar_one())


# --- what services hold ----------------------------------------------------------------


async def services_using(session: AsyncSession, provider_id: int, column: Any, value: int) -> int:
    """How many services (of any status) reference the row."""
    result = await session.execute(
        select(func.count()).select_from(Service).where(Service.provider_id == provider_id, column == value)
    )
    return int(result.scalar_one())


async def live_addresses(session: AsyncSession, provider_id: int) -> list[str]:
    """Permanent addresses held by services that are not archived."""
    result = await session.execute(
        select(Service.ipv4_address).where(
            Service.provider_id == provider_id,
            Service.ipv4_address.is_not(None),
            is_live(),
        )
    )
    return [row[0] for row in result.all() if row[0] is not None]


async def pools_of(session: AsyncSession, provider_id: int) -> list[IpPool]:
    result = await session.execute(
        select(IpPool).where(IpPool.provider_id == provider_id).order_by(IpPool.id)
    )
    return list(result.scalars())


async def usable_pools(session: AsyncSession, account: Account, kind: str | None = None) -> list[IpPool]:
    stmt = select(IpPool).where(IpPool.provider_id == account.provider_id, usable_by(IpPool, account))
    if kind is not None:
        stmt = stmt.where(IpPool.kind == kind)
    result = await session.execute(stmt.order_by(IpPool.id))
    return list(result.scalars())


async def is_usable(session: AsyncSession, model: type[Owned], account: Account, row_id: int) -> bool:
    result = await session.execute(
        select(model.id).where(
            model.id == row_id, model.provider_id == account.provider_id, usable_by(model, account)
        )
    )
    return result.first() is not None


async def delete_row(session: AsyncSession, row: Plan | Router | IpPool | Port) -> None:
    await session.delete(row)
    await session.flush()


# --- the console's lists ---------------------------------------------------------------


def _matches(q: str, *columns: Any) -> ColumnElement[bool]:
    """A case-insensitive substring match on any of the columns (LIKE wildcards taken literally)."""
    needle = q.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(*(func.lower(column).like(f"%{needle}%", escape="\\") for column in columns))


_SEARCHED: dict[type[Any], tuple[Any, ...]] = {
    Plan: (Plan.name,),
    Router: (Router.name, Router.address),
    IpPool: (IpPool.name, IpPool.cidr),
    Port: (Port.name, Port.location),
}


def search_statement(
    model: type[Row], scope: Scope, q: str = "", conditions: Sequence[ColumnElement[bool]] = ()
) -> Any:
    """The visible rows of a catalog table matching a search, unordered: the console orders and
    pages it."""
    stmt = select(model).where(model.provider_id == scope.provider_id, _visible(model, scope), *conditions)
    if q.strip():
        stmt = stmt.where(_matches(q, *_SEARCHED[model]))
    return stmt


def offers_statement(scope: Scope, plan_id: int) -> Any:
    """(offer, account) rows of the plan's offers to accounts in the scope, unordered."""
    return (
        select(Offer, Account)
        .join(Account, Account.id == Offer.account_id)
        .where(
            Offer.plan_id == plan_id,
            Offer.provider_id == scope.provider_id,
            scope.path_condition(Account.path),
        )
    )


async def offer_count(session: AsyncSession, provider_id: int, plan_id: int) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(Offer)
        .where(Offer.provider_id == provider_id, Offer.plan_id == plan_id)
    )
    return int(result.scalar_one())


async def accounts_named(session: AsyncSession, scope: Scope, ids: Sequence[int]) -> dict[int, Account]:
    """The accounts of these ids the scope reaches (owners of pools and ports on a page)."""
    wanted = sorted({i for i in ids if storable_id(i)})
    if not wanted:
        return {}
    result = await session.execute(
        select(Account).where(
            Account.id.in_(wanted),
            Account.provider_id == scope.provider_id,
            scope.path_condition(Account.path),
        )
    )
    return {a.id: a for a in result.scalars()}


async def services_using_each(
    session: AsyncSession, provider_id: int, column: Any, ids: Sequence[int]
) -> dict[int, int]:
    """How many services reference each of these rows (a page of routers, pools or ports)."""
    if not ids:
        return {}
    result = await session.execute(
        select(column, func.count())
        .where(Service.provider_id == provider_id, column.in_(list(ids)))
        .group_by(column)
    )
    return {int(row_id): int(count) for row_id, count in result.all()}
