"""Every query about accounts and their links. Reads take a Scope; nothing leaves it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.selectable import CTE

from boughs.accounts.models import Account, AccountLink, AccountStatus
from boughs.audit.models import AuditEvent
from boughs.authz.scope import Scope
from boughs.kit.paths import ids_of, upper_bound
from boughs.kit.types import storable_id
from boughs.providers.models import Provider

# depth is a 32-bit INTEGER column.
MAX_DEPTH = 2**31 - 1


def in_subtree(path: str) -> ColumnElement[bool]:
    return and_(Account.path >= path, Account.path < upper_bound(path))


# Statements on the hot paths are built once and run with parameters: building one (its
# clauses, then its cache key) costs more than SQLite takes to run it.
IN_BOUND_SUBTREE = and_(Account.path >= bindparam("subtree_from"), Account.path < bindparam("subtree_below"))


def subtree_bounds(path: str) -> dict[str, str]:
    """The parameters of ``IN_BOUND_SUBTREE`` for the subtree at ``path``."""
    return {"subtree_from": path, "subtree_below": upper_bound(path)}


def _visible(scope: Scope) -> ColumnElement[bool]:
    return and_(Account.provider_id == scope.provider_id, scope.path_condition(Account.path))


async def get(session: AsyncSession, scope: Scope, account_id: int) -> Account | None:
    if not storable_id(account_id):
        return None
    result = await session.execute(select(Account).where(Account.id == account_id, _visible(scope)))
    return result.scalar_one_or_none()


_MANY_OF_PROVIDER = select(Account).where(
    Account.provider_id == bindparam("provider_id"), Account.id.in_(bindparam("ids", expanding=True))
)


async def get_many(session: AsyncSession, scope: Scope, ids: Sequence[int]) -> list[Account]:
    ids = [i for i in ids if storable_id(i)]
    if not ids:
        return []
    statement = _MANY_OF_PROVIDER
    if not scope.whole_provider:
        statement = statement.where(scope.path_condition(Account.path))
    result = await session.execute(statement, {"provider_id": scope.provider_id, "ids": ids})
    return list(result.scalars())


def is_sqlite(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "sqlite"


async def reload(session: AsyncSession, accounts: Sequence[Account]) -> None:
    """Re-read accounts already in the session (after taking a lock), in one statement."""
    if accounts:
        await session.execute(
            select(Account)
            .where(Account.id.in_([a.id for a in accounts]))
            .execution_options(populate_existing=True)
        )


def mark_rebased(account: Account, path: str, depth: int, root_id: int, now: datetime) -> None:
    """Record on a loaded account what ``rebase_subtree`` wrote for it."""
    for name, value in (("path", path), ("depth", depth), ("root_id", root_id), ("updated_at", now)):
        set_committed_value(account, name, value)
    if account.chain_since is None or account.chain_since < now:
        set_committed_value(account, "chain_since", now)


async def lock(session: AsyncSession, provider_id: int, ids: Sequence[int]) -> None:
    """Row locks in id order (so two movers cannot deadlock). SQLite writers already hold
    the database's single write lock from BEGIN IMMEDIATE."""
    if session.get_bind().dialect.name == "sqlite" or not ids:
        return
    await session.execute(
        select(Account.id)
        .where(Account.provider_id == provider_id, Account.id.in_(sorted(set(ids))))
        .order_by(Account.id)
        .with_for_update()
    )


async def get_by_external_id(session: AsyncSession, provider_id: int, external_id: str) -> Account | None:
    result = await session.execute(
        select(Account).where(Account.provider_id == provider_id, Account.external_id == external_id)
    )
    return result.scalar_one_or_none()


def _chain_steps() -> CTE:
    """The ids of an account and its ancestors: each step up is a primary-key lookup.
    Parameters: ``account_id`` and ``provider_id``."""
    # The provider is checked on the account itself; its ancestors are in the same
    # provider by construction. Scalar subqueries and IN rather than joins, and no
    # provider term on the outer query, keep every step a primary-key lookup whatever
    # the planner's statistics say (with them, SQLite would build a Bloom filter over
    # the whole table for a join; without them, it may scan the provider's index).
    start = select(Account.id).where(
        Account.id == bindparam("account_id"), Account.provider_id == bindparam("provider_id")
    )
    steps = start.cte("chain", recursive=True)
    up = aliased(Account, name="up")
    parent_of = select(up.parent_id).where(up.id == steps.c.id).scalar_subquery()
    return steps.union_all(select(parent_of).where(steps.c.id.is_not(None)))


