"""Plan changes now or on a date, and data caps (seed 004).

A plan, price or quantity change records a ServicePlanChange with the proration it
implies for the period the change falls in: the credit is the unused part of the old
amount, the charge the remaining part of the new one, by days, each rounded once. A
change on a period boundary prorates nothing: the whole period is billed at the new
amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import Field

from boughs.accounts.models import Account
from boughs.audit import service as audit
from boughs.authz.permissions import Permission
from boughs.authz.scope import require, scope_of
from boughs.catalog import service as catalog
from boughs.catalog.models import CapAction, Plan
from boughs.context import Ctx
from boughs.kit.errors import Conflict, FieldProblem, InvalidInput, NotFound
from boughs.kit.money import round_half_up
from boughs.kit.pagination import PageOf, check_limit, id_cursor, page_of
from boughs.kit.periods import Period
from boughs.kit.schema import Input, Output
from boughs.services import lifecycle, repository
from boughs.services import service as services
from boughs.services.models import (
    ScheduledChangeState,
    Service,
    ServicePlanChange,
    ServiceScheduledChange,
    ServiceStatus,
    StatusReason,
)

ENTITY = "service"
MAX_AMOUNT = 2**62
MAX_QUANTITY = 1_000_000


class SchedulableStatus(StrEnum):
    active = "active"
    disabled = "disabled"
    stopped = "stopped"
    archived = "archived"


class ChangePlanRequest(Input):
    plan_id: int
    # Minor units of the plan's currency; null or left out: the new plan's price.
    unit_price_amount: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)


class ScheduledChangeCreate(Input):
    """At least one change. ``unit_price_amount: null`` (given) clears the price override."""

    effective_date: date
    plan_id: int | None = None
    unit_price_amount: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    quantity: int | None = Field(default=None, ge=1, le=MAX_QUANTITY)
    status: SchedulableStatus | None = None


class ScheduledChangeOut(Output):
    id: int
    service_id: int
    effective_date: date
    plan_id: int | None
    unit_price_amount: int | None
    sets_unit_price: bool
    quantity: int | None
    status: str | None
    state: str
    outcome: str
    created_by_user_id: int | None
    created_at: datetime
    applied_at: datetime | None
    cancelled_at: datetime | None


class PlanChangeOut(Output):
    id: int
    service_id: int
    effective_date: date
    from_plan_id: int
    to_plan_id: int
    from_price_amount: int
    to_price_amount: int
    currency: str
    period_start: date
    period_end: date
    credit_amount: int
    charge_amount: int
    details: dict[str, Any]
    changed_by_user_id: int | None
    created_at: datetime


# --- reaching a service -------------------------------------------------------------------


async def writable(ctx: Ctx, service_id: int, doing: str) -> tuple[Service, Account]:
    """A service in the actor's scope (404 otherwise) that the actor may manage (403)."""
    found = await repository.get(ctx.session, await scope_of(ctx), service_id)
    if found is None:
        raise services.not_found(service_id)
    service, account = found
    await require(ctx, account.path, Permission.manage_services, doing)
    return service, account


def _not_archived(service: Service, doing: str) -> None:
    if service.status == ServiceStatus.archived.value:
        raise Conflict(
            detail=f"Service {service.id} is archived; archived services only keep their history.",
            fix=f"set it to another status first if you need to {doing}",
        )


# --- proration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proration:
    period_start: date
    period_end: date
    credit_amount: int
    charge_amount: int
    details: dict[str, Any]


def _share(amount: int, start: date, end: date, day: date) -> Decimal:
    """The part of ``amount`` from ``day`` to the end of its period [start, end)."""
    return Decimal(amount) * Decimal((end - day).days) / Decimal((end - start).days)


def prorate(
    start_date: date, old_period: Period, new_period: Period, day: date, old_amount: int, new_amount: int
) -> Proration:
    """Credit and charge for a change on ``day`` of a service that started on ``start_date``.

    The credit runs over the old pay period that holds the day, the charge over the new
    one (they differ when the new plan bills by another period). Nothing before the
    service starts, and nothing on a boundary.
    """
    old_start, old_end = lifecycle.period_containing(start_date, old_period, day)
    new_start, new_end = lifecycle.period_containing(start_date, new_period, day)
    started = day > start_date
    credit = round_half_up(_share(old_amount, old_start, old_end, day)) if started and day != old_start else 0
    charge = round_half_up(_share(new_amount, new_start, new_end, day)) if started and day != new_start else 0
    details = {
        "days_remaining": (old_end - day).days if started else 0,
        "days_in_period": (old_end - old_start).days,
        "new_period_start": new_start.isoformat(),
        "new_period_end": new_end.isoformat(),
    }
    return Proration(old_start, old_end, credit, charge, details)


