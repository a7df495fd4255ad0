"""Queries of child connections and dual device users. Reads take a Scope; nothing leaves it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from boughs.accounts.models import Account
from boughs.authz.scope import Scope
from boughs.catalog.models import Plan, PlanKind
from boughs.services.models import Service, is_live

# A plan that lets a subscriber bring a second device along (a "dual device" hotspot plan).
COMPANION_ALLOWANCE = 2


@dataclass(frozen=True)
class ConnectionService:
    """The internet service a child connection shows, with its plan's name."""

    service_id: int
    account_id: int
    login: str | None
    plan_id: int
    plan_name: str
    ipv4_address: str | None
    mac_addresses: list[str]


def _live_internet() -> Any:
    return and_(
        is_live(),
        Plan.kind == PlanKind.internet.value,
    )


async def first_internet_services(
    session: AsyncSession, provider_id: int, account_ids: Sequence[int]
) -> dict[int, ConnectionService]:
    """Per account, its oldest live internet service: the connection's login and plan."""
    if not account_ids:
        return {}
    result = await session.execute(
        select(
            Service.id,
            Service.account_id,
            Service.login,
            Service.plan_id,
            Plan.name,
            Service.ipv4_address,
            Service.mac_addresses,
        )
        .join(Plan, Plan.id == Service.plan_id)
        .where(Service.provider_id == provider_id, Service.account_id.in_(account_ids), _live_internet())
        .order_by(Service.account_id, Service.id)
    )
    found: dict[int, ConnectionService] = {}
    for row in result.all():
        if row[1] not in found:
            found[row[1]] = ConnectionService(
                row[0], row[1], row[2], row[3], row[4], row[5], list(row[6] or [])
            )
    return found


# --- dual device users ---------------------------------------------------------------

_Kid = aliased(Account, name="kid")


def _visible(scope: Scope, path: Any) -> Any:
    return scope.path_condition(cast(InstrumentedAttribute[str], path))


def _has_children(scope: Scope) -> Any:
    # Only children the actor can see count: a child that shuts its parents out stays unseen.
    return exists().where(
        _Kid.provider_id == Account.provider_id,
        _Kid.parent_id == Account.id,
        _visible(scope, _Kid.path),
    )


def _has_companion_service() -> Any:
    return (
        exists()
        .where(
            Service.account_id == Account.id,
            Service.provider_id == Account.provider_id,
            _live_internet(),
            Plan.device_allowance >= COMPANION_ALLOWANCE,
        )
        .where(Plan.id == Service.plan_id)
    )


async def dual_device_accounts(
    session: AsyncSession, scope: Scope, kind: str, after_id: int | None, limit: int
) -> list[tuple[int, str]]:
    """(id, name) of accounts in scope with children and/or a companion-device plan, by id."""
    conditions = {
        "children": _has_children(scope),
        "companion": _has_companion_service(),
        "all": or_(_has_children(scope), _has_companion_service()),
    }[kind]
    stmt = select(Account.id, Account.name).where(
        Account.provider_id == scope.provider_id, _visible(scope, Account.path), conditions
    )
    if after_id is not None:
        stmt = stmt.where(Account.id > after_id)
    result = await session.execute(stmt.order_by(Account.id).limit(limit))
    return [(row[0], row[1]) for row in result.all()]


async def child_counts(session: AsyncSession, scope: Scope, account_ids: Sequence[int]) -> dict[int, int]:
    if not account_ids:
        return {}
    result = await session.execute(
        select(Account.parent_id, func.count())
        .where(
            Account.provider_id == scope.provider_id,
            Account.parent_id.in_(account_ids),
            _visible(scope, Account.path),
        )
        .group_by(Account.parent_id)
    )
    return {int(row[0] or 0): int(row[1]) for row in result.all()}


async def companion_services(
    session: AsyncSession, provider_id: int, account_ids: Sequence[int]
) -> list[tuple[int, int, list[str]]]:
    """(account id, device allowance, MAC addresses) of live companion-device services."""
    if not account_ids:
        return []
    result = await session.execute(
        select(Service.account_id, Plan.device_allowance, Service.mac_addresses)
        .join(Plan, Plan.id == Service.plan_id)
        .where(
            Service.provider_id == provider_id,
            Service.account_id.in_(account_ids),
            _live_internet(),
            Plan.device_allowance >= COMPANION_ALLOWANCE,
        )
    )
    return [(int(row[0]), int(row[1]), list(row[2] or [])) for row in result.all()]