# Built once: making aliases and CTEs costs more than running the query.
_STEPS = _chain_steps()
_CHAIN: Select[Account, Provider] = (
    select(Account, Provider)
    .join(Provider, Provider.id == Account.provider_id)
    .where(Account.id.in_(select(_STEPS.c.id)))
    .order_by(Account.depth)
)
# Without the provider, for callers that need only the accounts: a third fewer columns to read.
_ANCESTRY: Select[Account] = (
    select(Account).where(Account.id.in_(select(_STEPS.c.id))).order_by(Account.depth)
)


@dataclass(frozen=True)
class Chain:
    """An account with its ancestors (root first, the account last) and its provider."""

    accounts: list[Account]
    provider: Provider

    @property
    def account(self) -> Account:
        return self.accounts[-1]

    @property
    def provider_timezone(self) -> str:
        return self.provider.default_timezone

    @property
    def provider_currency(self) -> str:
        return self.provider.default_currency


async def chain_of(session: AsyncSession, scope: Scope, account_id: int) -> Chain | None:
    """None when the account does not exist or lies outside the scope. Ancestors outside
    the scope are included: what an account inherits comes from them all the same."""
    if not storable_id(account_id):
        return None
    params = {"account_id": account_id, "provider_id": scope.provider_id}
    rows = (await session.execute(_CHAIN, params)).all()
    if not rows or rows[-1][0].id != account_id or not scope.covers_path(rows[-1][0].path):
        return None
    return Chain([row[0] for row in rows], rows[0][1])


async def ancestry_of(session: AsyncSession, scope: Scope, account_id: int) -> list[Account] | None:
    """The account and its ancestors, root first, as ``chain_of`` finds them, without the provider."""
    if not storable_id(account_id):
        return None
    params = {"account_id": account_id, "provider_id": scope.provider_id}
    found = list((await session.execute(_ANCESTRY, params)).scalars())
    if not found or found[-1].id != account_id or not scope.covers_path(found[-1].path):
        return None
    return found


async def chain(session: AsyncSession, account: Account) -> list[Account]:
    """The account's ancestors root first, then the account itself."""
    return (await chains(session, [account]))[0]


async def chains(session: AsyncSession, accounts: Sequence[Account]) -> list[list[Account]]:
    """Each account's chain (its ancestors root first, then itself), read in one statement."""
    wanted = sorted({i for a in accounts for i in ids_of(a.path)[:-1]})
    found: dict[int, Account] = {}
    if wanted:
        params = {"provider_id": accounts[0].provider_id, "ids": wanted}
        found = {a.id: a for a in (await session.execute(_MANY_OF_PROVIDER, params)).scalars()}
    return [[*(found[i] for i in ids_of(a.path)[:-1]), a] for a in accounts]


@dataclass(frozen=True)
class AccountFilter:
    q: str | None = None
    status: str | None = None
    parent_id: int | None = None
    top_level: bool | None = None
    depth: int | None = None
    root_id: int | None = None
    within_path: str | None = None


def _filter_conditions(f: AccountFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if f.q:
        needle = f.q.strip().lower()
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(
            or_(
                func.lower(Account.name).like(f"%{escaped}%", escape="\\"),
                Account.external_id == f.q.strip(),
            )
        )
    if f.status:
        conditions.append(Account.status == f.status)
    if f.parent_id is not None:
        conditions.append(Account.parent_id == f.parent_id)
    if f.top_level is True:
        conditions.append(Account.parent_id.is_(None))
    elif f.top_level is False:
        conditions.append(Account.parent_id.is_not(None))
    if f.depth is not None:
        conditions.append(Account.depth == f.depth)
    if f.root_id is not None:
        conditions.append(Account.root_id == f.root_id)
    if f.within_path is not None:
        conditions.append(in_subtree(f.within_path))
    return conditions


async def list_by_id(
    session: AsyncSession, scope: Scope, f: AccountFilter, after_id: int | None, limit: int
) -> list[Account]:
    stmt = select(Account).where(_visible(scope), *_filter_conditions(f))
    if after_id is not None:
        stmt = stmt.where(Account.id > after_id)
    result = await session.execute(stmt.order_by(Account.id).limit(limit))
    return list(result.scalars())


async def list_by_path(
    session: AsyncSession, scope: Scope, f: AccountFilter, after_path: str | None, limit: int
) -> list[Account]:
    """Tree order: a parent before its subtree, keyset-paginated on the path index."""
    stmt = select(Account).where(_visible(scope), *_filter_conditions(f))
    if after_path is not None:
        stmt = stmt.where(Account.path > after_path)
    result = await session.execute(stmt.order_by(Account.path).limit(limit))
    return list(result.scalars())


async def has_children(session: AsyncSession, account: Account) -> bool:
    result = await session.execute(
        select(Account.id)
        .where(Account.provider_id == account.provider_id, Account.parent_id == account.id)
        .limit(1)
    )
    return result.first() is not None


async def audit_event_count(session: AsyncSession, account: Account) -> int:
    """Audit events about the account: deleting it keeps them all."""
    result = await session.execute(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.provider_id == account.provider_id, AuditEvent.account_id == account.id)
    )
    return int(result.scalar_one())