@dataclass(frozen=True)
class Terms:
    plan: Plan
    unit_price_amount: int | None  # the override; None: the plan's price
    quantity: int

    @property
    def unit_price(self) -> int:
        return self.plan.price_amount if self.unit_price_amount is None else self.unit_price_amount

    @property
    def amount(self) -> int:
        return self.unit_price * self.quantity

    def pay_period(self, service: Service) -> Period:
        return Period(service.pay_period or self.plan.pay_period)


def _check_currency(old: Plan, new: Plan, field: str) -> None:
    if old.currency != new.currency:
        raise InvalidInput.on_field(
            field,
            f"plan {new.id} ({new.name}) is priced in {new.currency}, the service in {old.currency}",
            f"choose a plan priced in {old.currency}, or end this service and add a new one",
        )


async def _change_terms(
    ctx: Ctx, service: Service, old: Terms, new: Terms, day: date
) -> ServicePlanChange | None:
    """Put the service on the new terms; record the proration when what it costs changes."""
    service.plan_id, service.unit_price_amount, service.quantity = (
        new.plan.id,
        new.unit_price_amount,
        new.quantity,
    )
    service.updated_at = ctx.now()
    if old.plan.id == new.plan.id and old.amount == new.amount:
        return None
    old_period, new_period = old.pay_period(service), new.pay_period(service)
    proration = prorate(service.start_date, old_period, new_period, day, old.amount, new.amount)
    row = ServicePlanChange(
        provider_id=service.provider_id,
        service_id=service.id,
        effective_date=day,
        from_plan_id=old.plan.id,
        to_plan_id=new.plan.id,
        from_price_amount=old.amount,
        to_price_amount=new.amount,
        currency=new.plan.currency,
        period_start=proration.period_start,
        period_end=proration.period_end,
        credit_amount=proration.credit_amount,
        charge_amount=proration.charge_amount,
        details={
            **proration.details,
            "from_unit_price_amount": old.unit_price,
            "to_unit_price_amount": new.unit_price,
            "from_quantity": old.quantity,
            "to_quantity": new.quantity,
            "from_pay_period": old_period.value,
            "to_pay_period": new_period.value,
        },
        changed_by_user_id=ctx.actor.user_id,
        created_at=ctx.now(),
    )
    ctx.session.add(row)
    await ctx.session.flush()
    return row


def _terms_of(service: Service, plan: Plan) -> Terms:
    return Terms(plan, service.unit_price_amount, service.quantity)


# --- change plan now ------------------------------------------------------------------------


async def change_plan(
    ctx: Ctx, service_id: int, data: ChangePlanRequest
) -> tuple[Service, ServicePlanChange]:
    service, account = await writable(ctx, service_id, "change this service's plan")
    _not_archived(service, "change its plan")
    new_plan = await catalog.plan_for_account(ctx, account, data.plan_id, "plan_id")
    old_plan = await catalog.get_plan(ctx, service.plan_id)
    _check_currency(old_plan, new_plan, "plan_id")
    old = _terms_of(service, old_plan)
    new = Terms(new_plan, data.unit_price_amount, service.quantity)
    if new.plan.id == old.plan.id and new.unit_price_amount == old.unit_price_amount:
        raise InvalidInput.on_field(
            "plan_id",
            f"plan {new_plan.id} at this price is already the plan of service {service.id}",
            "choose another plan, or give another unit_price_amount",
        )
    today = (await lifecycle.where_is(ctx, service)).today(ctx.now())
    change = await _change_terms(ctx, service, old, new, today)
    if change is None:  # same plan, another override that costs the same: still a record
        change = await _record_unpriced(ctx, service, old, new, today)
    await audit.record(
        ctx, entity=ENTITY, entity_id=service.id, action="plan_changed", account_id=service.account_id,
        before={"plan_id": old.plan.id, "unit_price_amount": old.unit_price_amount},
        after={
            "plan_id": new.plan.id, "unit_price_amount": new.unit_price_amount,
            "plan_change_id": change.id, "credit_amount": change.credit_amount,
            "charge_amount": change.charge_amount,
        },
    )  # fmt: skip
    return service, change


