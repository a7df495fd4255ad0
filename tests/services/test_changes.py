"""Plan changes with proration, scheduled changes applied exactly once, and data caps (seed 004)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from boughs.accounts import service as accounts
from boughs.audit.models import AuditEvent
from boughs.context import Ctx
from boughs.jobs import registry
from boughs.kit.errors import Conflict, InvalidInput
from boughs.kit.periods import Period
from boughs.services import changes, lifecycle
from boughs.services.changes import ChangePlanRequest, ScheduledChangeCreate
from boughs.services.models import ServicePlanChange
from boughs.usage import caps
from boughs.usage.schemas import TopUpCreate
from tests.services.lifecycle_support import (
    day,
    history,
    load,
    make_account,
    make_plan,
    make_service,
    scheduled,
    state,
)


@pytest.fixture
async def world(ctx_factory):  # type: ignore[no-untyped-def]
    """An account in Auckland with a monthly service that started on 2026-01-01."""
    async with ctx_factory() as ctx:
        basic = await make_plan(ctx, "Basic", 3000)
        better = await make_plan(ctx, "Better", 6200)
        private = await make_plan(ctx, "Private", 100, public=False)
        euro = await make_plan(ctx, "Euro", 100, currency="EUR")
        capped = await make_plan(
            ctx, "Capped", 5000, kind="internet", data_cap_bytes=10**9, cap_action="disable"
        )
        throttled = await make_plan(
            ctx, "Throttled", 5000, kind="internet", data_cap_bytes=10**9, cap_action="throttle",
            throttle_download_rate=512, throttle_upload_rate=256,
        )  # fmt: skip
        account = await make_account(ctx, "Customer", timezone="Pacific/Auckland")
        service = await make_service(ctx, account, basic.id, start_date=date(2026, 1, 1))
        plans = {p.name: p.id for p in (basic, better, private, euro, capped, throttled)}
        return {"account": account, "service": service, "plans": plans}


# --- periods and proration -------------------------------------------------------------------


def test_periods_run_from_the_start_date() -> None:
    month = Period.month
    assert lifecycle.period_containing(day("2026-01-31"), month, day("2026-03-15")) == (
        day("2026-02-28"),
        day("2026-03-31"),
    )
    assert lifecycle.period_containing(day("2026-01-31"), month, day("2026-03-31")) == (
        day("2026-03-31"),
        day("2026-04-30"),
    )
    assert lifecycle.period_containing(day("2026-01-10"), Period.week, day("2026-01-24")) == (
        day("2026-01-24"),
        day("2026-01-31"),
    )
    assert lifecycle.period_containing(day("2024-02-29"), Period.year, day("2026-03-01")) == (
        day("2026-02-28"),
        day("2027-02-28"),
    )
    # Before the start: the first period.
    assert lifecycle.period_containing(day("2026-02-01"), month, day("2026-01-20")) == (
        day("2026-02-01"),
        day("2026-03-01"),
    )


def test_proration_rounds_once_and_is_zero_on_a_boundary() -> None:
    month = Period.month
    p = changes.prorate(day("2026-01-01"), month, month, day("2026-01-15"), 3000, 6200)
    # 17 of 31 days left: 1645.16… and 3400 exactly.
    assert (p.period_start, p.period_end, p.credit_amount, p.charge_amount) == (
        day("2026-01-01"), day("2026-02-01"), 1645, 3400,
    )  # fmt: skip
    assert changes.prorate(day("2026-01-01"), month, month, day("2026-02-01"), 3000, 6200).charge_amount == 0
    assert changes.prorate(day("2026-01-20"), month, month, day("2026-01-10"), 3000, 6200).credit_amount == 0
    # Half a minor unit rounds up: 1 * 15/30.
    assert changes.prorate(day("2026-04-01"), month, month, day("2026-04-16"), 1, 1).credit_amount == 1


async def test_change_plan_now_records_the_proration(ctx_factory, world) -> None:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        service, change = await changes.change_plan(
            ctx, world["service"], ChangePlanRequest(plan_id=world["plans"]["Better"])
        )
        assert service.plan_id == world["plans"]["Better"] and service.unit_price_amount is None
        # 2026-01-16 in Auckland (the clock is 2026-01-15 12:00Z): 16 of 31 days left.
        assert (change.effective_date, change.credit_amount, change.charge_amount) == (
            day("2026-01-16"), 1548, 3200,
        )  # fmt: skip
        assert (change.from_price_amount, change.to_price_amount, change.currency) == (3000, 6200, "USD")
        events = (
            await ctx.session.execute(
                select(AuditEvent.action).where(AuditEvent.entity_id == str(service.id))
            )
        ).scalars()
        assert "plan_changed" in list(events)


@pytest.mark.parametrize(
    ("plan", "message"), [("Private", "not offered"), ("Euro", "priced in EUR"), ("Basic", "already")]
)
async def test_change_plan_refuses_what_the_account_cannot_take(
    ctx_factory, world, plan: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as caught:
        async with ctx_factory() as ctx:
            await changes.change_plan(ctx, world["service"], ChangePlanRequest(plan_id=world["plans"][plan]))
    assert caught.value.errors[0].field == "plan_id" and message in caught.value.errors[0].message
    async with ctx_factory() as ctx:
        assert (await load(ctx, world["service"])).plan_id == world["plans"]["Basic"]
        count = await ctx.session.execute(select(ServicePlanChange.id))
        assert list(count.scalars()) == []


# --- scheduled changes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"effective_date": "2026-01-15"}, "effective_date"),  # yesterday in Auckland
        ({"effective_date": "2026-02-01"}, "plan_id"),  # nothing to change
        ({"effective_date": "2026-02-01", "plan_id": "Private"}, "plan_id"),
    ],
)
async def test_scheduling_refuses_bad_input(ctx_factory, world, body, field) -> None:  # type: ignore[no-untyped-def]
    if "plan_id" in body:
        body = {**body, "plan_id": world["plans"][body["plan_id"]]}
    elif body["effective_date"] == "2026-01-15":
        body = {**body, "quantity": 2}
    with pytest.raises(InvalidInput) as caught:
        async with ctx_factory() as ctx:
            await changes.schedule_change(ctx, world["service"], ScheduledChangeCreate.model_validate(body))
    assert field in [e.field for e in caught.value.errors]


async def run_due(ctx_factory) -> list[int]:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        return (await changes.apply_due_changes(ctx)).applied


async def test_a_scheduled_change_applies_once_at_its_date(ctx_factory, world, clock) -> None:  # type: ignore[no-untyped-def]
    body = ScheduledChangeCreate(
        effective_date=day("2026-02-01"), plan_id=world["plans"]["Better"], quantity=2, status="disabled"
    )
    async with ctx_factory() as ctx:
        change = await changes.schedule_change(ctx, world["service"], body)
    assert await run_due(ctx_factory) == []  # not yet
    clock.set(datetime(2026, 1, 31, 10, 59, tzinfo=UTC))  # 23:59 on the 31st in Auckland
    assert await run_due(ctx_factory) == []
    clock.set(datetime(2026, 1, 31, 11, 0, tzinfo=UTC))  # midnight: the 1st has begun there
    assert await run_due(ctx_factory) == [change.id]
    assert await run_due(ctx_factory) == []
    async with ctx_factory() as ctx:
        service = await load(ctx, world["service"])
        assert (service.plan_id, service.quantity, service.status, service.status_reason) == (
            world["plans"]["Better"], 2, "disabled", "scheduled",
        )  # fmt: skip
        row = await scheduled(ctx, change.id)
        assert row.state == "applied" and "status disabled" in row.outcome
        plan_changes = list((await ctx.session.execute(select(ServicePlanChange))).scalars())
        # On the period boundary: nothing to prorate.
        assert [(p.credit_amount, p.charge_amount, p.to_price_amount) for p in plan_changes] == [
            (0, 0, 12400)
        ]
        # Cancelling what was applied is a conflict.
    with pytest.raises(Conflict):
        async with ctx_factory() as ctx:
            await changes.cancel_scheduled(ctx, world["service"], change.id)


async def test_two_concurrent_runs_apply_a_change_once(db, clock, tenant, world) -> None:  # type: ignore[no-untyped-def]
    async with db.transaction() as session:
        ctx = Ctx(session=session, clock=clock, actor=tenant.actor())
        body = ScheduledChangeCreate(effective_date=day("2026-01-20"), quantity=3)
        change = await changes.schedule_change(ctx, world["service"], body)
    clock.advance(timedelta(days=10))

    async def one_run() -> list[int]:
        async with db.transaction() as session:
            ctx = Ctx(session=session, clock=clock, actor=tenant.actor())
            batch = await changes.apply_due_changes(ctx)
            await asyncio.sleep(0.05)  # hold the claim while the other run tries
            return batch.applied

    results = await asyncio.gather(one_run(), one_run())
    assert sorted(results, key=len) == [[], [change.id]]
    async with db.transaction() as session:
        plan_changes = list((await session.execute(select(ServicePlanChange))).scalars())
        assert len(plan_changes) == 1 and plan_changes[0].to_price_amount == 9000


async def test_cancelled_changes_never_apply(ctx_factory, world, clock) -> None:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        change = await changes.schedule_change(
            ctx, world["service"], ScheduledChangeCreate(effective_date=day("2026-01-20"), status="stopped")
        )
        cancelled = await changes.cancel_scheduled(ctx, world["service"], change.id)
        assert cancelled.state == "cancelled" and cancelled.cancelled_at == clock.now()
    with pytest.raises(Conflict):
        async with ctx_factory() as ctx:
            await changes.cancel_scheduled(ctx, world["service"], change.id)
    clock.advance(timedelta(days=10))
    assert await run_due(ctx_factory) == []
    async with ctx_factory() as ctx:
        assert await state(ctx, world["service"]) == ("active", "manual")


async def test_a_scheduled_activation_on_a_blocked_account_lands_stopped(ctx_factory, world, clock) -> None:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        from boughs.services import service as services
        from boughs.services.models import ServiceStatus

        await services.change_status(ctx, world["service"], ServiceStatus.disabled)
        change = await changes.schedule_change(
            ctx, world["service"], ScheduledChangeCreate(effective_date=day("2026-01-20"), status="active")
        )
        await accounts.suspend(ctx, world["account"])
    clock.advance(timedelta(days=10))
    assert await run_due(ctx_factory) == [change.id]
    async with ctx_factory() as ctx:
        assert await state(ctx, world["service"]) == ("stopped", "account")
        assert "account" in (await scheduled(ctx, change.id)).outcome
        await accounts.unsuspend(ctx, world["account"])
        assert await state(ctx, world["service"]) == ("active", "account")


def test_the_periodic_tasks_are_registered() -> None:
    registry.load_all()
    assert registry.PERIODIC["services.apply_scheduled_changes"].every == timedelta(minutes=1)
    assert "services.reset_data_caps" in registry.PERIODIC


# --- data caps -------------------------------------------------------------------------------


async def capped_service(ctx_factory, world, plan: str = "Capped") -> int:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        return await make_service(
            ctx, world["account"], world["plans"][plan], start_date=date(2026, 1, 10), login=f"cap-{plan}"
        )


async def test_cap_disables_until_the_next_period(ctx_factory, world, clock) -> None:  # type: ignore[no-untyped-def]
    sid = await capped_service(ctx_factory, world)
    async with ctx_factory() as ctx:
        assert await changes.cap_reached(ctx, await load(ctx, sid)) == "disabled"
        assert await changes.cap_reached(ctx, await load(ctx, sid)) == "unchanged"
        service = await load(ctx, sid)
        assert (service.status, service.status_reason) == ("disabled", "cap")
        # Midnight of 2026-02-10 in Auckland (UTC+13).
        assert service.cap_resets_at == datetime(2026, 2, 9, 11, 0, tzinfo=UTC)
    clock.set(datetime(2026, 2, 9, 10, 59, tzinfo=UTC))
    async with ctx_factory() as ctx:
        assert await lifecycle.reset_caps(ctx) == []
    clock.set(datetime(2026, 2, 9, 11, 0, tzinfo=UTC))
    async with ctx_factory() as ctx:
        assert await lifecycle.reset_caps(ctx) == [sid]
        service = await load(ctx, sid)
        assert (service.status, service.status_reason, service.cap_resets_at) == ("active", "cap_reset", None)


async def test_a_rollover_on_a_blocked_account_stops_instead(ctx_factory, world, clock) -> None:  # type: ignore[no-untyped-def]
    sid = await capped_service(ctx_factory, world)
    async with ctx_factory() as ctx:
        await changes.cap_reached(ctx, await load(ctx, sid))
        await accounts.suspend(ctx, world["account"])
        assert await state(ctx, sid) == ("disabled", "cap")  # a cap block is not the account's
    clock.set(datetime(2026, 2, 10, tzinfo=UTC))
    async with ctx_factory() as ctx:
        assert await lifecycle.reset_caps(ctx) == [sid]
        assert await state(ctx, sid) == ("stopped", "account")
        await accounts.unsuspend(ctx, world["account"])
        assert await state(ctx, sid) == ("active", "account")


async def test_top_up_lifts_the_cap(ctx_factory, world) -> None:  # type: ignore[no-untyped-def]
    sid = await capped_service(ctx_factory, world)
    async with ctx_factory() as ctx:
        await changes.cap_reached(ctx, await load(ctx, sid))
        top_up = await caps.add_top_up(ctx, sid, TopUpCreate(bytes=10**8))
        assert top_up.period_start == day("2026-01-10")
        service = await load(ctx, sid)
        assert (service.status, service.status_reason, service.cap_resets_at) == ("active", "top_up", None)
        assert [h[2] for h in await history(ctx, sid)] == ["manual", "cap", "top_up"]
        # A top-up of a service its cap does not hold only raises the cap.
        await caps.add_top_up(ctx, sid, TopUpCreate(bytes=1))
        assert [h[2] for h in await history(ctx, sid)] == ["manual", "cap", "top_up"]
    with pytest.raises(Conflict):
        async with ctx_factory() as ctx:
            await caps.add_top_up(ctx, world["service"], TopUpCreate(bytes=1))


async def test_a_throttling_cap_keeps_the_service_active(ctx_factory, world, clock) -> None:  # type: ignore[no-untyped-def]
    sid = await capped_service(ctx_factory, world, "Throttled")
    async with ctx_factory() as ctx:
        assert await changes.cap_reached(ctx, await load(ctx, sid)) == "throttled"
        service = await load(ctx, sid)
        assert (service.status, service.status_reason) == ("active", "manual")
        # Until midnight of 2026-02-10 in Auckland, when the next period begins.
        assert service.throttled_until == datetime(2026, 2, 9, 11, 0, tzinfo=UTC)
        actions = (
            await ctx.session.execute(select(AuditEvent.action).where(AuditEvent.entity_id == str(sid)))
        ).scalars()
        assert "cap_throttled" in list(actions)
    clock.set(datetime(2026, 2, 9, 11, 0, tzinfo=UTC))
    async with ctx_factory() as ctx:
        assert await lifecycle.reset_caps(ctx) == []  # nothing was disabled
        service = await load(ctx, sid)
        assert service.throttled_until is None and service.status == "active"


async def test_a_plan_without_a_cap_cannot_reach_one(ctx_factory, world) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Conflict):
        async with ctx_factory() as ctx:
            await changes.cap_reached(ctx, await load(ctx, world["service"]))