@dataclass(frozen=True)
class SubtreeSummary:
    accounts: int
    active: int
    max_depth: int


_TOP = aliased(Account, name="top")
# One statement: the top account is found by id and its path bounds the index range scan.
_SUBTREE_SUMMARY = (
    select(
        func.count(Account.id),
        func.coalesce(func.sum(case((Account.status == AccountStatus.active.value, 1), else_=0)), 0),
        func.max(Account.depth),
    )
    .select_from(_TOP)
    .join(
        Account,
        and_(
            Account.provider_id == _TOP.provider_id,
            Account.path >= _TOP.path,
            Account.path < func.substr(_TOP.path, 1, func.length(_TOP.path) - 1).concat(literal("0")),
        ),
    )
    .where(_TOP.id == bindparam("account_id"), _TOP.provider_id == bindparam("provider_id"))
)


async def subtree_summary_of(session: AsyncSession, scope: Scope, account_id: int) -> SubtreeSummary | None:
    """None when the account is missing or out of scope."""
    if not storable_id(account_id):
        return None
    stmt = _SUBTREE_SUMMARY
    if not scope.whole_provider:
        stmt = stmt.where(scope.path_condition(_TOP.path))
    result = await session.execute(stmt, {"account_id": account_id, "provider_id": scope.provider_id})
    count, active, max_depth = result.one()
    if not count:
        return None
    return SubtreeSummary(accounts=int(count), active=int(active), max_depth=int(max_depth))


async def subtree_summary(session: AsyncSession, account: Account) -> SubtreeSummary:
    result = await session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((Account.status == AccountStatus.active.value, 1), else_=0)), 0),
            func.coalesce(func.max(Account.depth), account.depth),
        ).where(Account.provider_id == account.provider_id, in_subtree(account.path))
    )
    count, active, max_depth = result.one()
    return SubtreeSummary(accounts=int(count), active=int(active), max_depth=int(max_depth))


async def max_depth_below(session: AsyncSession, account: Account) -> int:
    result = await session.execute(
        select(func.max(Account.depth)).where(
            Account.provider_id == account.provider_id, in_subtree(account.path)
        )
    )
    return int(result.scalar_one() or account.depth)


_MOVED_AT = bindparam("moved_at", type_=Account.__table__.c.updated_at.type)
_REBASE = (
    update(Account)
    .where(Account.provider_id == bindparam("tree_provider_id"), IN_BOUND_SUBTREE)
    .values(
        path=bindparam("new_prefix", type_=String).concat(
            func.substr(Account.path, bindparam("kept_from", type_=Integer))
        ),
        depth=Account.depth + bindparam("depth_change", type_=Integer),
        root_id=bindparam("new_root_id", type_=Account.__table__.c.root_id.type),
        # Every account below changes chain now; the latest change wins, even on a clock
        # that was set back.
        chain_since=case(
            (or_(Account.chain_since.is_(None), Account.chain_since < _MOVED_AT), _MOVED_AT),
            else_=Account.chain_since,
        ),
        updated_at=_MOVED_AT,
    )
    .execution_options(synchronize_session=False)
)


async def rebase_subtree(
    session: AsyncSession,
    account: Account,
    new_path: str,
    new_root_id: int,
    now: datetime,
) -> int:
    """Move a whole subtree to a new path prefix in one statement; returns rows moved."""
    old_path = account.path
    params = {
        "tree_provider_id": account.provider_id,
        **subtree_bounds(old_path),
        "new_prefix": new_path,
        "kept_from": len(old_path) + 1,
        "depth_change": new_path.count("/") - old_path.count("/"),
        "new_root_id": new_root_id,
        "moved_at": now,
    }
    result = await session.execute(_REBASE, params)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def delete_account(session: AsyncSession, account: Account) -> None:
    await session.execute(
        delete(AccountLink).where(
            AccountLink.provider_id == account.provider_id, AccountLink.child_id == account.id
        )
    )
    await session.execute(
        delete(Account)
        .where(Account.provider_id == account.provider_id, Account.id == account.id)
        .execution_options(synchronize_session=False)
    )


# --- parent-link history -----------------------------------------------------------


async def open_link(
    session: AsyncSession, provider_id: int, child_id: int, parent_id: int | None, at: datetime
) -> None:
    session.add(AccountLink(provider_id=provider_id, child_id=child_id, parent_id=parent_id, valid_from=at))