async def _record_unpriced(
    ctx: Ctx, service: Service, old: Terms, new: Terms, day: date
) -> ServicePlanChange:
    period = old.pay_period(service)
    start, end = lifecycle.period_containing(service.start_date, period, day)
    row = ServicePlanChange(
        provider_id=service.provider_id, service_id=service.id, effective_date=day,
        from_plan_id=old.plan.id, to_plan_id=new.plan.id, from_price_amount=old.amount,
        to_price_amount=new.amount, currency=new.plan.currency, period_start=start, period_end=end,
        credit_amount=0, charge_amount=0, details={"unchanged_amount": True},
        changed_by_user_id=ctx.actor.user_id, created_at=ctx.now(),
    )  # fmt: skip
    ctx.session.add(row)
    await ctx.session.flush()
    return row


# --- scheduled changes ----------------------------------------------------------------------


def _nothing_to_change() -> InvalidInput:
    fix = "give at least one of plan_id, unit_price_amount, quantity or status"
    fields = ("plan_id", "unit_price_amount", "quantity", "status")
    return InvalidInput(
        detail="A scheduled change must change something.",
        fix=fix,
        errors=[FieldProblem(name, "nothing to change", fix) for name in fields],
    )


async def schedule_change(ctx: Ctx, service_id: int, data: ScheduledChangeCreate) -> ServiceScheduledChange:
    service, account = await writable(ctx, service_id, "schedule changes to this service")
    _not_archived(service, "schedule changes")
    sets_price = "unit_price_amount" in data.model_fields_set
    if data.plan_id is None and not sets_price and data.quantity is None and data.status is None:
        raise _nothing_to_change()
    where = await lifecycle.where_is(ctx, service)
    today = where.today(ctx.now())
    if data.effective_date < today:
        raise InvalidInput.on_field(
            "effective_date",
            f"{data.effective_date.isoformat()} is in the past "
            f"(today is {today.isoformat()} in {where.timezone})",
            "give today or a later date; to change the plan now, POST .../change-plan",
        )
    if data.plan_id is not None:
        plan = await catalog.plan_for_account(ctx, account, data.plan_id, "plan_id")
        _check_currency(await catalog.get_plan(ctx, service.plan_id), plan, "plan_id")
    change = ServiceScheduledChange(
        provider_id=service.provider_id,
        service_id=service.id,
        effective_date=data.effective_date,
        plan_id=data.plan_id,
        unit_price_amount=data.unit_price_amount,
        sets_unit_price=sets_price,
        quantity=data.quantity,
        status=data.status.value if data.status else None,
        state=ScheduledChangeState.pending.value,
        outcome="",
        created_by_user_id=ctx.actor.user_id,
        created_at=ctx.now(),
    )
    ctx.session.add(change)
    await ctx.session.flush()
    await audit.record(
        ctx, entity=ENTITY, entity_id=service.id, action="change_scheduled", account_id=service.account_id,
        after={"scheduled_change_id": change.id, **_what(change)},
    )  # fmt: skip
    return change


def _what(change: ServiceScheduledChange) -> dict[str, Any]:
    what: dict[str, Any] = {"effective_date": change.effective_date}
    if change.plan_id is not None:
        what["plan_id"] = change.plan_id
    if change.sets_unit_price:
        what["unit_price_amount"] = change.unit_price_amount
    if change.quantity is not None:
        what["quantity"] = change.quantity
    if change.status is not None:
        what["status"] = change.status
    return what


async def list_scheduled(
    ctx: Ctx, service_id: int, cursor: str | None, limit: int
) -> PageOf[ServiceScheduledChange]:
    """Every scheduled change of the service, pending or not, oldest first."""
    check_limit(limit)
    service = await services.get(ctx, service_id)
    after = id_cursor(cursor)
    rows = await repository.scheduled_changes_of(ctx.session, ctx.provider_id, service.id, after, limit + 1)
    return page_of(rows, limit)


