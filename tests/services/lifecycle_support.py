"""Building blocks for the lifecycle and changes tests: plans, accounts and services."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.catalog.models import Plan
from boughs.context import Ctx
from boughs.services import service as services
from boughs.services.models import Service, ServiceScheduledChange, ServiceStatusChange
from boughs.services.schemas import ServiceCreate


async def make_plan(ctx: Ctx, name: str, price: int = 3000, **fields: Any) -> Plan:
    values: dict[str, Any] = {
        "kind": "custom", "currency": "USD", "pay_period": "month", "public": True,
        "device_allowance": 1, "usage_charges": [], **fields,
    }  # fmt: skip
    plan = Plan(
        provider_id=ctx.provider_id, name=name, price_amount=price,
        created_at=ctx.now(), updated_at=ctx.now(), **values,
    )  # fmt: skip
    ctx.session.add(plan)
    await ctx.session.flush()
    return plan


async def make_account(ctx: Ctx, name: str, parent_id: int | None = None, **fields: Any) -> int:
    body = AccountCreate(name=name, parent_id=parent_id, preaccept_agreements=True, **fields)
    return (await accounts.create(ctx, body)).id


async def make_service(ctx: Ctx, account_id: int, plan_id: int, status: str = "active", **fields: Any) -> int:
    body = ServiceCreate(plan_id=plan_id, status=status, **fields)  # type: ignore[arg-type]
    return (await services.create(ctx, account_id, body)).id


async def state(ctx: Ctx, service_id: int) -> tuple[str, str]:
    row = (await ctx.session.execute(select(Service).where(Service.id == service_id))).scalar_one()
    return row.status, row.status_reason


async def load(ctx: Ctx, service_id: int) -> Service:
    return (await ctx.session.execute(select(Service).where(Service.id == service_id))).scalar_one()


async def history(ctx: Ctx, service_id: int) -> list[tuple[str | None, str, str]]:
    rows = await ctx.session.execute(
        select(ServiceStatusChange)
        .where(ServiceStatusChange.service_id == service_id)
        .order_by(ServiceStatusChange.id)
    )
    return [(r.from_status, r.to_status, r.reason) for r in rows.scalars()]


async def scheduled(ctx: Ctx, change_id: int) -> ServiceScheduledChange:
    result = await ctx.session.execute(
        select(ServiceScheduledChange).where(ServiceScheduledChange.id == change_id)
    )
    return result.scalar_one()


def day(text: str) -> date:
    return date.fromisoformat(text)