_CLOSE_CURRENT_LINK = (
    update(AccountLink)
    .where(
        AccountLink.provider_id == bindparam("link_provider_id"),
        AccountLink.child_id == bindparam("link_child_id"),
        AccountLink.valid_to.is_(None),
    )
    .values(valid_to=bindparam("closed_at", type_=AccountLink.__table__.c.valid_to.type))
    .execution_options(synchronize_session=False)
)


async def close_current_link(session: AsyncSession, provider_id: int, child_id: int, at: datetime) -> None:
    params = {"link_provider_id": provider_id, "link_child_id": child_id, "closed_at": at}
    await session.execute(_CLOSE_CURRENT_LINK, params)


async def links(session: AsyncSession, provider_id: int, child_id: int) -> list[AccountLink]:
    result = await session.execute(
        select(AccountLink)
        .where(AccountLink.provider_id == provider_id, AccountLink.child_id == child_id)
        .order_by(AccountLink.valid_from, AccountLink.id)
    )
    return list(result.scalars())


# --- expiry --------------------------------------------------------------------------

# id, path, status, expiry_date, timezone
ExpiryRow = tuple[int, str, str, date | None, str | None]


async def expiry_sources(session: AsyncSession, provider_id: int, on_or_before: date) -> list[Account]:
    """Accounts whose own expiry date is on or before the given date, outermost first."""
    result = await session.execute(
        select(Account)
        .where(
            Account.provider_id == provider_id,
            Account.expiry_date.is_not(None),
            Account.expiry_date <= on_or_before,
        )
        .order_by(Account.path)
    )
    return list(result.scalars())


async def expiry_relevant_rows(session: AsyncSession, provider_id: int, path: str) -> Sequence[ExpiryRow]:
    """In a subtree, the rows that can expire or that shape what their descendants inherit."""
    result = await session.execute(
        select(Account.id, Account.path, Account.status, Account.expiry_date, Account.timezone)
        .where(
            Account.provider_id == provider_id,
            in_subtree(path),
            or_(
                Account.status.in_((AccountStatus.active.value, AccountStatus.expired.value)),
                Account.expiry_date.is_not(None),
                Account.timezone.is_not(None),
            ),
        )
        .order_by(Account.path)
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in result.all()]


async def set_status(
    session: AsyncSession, provider_id: int, ids: Sequence[int], status: str, now: datetime
) -> None:
    for start in range(0, len(ids), 500):
        await session.execute(
            update(Account)
            .where(Account.provider_id == provider_id, Account.id.in_(ids[start : start + 500]))
            .values(status=status, updated_at=now)
            # Accounts already loaded in the session (the one a request answers with) see it.
            .execution_options(synchronize_session="evaluate")
        )


async def count_by_status(session: AsyncSession, scope: Scope) -> dict[str, int]:
    """Accounts in the scope per status: one GROUP BY over the subtree index, never the rows."""
    result = await session.execute(
        select(Account.status, func.count()).where(_visible(scope)).group_by(Account.status)
    )
    return {str(status): int(count) for status, count in result.all()}


# --- the console's lists -------------------------------------------------------------


def filtered(scope: Scope, f: AccountFilter) -> Select[Account]:
    """Accounts in scope matching ``f``, unordered: the console sorts and pages it."""
    return select(Account).where(_visible(scope), *_filter_conditions(f))


async def child_counts(session: AsyncSession, scope: Scope, parent_ids: Sequence[int]) -> dict[int, int]:
    """How many children in scope each account has: a tree node opens only when it has some."""
    ids = [i for i in parent_ids if storable_id(i)]
    if not ids:
        return {}
    result = await session.execute(
        select(Account.parent_id, func.count())
        .where(Account.parent_id.in_(ids), _visible(scope))
        .group_by(Account.parent_id)
    )
    return {int(row[0] or 0): int(row[1]) for row in result.all()}


def dual_device_statement(scope: Scope, kind: str, q: str | None) -> Select[int, str, str | None]:
    """(id, name, external id) of the dual device users the API lists, searchable, unordered.

    The conditions are the child-connections repository's own, so the console's list and
    ``GET /api/v1/dual-device-users`` always agree on who belongs in it.
    """
    from boughs.services import connections_repository as connections

    has_children = connections._has_children(scope)
    has_companion = connections._has_companion_service()
    condition = {
        "children": has_children,
        "companion": has_companion,
        "all": or_(has_children, has_companion),
    }[kind]
    return select(Account.id, Account.name, Account.external_id).where(
        _visible(scope), condition, *_filter_conditions(AccountFilter(q=q))
    )
