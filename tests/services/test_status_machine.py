"""Random histories of account and service operations keep every service's status what the rules say.

A Hypothesis state machine suspends, unsuspends, cancels, expires, renews and moves accounts
of a small tree; changes service statuses by hand, changes plans now or on a date, runs the
periodic tasks with the clock moved on, reaches data caps and tops them up. Its model keeps
each service's (status, reason) by applying the rules of seed 004 naively, written here from
scratch: blocked accounts are found by walking parent_id over the stored account rows.
After every step the database must equal the model.
"""

from __future__ import annotations

import calendar
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import select

from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.accounts.schemas import AccountUpdate, RenewRequest
from boughs.auth.actor import Actor
from boughs.context import Ctx
from boughs.kit.errors import BoughsError, Conflict, InvalidInput
from boughs.providers.models import Provider
from boughs.services import changes, lifecycle
from boughs.services import service as services
from boughs.services.changes import ChangePlanRequest, ScheduledChangeCreate
from boughs.services.models import Service, ServiceScheduledChange, ServiceStatus
from boughs.usage import caps
from boughs.usage.models import TopUp
from boughs.usage.schemas import TopUpCreate
from tests.accounts.test_tree_invariants import Runner
from tests.conftest import START
from tests.services.lifecycle_support import make_account, make_plan, make_service

T = TypeVar("T")

EXAMPLES = int(os.environ.get("BOUGHS_SERVICE_EXAMPLES", "12"))
# Root → A → A1, Root → B, and Other at top level.
TREE = {"Root": None, "A": "Root", "A1": "A", "B": "Root", "Other": None}
MANUAL = {
    "pending": {"active", "disabled", "stopped", "archived"},
    "active": {"disabled", "stopped", "archived"},
    "disabled": {"active", "stopped", "archived"},
    "stopped": {"active", "disabled", "archived"},
    "archived": {"active", "disabled", "stopped"},
}
# name → (kind, pay period, cap action)
PLANS = {"Capped": ("month", "disable"), "Throttled": ("week", "throttle"), "Plain": ("month", None)}
STARTS = [date(2026, 1, 1), date(2026, 1, 10), date(2025, 12, 31)]


def add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def next_period_start(start: date, pay_period: str, today: date) -> date:
    """Walk the periods from the start until one begins after today."""
    n = 1
    while True:
        boundary = start + timedelta(days=7 * n) if pay_period == "week" else add_months(start, n)
        if boundary > today:
            return boundary
        n += 1


@dataclass
class Model:
    account_id: int
    plan: str
    start: date
    status: str
    reason: str
    quantity: int = 1
    waits_on: int | None = None
    cap_resets_at: datetime | None = None


@dataclass
class Pending:
    service: int
    effective_date: date
    what: dict[str, Any]
    state: str = "pending"


