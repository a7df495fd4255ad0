"""Building blocks for the usage tests: accounts, services, meters and events, made through
the domain services in a committed unit of work (fast), and reads of what was stored."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.auth import service as auth
from boughs.auth.actor import Actor
from boughs.catalog.models import Plan, PlanKind
from boughs.context import Ctx
from boughs.memberships.models import Membership
from boughs.services import service as services
from boughs.services.schemas import ServiceCreate
from boughs.usage import fold
from boughs.usage import service as usage
from boughs.usage.ingest import Outcome, ingest
from boughs.usage.models import UsageEvent, UsageRollup
from boughs.usage.schemas import MeterCreate

_serial = itertools.count(1)


async def new_account(ctx: Ctx, name: str, parent_id: int | None = None, **fields: Any) -> int:
    data = AccountCreate(name=name, parent_id=parent_id, preaccept_agreements=True, **fields)
    return (await accounts.create(ctx, data)).id


async def new_plan(ctx: Ctx) -> int:
    now = ctx.now()
    plan = Plan(
        provider_id=ctx.provider_id, kind=PlanKind.internet.value, name=f"Usage plan {next(_serial)}",
        price_amount=1_000, currency="USD", pay_period="month", public=True,
        created_at=now, updated_at=now,
    )  # fmt: skip
    ctx.session.add(plan)
    await ctx.session.flush()
    return plan.id


async def new_service(ctx: Ctx, account_id: int, plan_id: int, login: str | None = None) -> int:
    return (await services.create(ctx, account_id, ServiceCreate(plan_id=plan_id, login=login))).id


async def new_meter(ctx: Ctx, code: str, aggregation: str = "sum", **fields: Any) -> int:
    data = MeterCreate(
        code=code, name=code.title(), unit=fields.pop("unit", "bytes"), aggregation=aggregation, **fields
    )
    return (await usage.create_meter(ctx, data)).id


async def member(ctx: Ctx, account_id: int, role: str) -> Actor:
    """A user with ``role`` on the account (and so on its subtree)."""
    now = ctx.now()
    user = await auth.create_user(
        ctx.session, ctx.provider_id, f"member-{next(_serial)}@usage.test", None, now
    )
    ctx.session.add(
        Membership(
            provider_id=ctx.provider_id, user_id=user.id, account_id=account_id, role=role, created_at=now
        )
    )
    await ctx.session.flush()
    return Actor(provider_id=ctx.provider_id, label=f"user:{user.id}", user_id=user.id)


def event(
    event_id: str, quantity: Any, at: datetime | str, meter: str = "data", **subject: Any
) -> dict[str, Any]:
    timestamp = at.isoformat() if isinstance(at, datetime) else at
    return {"id": event_id, "meter": meter, "quantity": quantity, "timestamp": timestamp, **subject}


async def send(ctx: Ctx, events: Sequence[Any]) -> list[Outcome]:
    results = await ingest(ctx, events)
    assert [r.index for r in results] == list(range(len(events))), "one answer per event, in order"
    return results


def statuses(results: Sequence[Outcome]) -> list[str]:
    return [r.status.value for r in results]


def reasons(results: Sequence[Outcome]) -> list[str]:
    return [r.reason or "" for r in results]


async def stored_count(ctx: Ctx) -> int:
    return int(await ctx.session.scalar(select(func.count()).select_from(UsageEvent)) or 0)


async def rollup_totals(ctx: Ctx, meter_id: int) -> dict[tuple[str, int], tuple[int, int, int]]:
    """(kind, subject) → (sum of totals, max of peaks, sum of events) over every hour, once
    the fold has added every pending batch to the rollups: for services, accounts' own
    usage and accounts' subtrees (their own rows and the rows below them together)."""
    await fold.catch_up(ctx)
    rows = await ctx.session.execute(
        select(
            UsageRollup.kind,
            UsageRollup.subject_id,
            func.sum(UsageRollup.total),
            func.max(UsageRollup.peak),
            func.sum(UsageRollup.events),
        )
        .where(UsageRollup.meter_id == meter_id)
        .group_by(UsageRollup.kind, UsageRollup.subject_id)
    )
    stored = {
        (kind, subject): (int(total), int(peak), int(events)) for kind, subject, total, peak, events in rows
    }
    totals = {key: value for key, value in stored.items() if key[0] != "below"}
    for kind, subject in stored:
        if kind in ("account", "below") and ("subtree", subject) not in totals:
            own, below = stored.get(("account", subject)), stored.get(("below", subject))
            parts = [p for p in (own, below) if p is not None]
            totals[("subtree", subject)] = (
                sum(p[0] for p in parts),
                max(p[1] for p in parts),
                sum(p[2] for p in parts),
            )
    return totals


async def token_for(ctx: Ctx, actor: Actor) -> str:
    """A bearer token for the actor's user, for tests that go over HTTP."""
    from boughs.auth.models import User

    user = await ctx.session.get(User, actor.user_id)
    assert user is not None
    return (await auth.issue_token(ctx.session, user, "usage tests", ctx.now())).token
