"""Every query about data caps: period counters, alerts, top-ups and the services caps hold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts.models import Account
from boughs.accounts.repository import in_subtree
from boughs.catalog.models import Plan
from boughs.services.models import Service, is_live
from boughs.usage.models import CapAlert, CapUsage, TopUp
from boughs.usage.repository import chunks, dialect_insert

# (service_id, period_start): one cap's counter in one pay period.
PeriodKey = tuple[int, date]


# --- counters --------------------------------------------------------------------------------


async def add_cap_usage(
    session: AsyncSession, provider_id: int, amounts: list[tuple[int, date, int]]
) -> dict[PeriodKey, int]:
    """Add bytes to (service, period) counters; returns each counter's value after the add.

    ``amounts`` sorted by (service, period), so concurrent batches lock rows in one order.
    On PostgreSQL the row lock makes concurrent adds queue (SQLite writers queue at BEGIN),
    so each sees the total its own add produced.
    """
    table = CapUsage.__table__
    after: dict[PeriodKey, int] = {}
    for service_id, period_start, amount in amounts:
        statement = dialect_insert(session, table).values(
            service_id=service_id, period_start=period_start, provider_id=provider_id, used_bytes=amount
        )
        statement = statement.on_conflict_do_update(
            index_elements=["service_id", "period_start"],
            set_={"used_bytes": table.c.used_bytes + statement.excluded.used_bytes},
        ).returning(table.c.used_bytes)
        after[(service_id, period_start)] = (await session.execute(statement)).scalar_one()
    return after


async def cap_used(session: AsyncSession, service_id: int, period_start: date) -> int:
    used = await session.scalar(
        select(CapUsage.used_bytes).where(
            CapUsage.service_id == service_id, CapUsage.period_start == period_start
        )
    )
    return int(used or 0)


async def cap_used_many(session: AsyncSession, keys: Sequence[PeriodKey]) -> dict[PeriodKey, int]:
    """The counters of these (service, period) keys; a key without usage is left out."""
    found: dict[PeriodKey, int] = {}
    for part in chunks(sorted(set(keys))):
        rows = await session.execute(
            select(CapUsage.service_id, CapUsage.period_start, CapUsage.used_bytes).where(
                tuple_(CapUsage.service_id, CapUsage.period_start).in_(list(part))
            )
        )
        found.update({(s, p): int(used) for s, p, used in rows})
    return found


# --- alerts ----------------------------------------------------------------------------------


async def record_alert(session: AsyncSession, row: dict[str, Any]) -> int | None:
    """Write the alert unless it exists; its id when this call wrote it (exactly once)."""
    statement = (
        dialect_insert(session, CapAlert.__table__)
        .values(**row)
        .on_conflict_do_nothing(
            index_elements=["service_id", "period_start", "threshold_percent", "cap_bytes"]
        )
        .returning(CapAlert.__table__.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def set_alert_outcome(session: AsyncSession, alert_id: int, outcome: str) -> None:
    await session.execute(update(CapAlert).where(CapAlert.id == alert_id).values(outcome=outcome))


async def recorded_alerts(
    session: AsyncSession, keys: Sequence[PeriodKey]
) -> set[tuple[int, date, int, int]]:
    """(service, period, threshold, cap) of the alerts already written for these keys."""
    found: set[tuple[int, date, int, int]] = set()
    for part in chunks(sorted(set(keys))):
        rows = await session.execute(
            select(
                CapAlert.service_id, CapAlert.period_start, CapAlert.threshold_percent, CapAlert.cap_bytes
            ).where(tuple_(CapAlert.service_id, CapAlert.period_start).in_(list(part)))
        )
        found.update((s, p, t, c) for s, p, t, c in rows)
    return found


async def alerts_of(
    session: AsyncSession, service_id: int, period_start: date | None = None
) -> list[CapAlert]:
    query = select(CapAlert).where(CapAlert.service_id == service_id)
    if period_start is not None:
        query = query.where(CapAlert.period_start == period_start)
    return list(await session.scalars(query.order_by(CapAlert.id)))


# --- top-ups ---------------------------------------------------------------------------------


async def add_top_up(session: AsyncSession, row: dict[str, Any]) -> TopUp:
    top_up = TopUp(**row)
    session.add(top_up)
    await session.flush()
    return top_up


async def top_ups_of(session: AsyncSession, service_id: int, period_start: date | None = None) -> list[TopUp]:
    query = select(TopUp).where(TopUp.service_id == service_id)
    if period_start is not None:
        query = query.where(TopUp.period_start == period_start)
    return list(await session.scalars(query.order_by(TopUp.id)))


async def top_up_totals(session: AsyncSession, keys: Sequence[PeriodKey]) -> dict[PeriodKey, int]:
    """Bytes topped up per (service, period); a key without top-ups is left out."""
    found: dict[PeriodKey, int] = {}
    for part in chunks(sorted(set(keys))):
        rows = await session.execute(
            select(TopUp.service_id, TopUp.period_start, func.sum(TopUp.bytes))
            .where(tuple_(TopUp.service_id, TopUp.period_start).in_(list(part)))
            .group_by(TopUp.service_id, TopUp.period_start)
        )
        found.update({(s, p): int(total) for s, p, total in rows})
    return found


# --- the services caps hold ------------------------------------------------------------------


@dataclass(frozen=True)
class CappedService:
    """A live service on a plan with a data cap, with what its cap needs to be counted."""

    service: Service
    account_path: str
    plan: Plan

    @property
    def data_cap_bytes(self) -> int:
        return self.plan.data_cap_bytes or 0

    @property
    def pooled(self) -> bool:
        return self.plan.pooled_cap


async def capped_services(
    session: AsyncSession, provider_id: int, direct_ids: Sequence[int], pooling_account_ids: Sequence[int]
) -> list[CappedService]:
    """Live services on a capped plan, by id: those named whose cap is their own, and the
    pooled-cap services held by the accounts given. One query."""
    conditions: list[ColumnElement[bool]] = []
    if direct_ids:
        conditions.append(and_(Service.id.in_(sorted(set(direct_ids))), Plan.pooled_cap.is_(False)))
    if pooling_account_ids:
        conditions.append(
            and_(Service.account_id.in_(sorted(set(pooling_account_ids))), Plan.pooled_cap.is_(True))
        )
    if not conditions:
        return []
    rows = await session.execute(
        select(Service, Account.path, Plan)
        .join(Plan, Plan.id == Service.plan_id)
        .join(Account, Account.id == Service.account_id)
        .where(
            Service.provider_id == provider_id,
            is_live(),
            Plan.data_cap_bytes.is_not(None),
            Plan.cap_action.is_not(None),
            or_(*conditions),
        )
        .order_by(Service.id)
    )
    return [CappedService(service, path, plan) for service, path, plan in rows]


async def account_timezones(
    session: AsyncSession, provider_id: int, account_ids: Sequence[int]
) -> dict[int, str | None]:
    """Each account's own timezone (None: it inherits)."""
    found: dict[int, str | None] = {}
    for part in chunks(sorted(set(account_ids))):
        rows = await session.execute(
            select(Account.id, Account.timezone).where(
                Account.provider_id == provider_id, Account.id.in_(list(part))
            )
        )
        found.update({i: tz for i, tz in rows})
    return found