async def cancel_scheduled(ctx: Ctx, service_id: int, change_id: int) -> ServiceScheduledChange:
    service, _ = await writable(ctx, service_id, "cancel scheduled changes of this service")
    change = await repository.get_scheduled_change(ctx.session, ctx.provider_id, service.id, change_id)
    if change is None:
        raise NotFound(
            detail=f"Service {service.id} has no scheduled change {change_id}.",
            fix=f"GET /api/v1/services/{service.id}/scheduled-changes lists them",
        )
    # Compare-and-set, so the scheduler and a cancel cannot both win.
    if not await repository.move_scheduled_change_state(
        ctx.session, change.id, ScheduledChangeState.cancelled, ctx.now()
    ):
        await ctx.session.refresh(change)
        raise Conflict(
            detail=f"Scheduled change {change.id} is {change.state}; only a pending change can be cancelled.",
            fix="schedule another change to undo it" if change.state == "applied" else "nothing to do",
        )
    await ctx.session.refresh(change)
    await audit.record(
        ctx, entity=ENTITY, entity_id=service.id, action="scheduled_change_cancelled",
        account_id=service.account_id, before={"scheduled_change_id": change.id, **_what(change)},
    )  # fmt: skip
    return change


@dataclass
class DueBatch:
    applied: list[int]
    # Where the next batch starts: (effective_date, id) of the last change looked at.
    after: tuple[date, int] | None
    more: bool


async def apply_due_changes(ctx: Ctx, after: tuple[date, int] | None = None, limit: int = 200) -> DueBatch:
    """Apply the pending changes due today or before, each in its account's timezone, once.

    Local dates run at most a day ahead of UTC, so later changes are not even read.
    """
    horizon = ctx.now().date() + timedelta(days=1)
    changes = await repository.pending_changes_due_by(ctx.session, ctx.provider_id, horizon, after, limit)
    applied: list[int] = []
    for change in changes:
        service = await repository.service_by_id(ctx.session, ctx.provider_id, change.service_id)
        where = await lifecycle.where_is(ctx, service)
        if change.effective_date > where.today(ctx.now()):
            continue
        if not await repository.move_scheduled_change_state(
            ctx.session, change.id, ScheduledChangeState.applied, ctx.now()
        ):
            continue  # another run applied or a user cancelled it meanwhile
        await ctx.session.refresh(change)
        change.outcome = await _apply_change(ctx, service, change)
        applied.append(change.id)
    last = (changes[-1].effective_date, changes[-1].id) if changes else after
    return DueBatch(applied, last, len(changes) == limit)


async def _apply_change(ctx: Ctx, service: Service, change: ServiceScheduledChange) -> str:
    outcome: list[str] = []
    before = {"plan_id": service.plan_id, "unit_price_amount": service.unit_price_amount,
              "quantity": service.quantity, "status": service.status}  # fmt: skip
    if change.plan_id is not None or change.sets_unit_price or change.quantity is not None:
        old_plan = await catalog.get_plan(ctx, service.plan_id)
        new_plan = old_plan if change.plan_id is None else await catalog.get_plan(ctx, change.plan_id)
        if new_plan.currency != old_plan.currency:
            outcome.append(f"plan not changed: plan {new_plan.id} is now priced in {new_plan.currency}")
            new_plan = old_plan
        if change.sets_unit_price:
            price = change.unit_price_amount
        else:  # a new plan brings its own price; otherwise the override stays
            price = None if new_plan.id != old_plan.id else service.unit_price_amount
        quantity = change.quantity if change.quantity is not None else service.quantity
        new = Terms(new_plan, price, quantity)
        plan_change = await _change_terms(
            ctx, service, _terms_of(service, old_plan), new, change.effective_date
        )
        outcome.append(f"plan {new_plan.id}, unit price {new.unit_price}, quantity {quantity}")
        if plan_change is not None:
            outcome.append(
                f"plan change {plan_change.id}: credit {plan_change.credit_amount}, "
                f"charge {plan_change.charge_amount}"
            )
    if change.status is not None:
        await lifecycle.set_status(
            ctx, service, change.status, StatusReason.scheduled.value, f"scheduled change {change.id}"
        )
        landed = f"status {service.status}"
        if service.status != change.status:
            landed += f" ({service.status_reason}: the account is blocked)"
        outcome.append(landed)
    text = "; ".join(outcome)
    await audit.record(
        ctx, entity=ENTITY, entity_id=service.id, action="scheduled_change_applied",
        account_id=service.account_id, before=before,
        after={"scheduled_change_id": change.id, "plan_id": service.plan_id,
               "unit_price_amount": service.unit_price_amount, "quantity": service.quantity,
               "status": service.status, "outcome": text},
    )  # fmt: skip
    return text


# --- data caps ------------------------------------------------------------------------------


