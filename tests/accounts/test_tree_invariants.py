"""Random sequences of tree operations keep the forest's invariants, on both engines.

A Hypothesis state machine drives the accounts service through create / move / detach /
delete / renew / update / suspend / unsuspend / cancel / clock advance / expiry sweep,
keeps its own plain model of what each operation should do, and after every step checks
the database against the model and against a naive recomputation of inheritance written
here from scratch (walking parent_id; nothing from boughs.accounts.inheritance).
"""

from __future__ import annotations

import asyncio
import calendar
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, select, text, update

from boughs.accounts import service
from boughs.accounts.models import Account, AccountLink
from boughs.accounts.repository import AccountFilter
from boughs.accounts.schemas import AccountCreate, AccountUpdate, RenewRequest
from boughs.auth.actor import Actor
from boughs.context import Ctx
from boughs.db import Base, Database
from boughs.kit.clock import FrozenClock
from boughs.kit.errors import BoughsError, Conflict, InvalidInput
from boughs.kit.periods import Period
from boughs.providers.models import Provider
from tests.conftest import START

T = TypeVar("T")

# A deeper search on demand: BOUGHS_TREE_EXAMPLES=500 pytest tests/accounts/test_tree_invariants.py
EXAMPLES = int(os.environ.get("BOUGHS_TREE_EXAMPLES", "25"))
MAX_ACCOUNTS = 9
TIMEZONES = ["UTC", "Pacific/Auckland", "Pacific/Kiritimati", "Pacific/Pago_Pago", "America/Los_Angeles"]
SEVERITY = {"cancelled": 2, "suspended": 1}
# Own expiries near enough to the clock (which moves up to weeks a step) to pass during a run.
EXPIRY_DAYS = st.one_of(st.none(), st.integers(min_value=-3, max_value=30))
ZONE = st.one_of(st.none(), st.sampled_from(TIMEZONES))


# --- running async code from synchronous rules --------------------------------------------