async def pool_members(
    session: AsyncSession,
    provider_id: int,
    path: str,
    plan_kinds: Sequence[str],
    *,
    also_ids: Sequence[int] = (),
    lock: bool = False,
) -> list[tuple[Service, str]]:
    """The live services in the subtree at ``path`` on plans of these kinds (and those of
    ``also_ids``), freshly read, with their account's path, by id. ``lock``: their rows are
    locked, in id order, until the transaction ends (PostgreSQL; SQLite writers queue anyway)."""
    member: ColumnElement[bool] = Plan.kind.in_(list(plan_kinds))
    if also_ids:
        member = or_(member, Service.id.in_(list(also_ids)))
    query = (
        select(Service, Account.path)
        .join(Account, Account.id == Service.account_id)
        .join(Plan, Plan.id == Service.plan_id)
        .where(
            Account.provider_id == provider_id,
            in_subtree(path),
            Service.provider_id == provider_id,
            is_live(),
            member,
        )
        .order_by(Service.id)
        .execution_options(populate_existing=True)
    )
    if lock:
        # FOR NO KEY UPDATE: rows that reference these services (their usage events) take
        # KEY SHARE locks, which this one does not wait for.
        query = query.with_for_update(of=Service, key_share=True)
    rows = await session.execute(query)
    return [(service, account_path) for service, account_path in rows]