class ServiceStatusMachine(RuleBasedStateMachine):
    def __init__(self, runner: Runner) -> None:
        super().__init__()
        self.runner = runner
        runner.wipe()
        self.clock_now = START
        self.actor: Actor | None = None
        self.accounts: dict[str, int] = {}
        self.plans: dict[str, int] = {}
        self.services: dict[int, Model] = {}
        self.changes: dict[int, Pending] = {}

    # --- plumbing ---------------------------------------------------------------------------

    class _Clock:
        def __init__(self, machine: ServiceStatusMachine) -> None:
            self.machine = machine

        def now(self) -> datetime:
            return self.machine.clock_now

    def call(self, work: Callable[[Ctx], Awaitable[T]]) -> T:
        actor = self.actor
        assert actor is not None

        async def unit() -> T:
            async with self.runner.db.transaction() as session:
                return await work(Ctx(session=session, clock=self._Clock(self), actor=actor))

        return self.runner.run(unit())

    def attempt(self, work: Callable[[Ctx], Awaitable[Any]]) -> BoughsError | None:
        try:
            self.call(work)
        except BoughsError as error:
            return error
        return None

    def today(self) -> date:
        return self.clock_now.date()  # the provider is in UTC and no account has a timezone

    # --- the naive rules --------------------------------------------------------------------

    def stored_accounts(self) -> dict[int, tuple[int | None, str]]:
        async def read(ctx: Ctx) -> dict[int, tuple[int | None, str]]:
            rows = await ctx.session.execute(
                select(Account.id, Account.parent_id, Account.status).where(
                    Account.provider_id == ctx.provider_id
                )
            )
            return {r[0]: (r[1], r[2]) for r in rows.all()}

        return self.call(read)

    def blocked(self, account_id: int, stored: dict[int, tuple[int | None, str]]) -> bool:
        parent, status = stored[account_id]
        if status != "active":
            return True
        while parent is not None:
            parent, status = stored[parent]
            if status in ("suspended", "cancelled"):
                return True
        return False

    def become(self, sid: int, status: str, reason: str, stored: dict[int, tuple[int | None, str]]) -> None:
        """A status change with the rules it sets off: the block, the cap reset, the waiters."""
        model = self.services[sid]
        if status == "active" and self.blocked(model.account_id, stored):
            status, reason = "stopped", "account"
        if (model.status, model.reason) == ("disabled", "cap") and (status, reason) != ("disabled", "cap"):
            model.cap_resets_at = None
        model.status, model.reason = status, reason
        if status == "active":
            for other, waiter in sorted(self.services.items()):
                if waiter.status == "pending" and waiter.waits_on == sid:
                    self.become(other, "active", "activated_with", stored)

    def follow_accounts(self) -> None:
        stored = self.stored_accounts()
        for sid, model in sorted(self.services.items()):
            blocked = self.blocked(model.account_id, stored)
            if blocked and model.status == "active":
                self.become(sid, "stopped", "account", stored)
            elif not blocked and (model.status, model.reason) == ("stopped", "account"):
                self.become(sid, "active", "account", stored)

    # --- set-up -----------------------------------------------------------------------------

    @initialize(layout=st.lists(st.sampled_from(["active", "stopped", "pending"]), min_size=3, max_size=3))
    def make_world(self, layout: list[str]) -> None:
        async def make_provider() -> int:
            async with self.runner.db.transaction() as session:
                provider = Provider(
                    name="Machine ISP", default_timezone="UTC", default_currency="USD",
                    created_at=START, updated_at=START,
                )  # fmt: skip
                session.add(provider)
                await session.flush()
                return provider.id

        self.actor = Actor.system(self.runner.run(make_provider()), "hypothesis")

        async def make(ctx: Ctx) -> None:
            for name, (period, action) in PLANS.items():
                cap = {"kind": "internet", "data_cap_bytes": 10**9, "cap_action": action} if action else {}
                self.plans[name] = (await make_plan(ctx, name, 3000, pay_period=period, **cap)).id
            for name, parent in TREE.items():
                parent_id = self.accounts[parent] if parent else None
                self.accounts[name] = await make_account(ctx, name, parent_id)
            plan_names = sorted(PLANS)
            for n, name in enumerate(TREE):
                account_id = self.accounts[name]
                previous: int | None = None
                for i, status in enumerate(layout):
                    plan = plan_names[(n + i) % len(plan_names)]
                    start = STARTS[(n + i) % len(STARTS)]
                    waits = previous if status == "pending" and previous is not None else None
                    status = "stopped" if status == "pending" and waits is None else status
                    sid = await make_service(
                        ctx, account_id, self.plans[plan], status=status, start_date=start,
                        waits_on_service_id=waits,
                    )  # fmt: skip
                    reason = "waiting" if status == "pending" else "manual"
                    self.services[sid] = Model(account_id, plan, start, status, reason, waits_on=waits)
                    if status == "pending" and self.services[waits].status == "active":  # type: ignore[index]
                        self.services[sid].status, self.services[sid].reason = "active", "activated_with"
                    previous = sid

        self.call(make)

    def pick_account(self, data: st.DataObject) -> int:
        return self.accounts[data.draw(st.sampled_from(sorted(self.accounts)), label="account")]

    def pick_service(self, data: st.DataObject) -> int:
        return data.draw(st.sampled_from(sorted(self.services)), label="service")

    # --- accounts ---------------------------------------------------------------------------

    @rule(data=st.data(), action=st.sampled_from(["suspend", "unsuspend", "cancel"]))
    def change_account_status(self, data: st.DataObject, action: str) -> None:
        account_id = self.pick_account(data)
        do = getattr(accounts, action)
        self.attempt(lambda ctx: do(ctx, account_id))
        self.follow_accounts()

    @rule(data=st.data(), in_days=st.one_of(st.none(), st.integers(min_value=-2, max_value=5)))
    def set_expiry(self, data: st.DataObject, in_days: int | None) -> None:
        account_id = self.pick_account(data)
        expiry = None if in_days is None else self.today() + timedelta(days=in_days)
        self.attempt(lambda ctx: accounts.update(ctx, account_id, AccountUpdate(expiry_date=expiry)))
        self.follow_accounts()

    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        account_id = self.pick_account(data)
        self.attempt(lambda ctx: accounts.renew(ctx, account_id, RenewRequest(period="month")))
        self.follow_accounts()

    @rule()
    def sweep(self) -> None:
        self.call(accounts.sweep_expired)
        self.follow_accounts()

    @rule(data=st.data(), top_level=st.booleans())
    def move(self, data: st.DataObject, top_level: bool) -> None:
        account_id = self.pick_account(data)
        target = None if top_level else self.pick_account(data)
        error = self.attempt(lambda ctx: accounts.move(ctx, account_id, target))
        assert error is None or isinstance(error, InvalidInput)
        self.follow_accounts()

    # --- services ---------------------------------------------------------------------------

    @rule(data=st.data(), status=st.sampled_from([s.value for s in ServiceStatus]))
    def manual_status(self, data: st.DataObject, status: str) -> None:
        sid = self.pick_service(data)
        model = self.services[sid]
        error = self.attempt(lambda ctx: services.change_status(ctx, sid, ServiceStatus(status)))
        refused = (
            status == "pending"
            or (model.status == status and model.reason == "manual")
            or (model.status != status and status not in MANUAL[model.status])
        )
        assert isinstance(error, Conflict) if refused else error is None, (status, model, error)
        if not refused:
            self.become(sid, status, "manual", self.stored_accounts())

    @rule(data=st.data(), plan=st.sampled_from(sorted(PLANS)))
    def change_plan(self, data: st.DataObject, plan: str) -> None:
        sid = self.pick_service(data)
        model = self.services[sid]
        body = ChangePlanRequest(plan_id=self.plans[plan])
        error = self.attempt(lambda ctx: changes.change_plan(ctx, sid, body))
        if model.status == "archived":
            assert isinstance(error, Conflict)
        elif model.plan == plan:
            assert isinstance(error, InvalidInput)
        else:
            assert error is None, error
            model.plan = plan

    @rule(
        data=st.data(),
        in_days=st.integers(min_value=-1, max_value=12),
        what=st.one_of(
            st.fixed_dictionaries({"status": st.sampled_from(["active", "disabled", "stopped", "archived"])}),
            st.fixed_dictionaries({"plan": st.sampled_from(sorted(PLANS))}),
            st.fixed_dictionaries({"quantity": st.integers(min_value=1, max_value=3)}),
        ),
    )
    def schedule(self, data: st.DataObject, in_days: int, what: dict[str, Any]) -> None:
        sid = self.pick_service(data)
        effective = self.today() + timedelta(days=in_days)
        fields = {"plan_id": self.plans[what["plan"]]} if "plan" in what else what
        body = ScheduledChangeCreate(effective_date=effective, **fields)
        try:
            change = self.call(lambda ctx: changes.schedule_change(ctx, sid, body))
        except BoughsError as error:
            expected = Conflict if self.services[sid].status == "archived" else InvalidInput
            assert isinstance(error, expected) and (expected is Conflict or in_days < 0), error
            return
        assert self.services[sid].status != "archived" and in_days >= 0
        self.changes[change.id] = Pending(sid, effective, what)

    @rule(data=st.data())
    def cancel_scheduled(self, data: st.DataObject) -> None:
        if not self.changes:
            return
        change_id = data.draw(st.sampled_from(sorted(self.changes)), label="change")
        change = self.changes[change_id]
        error = self.attempt(lambda ctx: changes.cancel_scheduled(ctx, change.service, change_id))
        if change.state == "pending":
            assert error is None, error
            change.state = "cancelled"
        else:
            assert isinstance(error, Conflict)

    @rule(data=st.data())
    def cap_reached(self, data: st.DataObject) -> None:
        sid = self.pick_service(data)
        model = self.services[sid]

        async def reach(ctx: Ctx) -> str:
            return await changes.cap_reached(ctx, await self.load(ctx, sid))

        try:
            outcome = self.call(reach)
        except Conflict:
            assert PLANS[model.plan][1] is None
            return
        action = PLANS[model.plan][1]
        assert action is not None
        if model.status != "active":
            assert outcome == "unchanged"
        elif action == "throttle":
            assert outcome == "throttled"
        else:
            assert outcome == "disabled"
            self.become(sid, "disabled", "cap", self.stored_accounts())
            boundary = next_period_start(model.start, PLANS[model.plan][0], self.today())
            model.cap_resets_at = datetime(boundary.year, boundary.month, boundary.day, tzinfo=UTC)

    @rule(data=st.data())
    def top_up(self, data: st.DataObject) -> None:
        sid = self.pick_service(data)
        model = self.services[sid]

        async def top(ctx: Ctx) -> TopUp:
            return await caps.add_top_up(ctx, sid, TopUpCreate(bytes=1000))

        error = self.attempt(top)
        if model.status == "archived" or PLANS[model.plan][1] is None:
            assert isinstance(error, Conflict)
            return
        assert error is None, error
        # Nothing was used, so the raised cap is not reached: a cap-disabled service returns.
        if (model.status, model.reason) == ("disabled", "cap"):
            self.become(sid, "active", "top_up", self.stored_accounts())

    @rule(hours=st.integers(min_value=1, max_value=24 * 12))
    def run_tasks_later(self, hours: int) -> None:
        """The clock moves on; the scheduler applies what is due, then caps roll over."""
        self.clock_now += timedelta(hours=hours)

        async def scheduled(ctx: Ctx) -> list[int]:
            return (await changes.apply_due_changes(ctx)).applied

        applied = self.call(scheduled)
        assert self.call(scheduled) == []  # exactly once
        due = sorted(
            (c.effective_date, i)
            for i, c in self.changes.items()
            if c.state == "pending" and c.effective_date <= self.today()
        )
        assert applied == [i for _, i in due]
        stored = self.stored_accounts()
        for _, change_id in due:
            change = self.changes[change_id]
            change.state = "applied"
            model = self.services[change.service]
            if "plan" in change.what:
                model.plan = change.what["plan"]
            if "quantity" in change.what:
                model.quantity = change.what["quantity"]
            if "status" in change.what:
                self.become(change.service, change.what["status"], "scheduled", stored)
        reset = self.call(lifecycle.reset_caps)
        expected = sorted(
            sid
            for sid, m in self.services.items()
            if (m.status, m.reason) == ("disabled", "cap")
            and m.cap_resets_at is not None
            and m.cap_resets_at <= self.clock_now
        )
        assert sorted(reset) == expected
        for sid in expected:
            self.become(sid, "active", "cap_reset", stored)

    @staticmethod
    async def load(ctx: Ctx, sid: int) -> Service:
        return (await ctx.session.execute(select(Service).where(Service.id == sid))).scalar_one()

    # --- the invariant ----------------------------------------------------------------------

    @invariant()
    def services_are_what_the_rules_say(self) -> None:
        if not self.services:
            return

        async def read(ctx: Ctx) -> tuple[list[Service], list[ServiceScheduledChange]]:
            found = await ctx.session.execute(select(Service).where(Service.provider_id == ctx.provider_id))
            planned = await ctx.session.execute(
                select(ServiceScheduledChange).where(ServiceScheduledChange.provider_id == ctx.provider_id)
            )
            return list(found.scalars()), list(planned.scalars())

        rows, planned = self.call(read)
        by_plan = {v: k for k, v in self.plans.items()}
        got = {
            s.id: (s.status, s.status_reason, by_plan[s.plan_id], s.quantity, s.cap_resets_at) for s in rows
        }
        want = {
            sid: (m.status, m.reason, m.plan, m.quantity, m.cap_resets_at) for sid, m in self.services.items()
        }
        assert got == want
        stored = self.stored_accounts()
        for sid, m in self.services.items():
            blocked = self.blocked(m.account_id, stored)
            assert not (blocked and m.status == "active"), sid
            assert not (not blocked and (m.status, m.reason) == ("stopped", "account")), sid
        assert {c.id: c.state for c in planned} == {i: c.state for i, c in self.changes.items()}


@pytest.mark.slow
def test_service_status_machine(database_url: str) -> None:
    runner = Runner(database_url)
    try:
        run_state_machine_as_test(
            lambda: ServiceStatusMachine(runner),
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        runner.close()