class Runner:
    """One event loop and one Database per engine, shared by every example of the run."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.db = self.run(self._open(url))

    @staticmethod
    async def _open(url: str) -> Database:
        return Database(url)

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    async def _wipe(self) -> None:
        async with self.db.transaction() as session:
            if self.db.is_sqlite:
                # ON DELETE RESTRICT is checked row by row on SQLite: unhook the tree first.
                await session.execute(update(Account).values(parent_id=None))
                for table in reversed(Base.metadata.sorted_tables):
                    await session.execute(delete(table))
            else:
                tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
                await session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))

    def wipe(self) -> None:
        self.run(self._wipe())

    def close(self) -> None:
        self.run(self.db.dispose())
        self.loop.close()


# --- the model --------------------------------------------------------------------------


@dataclass
class Node:
    parent_id: int | None
    status: str
    expiry_date: date | None
    timezone: str | None
    created_at: datetime
    # (parent_id, valid_from) of every parent link, oldest first.
    links: list[tuple[int | None, datetime]] = field(default_factory=list)


def add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def extend(day: date, period: str, count: int) -> date:
    if period == "day":
        return day + timedelta(days=count)
    if period == "week":
        return day + timedelta(days=7 * count)
    return add_months(day, {"month": 1, "quarter": 3, "year": 12}[period] * count)


class Forest:
    """Naive answers computed from a plain {id: Node} map by walking parent_id."""

    def __init__(self, nodes: dict[int, Node], provider_timezone: str, now: datetime) -> None:
        self.nodes = nodes
        self.provider_timezone = provider_timezone
        self.now = now

    def upward(self, account_id: int) -> list[int]:
        """The account, its parent, … up to its root; refuses cycles."""
        chain = [account_id]
        parent = self.nodes[account_id].parent_id
        while parent is not None:
            assert parent not in chain, f"cycle through {parent}: {chain}"
            chain.append(parent)
            parent = self.nodes[parent].parent_id
        return chain

    def path(self, account_id: int) -> str:
        return "/" + "".join(f"{i}/" for i in reversed(self.upward(account_id)))

    def in_subtree(self, account_id: int, top: int) -> bool:
        return top in self.upward(account_id)

    def subtree(self, top: int) -> list[int]:
        return [i for i in self.nodes if self.in_subtree(i, top)]

    def children(self, account_id: int) -> list[int]:
        return [i for i, n in self.nodes.items() if n.parent_id == account_id]

    def expiry(self, account_id: int) -> tuple[date | None, int | None]:
        for i in self.upward(account_id):
            if self.nodes[i].expiry_date is not None:
                return self.nodes[i].expiry_date, i
        return None, None

    def timezone(self, account_id: int) -> str:
        for i in self.upward(account_id):
            tz = self.nodes[i].timezone
            if tz is not None:
                return tz
        return self.provider_timezone

    def today(self, account_id: int) -> date:
        return self.now.astimezone(ZoneInfo(self.timezone(account_id))).date()

    def expiry_passed(self, account_id: int) -> bool:
        """The expiry date is the last day of service, up to midnight at its end, local time."""
        expiry, _ = self.expiry(account_id)
        if expiry is None:
            return False
        end = datetime.combine(
            expiry + timedelta(days=1), time(0), tzinfo=ZoneInfo(self.timezone(account_id))
        )
        return self.now >= end

    def status(self, account_id: int) -> tuple[str, int | None, bool]:
        """(effective status, the account it comes from, blocked)."""
        blocker: int | None = None
        for i in self.upward(account_id):  # nearest first: a tie goes to the nearest
            severity = SEVERITY.get(self.nodes[i].status, 0)
            if severity and (blocker is None or severity > SEVERITY[self.nodes[blocker].status]):
                blocker = i
        if blocker is not None:
            return self.nodes[blocker].status, blocker, True
        if self.expiry_passed(account_id):
            return "expired", self.expiry(account_id)[1], True
        return "active", None, False


# --- the machine ------------------------------------------------------------------------


class AccountForestMachine(RuleBasedStateMachine):
    def __init__(self, runner: Runner) -> None:
        super().__init__()
        self.runner = runner
        runner.wipe()
        self.clock = FrozenClock(START)
        self.nodes: dict[int, Node] = {}
        self.provider_timezone = "UTC"
        self.max_depth: int | None = None
        self.actor: Actor | None = None

    # helpers

    @property
    def forest(self) -> Forest:
        return Forest(self.nodes, self.provider_timezone, self.clock.now())

    def call(self, work: Callable[[Ctx], Awaitable[T]], write: bool = True) -> T:
        actor = self.actor
        assert actor is not None

        async def unit() -> T:
            async with self.runner.db.transaction(write=write) as session:
                return await work(Ctx(session=session, clock=self.clock, actor=actor))

        return self.runner.run(unit())

    def refused(
        self, error: type[BoughsError], field_name: str | None, work: Callable[[Ctx], Awaitable[Any]]
    ) -> None:
        with pytest.raises(error) as caught:
            self.call(work)
        if field_name is not None:
            assert [e.field for e in caught.value.errors] == [field_name], caught.value
            assert all(e.fix for e in caught.value.errors)

    def depth(self, account_id: int) -> int:
        return len(self.forest.upward(account_id)) - 1

    def height(self, account_id: int) -> int:
        """How far the subtree reaches below the account."""
        return max(self.depth(i) for i in self.forest.subtree(account_id)) - self.depth(account_id)

    def restore_unexpired(self, top: int) -> None:
        """What the service does after an expiry moves later: the sweep's expiries come back."""
        forest = self.forest
        for i in forest.subtree(top):
            if self.nodes[i].status == "expired" and not forest.expiry_passed(i):
                self.nodes[i].status = "active"

    def pick(self, data: st.DataObject, label: str) -> int:
        return data.draw(st.sampled_from(sorted(self.nodes)), label=label)

    # set-up

    @initialize(
        provider_timezone=st.sampled_from(TIMEZONES),
        max_depth=st.one_of(st.none(), st.integers(min_value=1, max_value=3)),
        seed=st.lists(
            st.tuples(st.one_of(st.none(), st.integers(min_value=0, max_value=20)), EXPIRY_DAYS, ZONE),
            min_size=2,
            max_size=6,
        ),
    )
    def make_provider_and_forest(
        self,
        provider_timezone: str,
        max_depth: int | None,
        seed: list[tuple[int | None, int | None, str | None]],
    ) -> None:
        """A provider and a few accounts to start from, so short runs already have a tree."""
        self.provider_timezone = provider_timezone
        self.max_depth = max_depth

        async def make() -> int:
            async with self.runner.db.transaction() as session:
                provider = Provider(
                    name="Hypothesis ISP",
                    default_timezone=provider_timezone,
                    default_currency="EUR",
                    max_account_depth=max_depth,
                    created_at=self.clock.now(),
                    updated_at=self.clock.now(),
                )
                session.add(provider)
                await session.flush()
                return provider.id

        self.actor = Actor.system(self.runner.run(make()), "hypothesis")
        for parent_index, expiry_in_days, timezone in seed:
            existing = sorted(self.nodes)
            parent = None if parent_index is None or not existing else existing[parent_index % len(existing)]
            self._create(parent, expiry_in_days, timezone)

    # rules

    def _create(self, parent: int | None, expiry_in_days: int | None, timezone: str | None) -> None:
        expiry = None if expiry_in_days is None else self.clock.now().date() + timedelta(days=expiry_in_days)
        body = AccountCreate(name="Account", parent_id=parent, expiry_date=expiry, timezone=timezone)
        if parent is not None and self.max_depth is not None and self.depth(parent) + 1 > self.max_depth:
            self.refused(InvalidInput, "parent_id", lambda ctx: service.create(ctx, body))
            return
        account = self.call(lambda ctx: service.create(ctx, body))
        assert account.id not in self.nodes
        now = self.clock.now()
        assert account.created_at == now
        self.nodes[account.id] = Node(parent, "active", expiry, timezone, now, [(parent, now)])

    @precondition(lambda self: len(self.nodes) < MAX_ACCOUNTS)
    @rule(data=st.data(), top_level=st.booleans(), expiry_in_days=EXPIRY_DAYS, timezone=ZONE)
    def create(
        self, data: st.DataObject, top_level: bool, expiry_in_days: int | None, timezone: str | None
    ) -> None:
        parent = None if top_level or not self.nodes else self.pick(data, "parent")
        self._create(parent, expiry_in_days, timezone)

    def _move(self, account_id: int, target: int | None) -> None:
        forest = self.forest
        if target is not None and forest.in_subtree(target, account_id):
            self.refused(InvalidInput, "parent_id", lambda ctx: service.move(ctx, account_id, target))
            return
        if target == self.nodes[account_id].parent_id:
            self.call(lambda ctx: service.move(ctx, account_id, target))  # a no-op
            return
        new_depth = 0 if target is None else self.depth(target) + 1
        if self.max_depth is not None and new_depth + self.height(account_id) > self.max_depth:
            self.refused(InvalidInput, "parent_id", lambda ctx: service.move(ctx, account_id, target))
            return
        moved = self.call(lambda ctx: service.move(ctx, account_id, target))
        assert moved.parent_id == target
        node = self.nodes[account_id]
        node.parent_id = target
        node.links.append((target, self.clock.now()))
        self.restore_unexpired(account_id)

    @precondition(lambda self: self.nodes)
    @rule(data=st.data())
    def move(self, data: st.DataObject) -> None:
        self._move(self.pick(data, "account"), self.pick(data, "new parent"))

    @precondition(lambda self: self.nodes)
    @rule(data=st.data())
    def detach(self, data: st.DataObject) -> None:
        self._move(self.pick(data, "account"), None)

    @precondition(lambda self: self.nodes)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        account_id = self.pick(data, "account")
        if self.forest.children(account_id):
            self.refused(Conflict, None, lambda ctx: service.delete(ctx, account_id))
            return
        self.call(lambda ctx: service.delete(ctx, account_id))
        del self.nodes[account_id]

    @precondition(lambda self: self.nodes)
    @rule(
        data=st.data(),
        in_days=st.one_of(st.none(), st.integers(min_value=-2, max_value=40)),
        period=st.sampled_from([p.value for p in Period]),
        count=st.integers(min_value=1, max_value=3),
    )
    def renew(self, data: st.DataObject, in_days: int | None, period: str, count: int) -> None:
        account_id = self.pick(data, "account")
        forest = self.forest
        today = forest.today(account_id)
        if in_days is not None:
            target = today + timedelta(days=in_days)
            body = RenewRequest(expiry_date=target)
            if target < today:
                self.refused(InvalidInput, "expiry_date", lambda ctx: service.renew(ctx, account_id, body))
                return
        else:
            current, _ = forest.expiry(account_id)
            base = current if current is not None and current >= today else today
            target = extend(base, period, count)
            body = RenewRequest(period=Period(period), count=count)
        renewed = self.call(lambda ctx: service.renew(ctx, account_id, body))
        assert renewed.expiry_date == target
        self.nodes[account_id].expiry_date = target
        self.restore_unexpired(account_id)
        assert renewed.status == self.nodes[account_id].status

    @precondition(lambda self: self.nodes)
    @rule(
        data=st.data(),
        expiry_in_days=EXPIRY_DAYS,
        timezone=ZONE,
    )
    def update_expiry_and_timezone(
        self, data: st.DataObject, expiry_in_days: int | None, timezone: str | None
    ) -> None:
        """A PATCH setting (or clearing, to inherit) the account's own expiry and timezone."""
        account_id = self.pick(data, "account")
        expiry = None if expiry_in_days is None else self.clock.now().date() + timedelta(days=expiry_in_days)
        body = AccountUpdate(expiry_date=expiry, timezone=timezone)
        updated = self.call(lambda ctx: service.update(ctx, account_id, body))
        self.nodes[account_id].expiry_date = expiry
        self.nodes[account_id].timezone = timezone
        self.restore_unexpired(account_id)
        assert updated.status == self.nodes[account_id].status

    def _status_change(
        self,
        account_id: int,
        action: Callable[[Ctx], Awaitable[Account]],
        allowed: set[str],
        new_status: Callable[[], str],
    ) -> None:
        node = self.nodes[account_id]
        if node.status not in allowed:
            self.refused(Conflict, None, action)
            return
        changed = self.call(action)
        node.status = new_status()
        assert changed.status == node.status

    @precondition(lambda self: self.nodes)
    @rule(data=st.data())
    def suspend(self, data: st.DataObject) -> None:
        account_id = self.pick(data, "account")
        self._status_change(
            account_id,
            lambda ctx: service.suspend(ctx, account_id),
            {"active", "expired"},
            lambda: "suspended",
        )

    @precondition(lambda self: self.nodes)
    @rule(data=st.data())
    def unsuspend(self, data: st.DataObject) -> None:
        """Back to active, or to expired when its effective expiry has passed meanwhile."""
        account_id = self.pick(data, "account")
        self._status_change(
            account_id,
            lambda ctx: service.unsuspend(ctx, account_id),
            {"suspended"},
            lambda: "expired" if self.forest.expiry_passed(account_id) else "active",
        )

    @precondition(lambda self: self.nodes)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        account_id = self.pick(data, "account")
        self._status_change(
            account_id,
            lambda ctx: service.cancel(ctx, account_id),
            {"active", "suspended", "expired"},
            lambda: "cancelled",
        )

    @precondition(lambda self: self.nodes)
    @rule(data=st.data(), limit=st.integers(min_value=1, max_value=3))
    def read_the_tree(self, data: st.DataObject, limit: int) -> None:
        """Children, descendants (walked page by page), ancestors, a root's list and the summary."""
        account_id = self.pick(data, "account")
        forest = self.forest

        async def walk(fetch: Callable[[str | None], Awaitable[service.PageOf]]) -> list[int]:
            seen: list[int] = []
            cursor: str | None = None
            while True:
                page = await fetch(cursor)
                seen += [a.id for a in page.items]
                if page.next_cursor is None:
                    return seen
                assert len(page.items) == limit
                cursor = page.next_cursor

        async def read(ctx: Ctx) -> dict[str, Any]:
            root = forest.upward(account_id)[-1]
            return {
                "children": await walk(lambda c: service.children(ctx, account_id, c, limit)),
                "descendants": await walk(lambda c: service.descendants(ctx, account_id, c, limit)),
                "ancestors": [a.id for a in await service.ancestors(ctx, account_id)],
                "tree": await walk(
                    lambda c: service.list_accounts(ctx, AccountFilter(root_id=root), c, limit)
                ),
                "summary": await service.subtree_summary(ctx, account_id),
            }

        got = self.call(read, write=False)
        below = [i for i in forest.subtree(account_id) if i != account_id]
        assert got["children"] == sorted(forest.children(account_id))
        assert got["descendants"] == sorted(below, key=forest.path)  # tree order: parents first
        assert got["ancestors"] == list(reversed(forest.upward(account_id)))[:-1]
        root = forest.upward(account_id)[-1]
        assert got["tree"] == sorted(forest.subtree(root))
        summary = got["summary"]
        subtree = forest.subtree(account_id)
        assert summary.accounts == len(subtree)
        assert summary.active == sum(self.nodes[i].status == "active" for i in subtree)
        assert summary.max_depth == max(self.depth(i) for i in subtree)

    @rule(hours=st.integers(min_value=1, max_value=24 * 20))
    def advance_clock(self, hours: int) -> None:
        self.clock.advance(timedelta(hours=hours))

    @rule()
    def sweep(self) -> None:
        forest = self.forest
        due = {i for i, n in self.nodes.items() if n.status == "active" and forest.expiry_passed(i)}
        expired = self.call(service.sweep_expired)
        assert sorted(expired) == sorted(due)
        for i in due:
            self.nodes[i].status = "expired"
        assert self.call(service.sweep_expired) == []  # idempotent

    # invariants

    @invariant()
    def database_matches_the_model(self) -> None:
        if self.actor is None:
            return

        async def read(ctx: Ctx) -> tuple[list[Account], list[AccountLink], dict[int, dict[str, Any]]]:
            accounts = list(
                (
                    await ctx.session.execute(
                        select(Account).where(Account.provider_id == ctx.provider_id).order_by(Account.id)
                    )
                ).scalars()
            )
            links = list(
                (
                    await ctx.session.execute(
                        select(AccountLink)
                        .where(AccountLink.provider_id == ctx.provider_id)
                        .order_by(AccountLink.valid_from, AccountLink.id)
                    )
                ).scalars()
            )
            effective = {a.id: await service.effective(ctx, a.id) for a in accounts}
            return accounts, links, effective

        accounts, links, effective = self.call(read, write=False)
        assert [a.id for a in accounts] == sorted(self.nodes)
        by_id = {a.id: a for a in accounts}
        # The tree as stored, for the naive recomputations below.
        stored = Forest(
            {a.id: Node(a.parent_id, a.status, a.expiry_date, a.timezone, a.created_at) for a in accounts},
            self.provider_timezone,
            self.clock.now(),
        )

        # Path, depth and root agree with the parent_id walk, which ends (no cycles).
        for a in accounts:
            chain = stored.upward(a.id)  # asserts there is no cycle
            assert a.path == stored.path(a.id), (a.id, a.path)
            assert a.depth == len(chain) - 1
            assert a.root_id == chain[-1]
            if a.parent_id is not None:
                parent = by_id[a.parent_id]
                assert a.path.startswith(parent.path) and a.depth == parent.depth + 1
            # And the tree is the one the operations asked for.
            node = self.nodes[a.id]
            assert (a.parent_id, a.status, a.expiry_date, a.timezone) == (
                node.parent_id,
                node.status,
                node.expiry_date,
                node.timezone,
            )

        # Parent links: contiguous, non-overlapping, from creation, one open link on the current parent.
        history: dict[int, list[AccountLink]] = {i: [] for i in self.nodes}
        for link in links:
            assert link.child_id in history, f"link of a deleted account {link.child_id}"
            history[link.child_id].append(link)
        for account_id, rows in history.items():
            node = self.nodes[account_id]
            assert rows, f"{account_id} has no links"
            assert rows[0].valid_from == node.created_at
            for earlier, later in pairwise(rows):
                assert earlier.valid_to is not None
                assert earlier.valid_from <= earlier.valid_to == later.valid_from
            open_links = [r for r in rows if r.valid_to is None]
            assert open_links == [rows[-1]]
            assert rows[-1].parent_id == by_id[account_id].parent_id
            assert [(r.parent_id, r.valid_from) for r in rows] == node.links

        # Inheritance: the service's effective expiry and status equal the naive ones.
        for account_id in self.nodes:
            eff = effective[account_id]
            expiry, source = stored.expiry(account_id)
            assert (eff["expiry_date"]["value"], eff["expiry_date"]["source_account_id"]) == (expiry, source)
            assert eff["timezone"]["value"] == stored.timezone(account_id)
            value, status_source, blocked = stored.status(account_id)
            naive = {"value": value, "source_account_id": status_source, "blocked": blocked}
            assert eff["status"] == naive, account_id
            # A stored "expired" is only ever the sweep's record of an expiry that has passed.
            if by_id[account_id].status == "expired":
                assert stored.expiry_passed(account_id), account_id


@pytest.mark.slow
def test_tree_invariants(database_url: str) -> None:
    runner = Runner(database_url)
    try:
        run_state_machine_as_test(
            lambda: AccountForestMachine(runner),
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        runner.close()