def require_cap(service: Service, plan: Plan) -> None:
    if plan.cap_action is None or plan.data_cap_bytes is None:
        raise Conflict(
            detail=f"Service {service.id}'s plan {plan.id} ({plan.name}) has no data cap.",
            fix="only services on a plan with data_cap_bytes and cap_action have a data cap; "
            "change the service's plan to one that has",
        )


async def cap_reached(ctx: Ctx, service: Service) -> str:
    """The service used its data cap for this period (reported by an outside system).

    What happens is the plan's cap action until the start of the service's next period:
    see ``apply_cap_action``. Returns disabled, throttled or unchanged.
    """
    plan = await catalog.get_plan(ctx, service.plan_id)
    require_cap(service, plan)
    where = await lifecycle.where_is(ctx, service)
    period = Period(service.pay_period or plan.pay_period)
    _, next_start = lifecycle.period_containing(service.start_date, period, where.today(ctx.now()))
    return await apply_cap_action(
        ctx, service, plan, next_start, where.timezone, f"data cap of {plan.data_cap_bytes} bytes reached"
    )


async def apply_cap_action(
    ctx: Ctx, service: Service, plan: Plan, back_on: date, timezone: str, why: str
) -> str:
    """Apply ``plan``'s cap action to the service until ``back_on`` (a local date) begins.

    ``disable``: disabled (cap) until then, or a top-up. ``throttle``: it stays active,
    held to the plan's throttle rates until then (``throttled_until``; the network applies
    the rates). A service that is not active is left as it is (late usage of a service
    already disabled or stopped changes nothing), except that a service a cap already
    disabled stays disabled until the later of the two resets. Returns disabled, throttled
    or unchanged.
    """
    until = lifecycle.local_midnight(back_on, timezone)
    if service.status != ServiceStatus.active.value:
        if (
            plan.cap_action == CapAction.disable.value
            and service.status_reason == StatusReason.cap.value
            and service.cap_resets_at is not None
            and service.cap_resets_at < until
        ):
            service.cap_resets_at = until
            await ctx.session.flush()
        return "unchanged"
    if plan.cap_action == CapAction.throttle.value:
        if service.throttled_until is None or service.throttled_until < until:
            before = service.throttled_until
            service.throttled_until = until
            service.updated_at = ctx.now()
            await audit.record(
                ctx, entity=ENTITY, entity_id=service.id, action="cap_throttled",
                account_id=service.account_id, before={"throttled_until": before},
                after={"throttled_until": until, "reason": why, "data_cap_bytes": plan.data_cap_bytes,
                       "download_rate": plan.throttle_download_rate,
                       "upload_rate": plan.throttle_upload_rate},
            )  # fmt: skip
            await ctx.session.flush()
        return "throttled"
    note = f"{why}; back on {back_on.isoformat()}"
    await lifecycle.set_status(ctx, service, ServiceStatus.disabled.value, StatusReason.cap.value, note)
    service.cap_resets_at = until
    await ctx.session.flush()
    return "disabled"


def is_throttled(service: Service, now: datetime) -> bool:
    """Held to its plan's throttle rates: a throttle ends by itself at ``throttled_until``."""
    return service.throttled_until is not None and service.throttled_until > now


def held_by_cap(service: Service, now: datetime) -> bool:
    """Disabled or throttled by a data cap right now."""
    cap_disabled = (service.status, service.status_reason) == (
        ServiceStatus.disabled.value,
        StatusReason.cap.value,
    )
    return cap_disabled or is_throttled(service, now)


async def lift_cap(ctx: Ctx, service: Service, note: str) -> bool:
    """A service its data cap disabled comes back (stopped, if its account is blocked), and a
    throttle ends. False when the cap was not holding it."""
    if not held_by_cap(service, ctx.now()):
        return False
    if is_throttled(service, ctx.now()):
        before = service.throttled_until
        service.throttled_until = None
        service.updated_at = ctx.now()
        await audit.record(
            ctx, entity=ENTITY, entity_id=service.id, action="throttle_lifted",
            account_id=service.account_id, before={"throttled_until": before},
            after={"throttled_until": None, "note": note},
        )  # fmt: skip
    if service.status == ServiceStatus.disabled.value and service.status_reason == StatusReason.cap.value:
        await lifecycle.set_status(ctx, service, ServiceStatus.active.value, StatusReason.top_up.value, note)
    await ctx.session.flush()
    return True
