"""The fold: ingest stores batches, the fold adds each to the rollups exactly once, and
answers count what is still pending so they are exact either way."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.billing import repository as billing_repository
from boughs.config import Settings
from boughs.context import Ctx
from boughs.db import Database, Pinned
from boughs.jobs.runtime import JobRuntime
from boughs.kit.clock import FrozenClock
from boughs.usage import fold, fold_repository, repository
from boughs.usage import service as usage
from boughs.usage.models import UsageBatch, UsageEvent, UsageRollup, UsageUniqueValue
from boughs.usage.repository import NewEvent
from boughs.usage.schemas import Granularity, UsageScope
from tests.conftest import START, Tenant
from tests.usage.support import (
    event,
    new_account,
    new_meter,
    new_plan,
    new_service,
    rollup_totals,
    send,
    statuses,
)

EARLIER = START - timedelta(hours=2)


@dataclass
class World:
    top: int
    mid: int
    leaf: int
    side: int
    service: int
    data: int
    devices: int


@pytest.fixture
async def world(ctx_factory: Any, clock: FrozenClock) -> World:
    clock.set(START - timedelta(days=2))
    async with ctx_factory() as ctx:
        top = await new_account(ctx, "Top")
        mid = await new_account(ctx, "Mid", top)
        leaf = await new_account(ctx, "Leaf", mid)
        side = await new_account(ctx, "Side", top)
        service = await new_service(ctx, leaf, await new_plan(ctx), login="leaf-login")
        data = await new_meter(ctx, "data")
        devices = await new_meter(ctx, "devices", "unique_count", unit="devices", unique_property="device")
    clock.set(START)
    return World(top, mid, leaf, side, service, data, devices)


async def answer(ctx_factory: Any, account_id: int, meter: str, scope: UsageScope, start: datetime) -> Any:
    async with ctx_factory() as ctx:
        return await usage.account_usage(ctx, account_id, meter, start, START, Granularity.hour, scope)


async def pending_batches(ctx_factory: Any) -> int:
    async with ctx_factory() as ctx:
        waiting = select(func.count()).select_from(UsageBatch).where(UsageBatch.folded_at.is_(None))
        return int(await ctx.session.scalar(waiting) or 0)


async def test_answers_count_pending_events_and_the_fold_adds_each_once(
    ctx_factory: Any, world: World
) -> None:
    async with ctx_factory() as ctx:
        results = await send(
            ctx,
            [
                event("a", "10", EARLIER, login="leaf-login", properties={"device": "x"}),
                event("b", "5", EARLIER + timedelta(minutes=5), account_id=world.leaf),
                event("c", "7", EARLIER, account_id=world.side),
                event("d", "1", EARLIER, "devices", account_id=world.leaf, properties={"device": "x"}),
                event("e", "1", EARLIER, "devices", account_id=world.side, properties={"device": "y"}),
            ],
        )
        assert statuses(results) == ["accepted"] * 5
        # Stored, but not in the rollups yet.
        assert await ctx.session.scalar(select(func.count()).select_from(UsageRollup)) == 0
    assert await pending_batches(ctx_factory) == 1

    async def check() -> None:
        top = await answer(ctx_factory, world.top, "data", UsageScope.subtree, EARLIER)
        assert (top.quantity, top.events) == ("22", 3)
        assert [b.quantity for b in top.buckets] == ["22", "0"]
        assert (await answer(ctx_factory, world.leaf, "data", UsageScope.self, EARLIER)).quantity == "15"
        assert (await answer(ctx_factory, world.mid, "data", UsageScope.self, EARLIER)).quantity == "0"
        assert (await answer(ctx_factory, world.mid, "data", UsageScope.subtree, EARLIER)).quantity == "15"
        async with ctx_factory() as ctx:
            service = await usage.service_usage(ctx, world.service, "data", EARLIER, START, Granularity.day)
        assert (service.quantity, service.events) == ("10", 1)
        devices = await answer(ctx_factory, world.top, "devices", UsageScope.subtree, EARLIER)
        assert (devices.quantity, devices.events) == ("2", 2)

    await check()
    async with ctx_factory() as ctx:
        assert await fold.catch_up(ctx) == 5
        assert await fold.catch_up(ctx) == 0  # nothing is folded twice
    assert await pending_batches(ctx_factory) == 0
    await check()
    async with ctx_factory() as ctx:
        totals = await rollup_totals(ctx, world.data)
        assert totals[("subtree", world.top)] == (22, 10, 3)
        assert totals[("subtree", world.leaf)] == (15, 10, 2)
        assert totals[("service", world.service)] == (10, 10, 1)
        assert ("subtree", world.side) in totals and ("subtree", world.mid) in totals
        values = set(
            await ctx.session.execute(
                select(UsageUniqueValue.kind, UsageUniqueValue.subject_id, UsageUniqueValue.value).where(
                    UsageUniqueValue.meter_id == world.devices
                )
            )
        )
        assert ("below", world.top, "x") in values and ("below", world.top, "y") in values
        assert ("account", world.leaf, "x") in values and ("below", world.mid, "y") not in values
        # The leaf's values are its own: nothing was used below it.
        assert not any(kind == "below" and subject == world.leaf for kind, subject, _ in values)


async def test_a_batch_of_nothing_new_leaves_nothing_to_fold(ctx_factory: Any, world: World) -> None:
    async with ctx_factory() as ctx:
        await send(ctx, [event("a", "1", EARLIER, account_id=world.leaf)])
        await fold.catch_up(ctx)
    async with ctx_factory() as ctx:
        assert statuses(await send(ctx, [event("a", "1", EARLIER, account_id=world.leaf)])) == ["duplicate"]
        assert statuses(await send(ctx, [event("z", "1", EARLIER, account_id=10**9)])) == ["rejected"]
    async with ctx_factory() as ctx:
        assert await ctx.session.scalar(select(func.count()).select_from(UsageBatch)) == 1
    assert await pending_batches(ctx_factory) == 0


async def test_usage_dated_before_a_move_and_folded_after_it_pools_where_it_happened(
    ctx_factory: Any, world: World, clock: FrozenClock
) -> None:
    """Taken before the move, folded after it: the fold follows the link history, not the
    tree it finds."""
    before, moved_at, after = (
        START - timedelta(hours=5),
        START - timedelta(hours=3),
        START - timedelta(hours=1),
    )
    clock.set(moved_at - timedelta(minutes=1))
    async with ctx_factory() as ctx:
        await send(ctx, [event("before", "100", before, account_id=world.leaf)])
    clock.set(moved_at)
    async with ctx_factory() as ctx:
        await accounts.move(ctx, world.leaf, world.side)
    clock.set(START)
    async with ctx_factory() as ctx:
        await send(
            ctx,
            [
                event("late-before", "10", before, account_id=world.leaf),  # reported after, dated before
                event("after", "1", after, account_id=world.leaf),
            ],
        )
        leaf = await ctx.session.get(Account, world.leaf)
        assert leaf is not None and leaf.chain_since == moved_at

    async def check() -> None:
        window = START - timedelta(hours=6)
        mid = await answer(ctx_factory, world.mid, "data", UsageScope.subtree, window)
        side = await answer(ctx_factory, world.side, "data", UsageScope.subtree, window)
        top = await answer(ctx_factory, world.top, "data", UsageScope.subtree, window)
        assert (mid.quantity, side.quantity, top.quantity) == ("110", "1", "111")

    await check()  # all three pending
    async with ctx_factory() as ctx:
        assert await fold.catch_up(ctx) == 3
    await check()
    async with ctx_factory() as ctx:
        totals = await rollup_totals(ctx, world.data)
    assert totals[("subtree", world.mid)] == (110, 100, 2)
    assert totals[("subtree", world.side)] == (1, 1, 1)
    assert totals[("subtree", world.leaf)] == (111, 100, 3)


async def _stage(pinned: Pinned, tenant: Tenant, clock: FrozenClock) -> fold_repository.Span:
    async with pinned.transaction(write=False) as session:
        span = await fold.stage(Ctx(session=session, clock=clock, actor=tenant.actor()))
    assert span is not None
    return span


async def _fold_staged(pinned: Pinned, tenant: Tenant, clock: FrozenClock, span: fold_repository.Span) -> int:
    async with pinned.transaction() as session:
        return await fold.fold_once(Ctx(session=session, clock=clock, actor=tenant.actor()), staged=span)


_SQLITE_TEMPORARY = "SELECT name FROM sqlite_temp_master WHERE type = 'table'"
_POSTGRES_TEMPORARY = (
    "SELECT tablename FROM pg_tables WHERE schemaname = pg_my_temp_schema()::regnamespace::text"
)


async def _temporary_tables(driver: Any) -> list[str]:
    """The temporary tables of a driver's connection (sqlite3 or psycopg)."""
    if isinstance(driver, sqlite3.Connection):
        return sorted(name for (name,) in driver.execute(_SQLITE_TEMPORARY))
    cursor = await driver.execute(_POSTGRES_TEMPORARY)
    return sorted(name for (name,) in await cursor.fetchall())


async def test_a_staged_fold_adds_what_a_fold_in_one_transaction_adds(
    ctx_factory: Any, world: World, db: Database, tenant: Tenant, clock: FrozenClock
) -> None:
    """The sums read and grouped before the write lock, then added: the same rollups, and
    the connection goes back to the pool without the tables it staged them in."""
    async with ctx_factory() as ctx:
        await send(
            ctx,
            [
                event("a", "10", EARLIER, login="leaf-login"),
                event("b", "5", EARLIER + timedelta(minutes=5), account_id=world.leaf),
                event("c", "7", EARLIER, account_id=world.side),
                event("d", "1", EARLIER, "devices", account_id=world.leaf, properties={"device": "x"}),
            ],
        )
    async with db.pinned() as pinned:
        span = await _stage(pinned, tenant, clock)
        assert span.events == 4
        held = (await pinned.connection.get_raw_connection()).driver_connection
        assert await _temporary_tables(held) == ["fold_staged_chains", "fold_staged_sums"]
        # Staging wrote nothing: the batch still waits.
        assert await pending_batches(ctx_factory) == 1
        assert await _fold_staged(pinned, tenant, clock, span) == 4
    assert await pending_batches(ctx_factory) == 0
    async with ctx_factory() as ctx:
        totals = await rollup_totals(ctx, world.data)
        devices = await rollup_totals(ctx, world.devices)
    assert totals[("subtree", world.top)] == (22, 10, 3)
    assert totals[("subtree", world.mid)] == (15, 10, 2)
    assert totals[("account", world.leaf)] == (15, 10, 2)
    assert totals[("service", world.service)] == (10, 10, 1)
    assert totals[("subtree", world.side)] == (7, 7, 1)
    assert devices[("subtree", world.top)] == (1, 1, 1)
    assert await _temporary_tables(held) == []  # back in the pool as it came


async def test_staging_a_fold_takes_no_write_lock(
    ctx_factory: Any, world: World, db: Database, tenant: Tenant, clock: FrozenClock
) -> None:
    async with ctx_factory() as ctx:
        await send(ctx, [event("a", "10", EARLIER, account_id=world.leaf)])

    async def ingest_meanwhile() -> None:
        async with ctx_factory() as ctx:
            await send(ctx, [event("b", "1", EARLIER, account_id=world.leaf)])

    async with db.pinned() as pinned, pinned.transaction(write=False) as session:
        assert await fold.stage(Ctx(session=session, clock=clock, actor=tenant.actor())) is not None
        # Another writer commits while the staging's read transaction is still open.
        await asyncio.wait_for(ingest_meanwhile(), timeout=10)
    assert await pending_batches(ctx_factory) == 2


async def test_a_staged_fold_another_fold_took_meanwhile_adds_nothing(
    ctx_factory: Any, world: World, db: Database, tenant: Tenant, clock: FrozenClock
) -> None:
    async with ctx_factory() as ctx:
        await send(ctx, [event("a", "10", EARLIER, account_id=world.leaf)])
    async with db.pinned() as pinned:
        span = await _stage(pinned, tenant, clock)
        async with ctx_factory() as ctx:
            assert await fold.catch_up(ctx) == 1
        assert await _fold_staged(pinned, tenant, clock, span) == 0
    async with ctx_factory() as ctx:
        assert (await rollup_totals(ctx, world.data))[("subtree", world.top)] == (10, 10, 1)


async def test_a_staged_fold_whose_account_moved_meanwhile_follows_the_move(
    ctx_factory: Any, world: World, db: Database, tenant: Tenant, clock: FrozenClock
) -> None:
    """Staged along the leaf's chain under mid; the leaf moves under side before the write,
    and the usage (dated a minute after the move) is the new chain's: the fold reads the
    span again rather than add what it staged."""
    async with ctx_factory() as ctx:
        await send(ctx, [event("soon", "10", START + timedelta(minutes=1), account_id=world.leaf)])
    async with db.pinned() as pinned:
        span = await _stage(pinned, tenant, clock)
        async with ctx_factory() as ctx:
            await accounts.move(ctx, world.leaf, world.side)
        assert await _fold_staged(pinned, tenant, clock, span) == 1
    async with ctx_factory() as ctx:
        totals = await rollup_totals(ctx, world.data)
    assert totals[("subtree", world.side)] == (10, 10, 1)
    assert ("subtree", world.mid) not in totals
    assert totals[("subtree", world.top)] == (10, 10, 1)


async def test_deleting_an_account_keeps_its_pending_usage_in_its_ancestors(
    ctx_factory: Any, world: World
) -> None:
    async with ctx_factory() as ctx:
        await send(ctx, [event("gone-soon", "40", EARLIER, account_id=world.side)])
    async with ctx_factory() as ctx:
        await accounts.delete(ctx, world.side)
    async with ctx_factory() as ctx:
        top = await usage.account_usage(
            ctx, world.top, "data", EARLIER, START, Granularity.day, UsageScope.subtree
        )
        assert top.quantity == "40"
        # Its own rows went with it.
        left = await ctx.session.execute(
            select(UsageRollup.kind, UsageRollup.subject_id).where(UsageRollup.account_id == world.side)
        )
        assert left.all() == []


# SQLite takes one writer at a time: batches never interleave there.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_batches_interleaving_on_postgres_are_each_folded_once(
    ctx_factory: Any, world: World, db: Database
) -> None:
    """PostgreSQL hands out event ids from one sequence: a batch's id range can hold another
    batch's events, and batches commit out of order. Each is folded once, alone."""
    provider_id = await _provider_of(ctx_factory)

    def rows(*keys: str) -> list[NewEvent]:
        return [
            NewEvent(key, world.data, world.leaf, None, 1, EARLIER, START, f"print-{key}", False, None)
            for key in keys
        ]

    first_done = asyncio.Event()
    second_done = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as session:
            batch = await fold_repository.open_batch(session, provider_id, START)
            early = await repository.insert_new_events(session, provider_id, batch, rows("f1", "f2"))
            first_done.set()
            await second_done.wait()  # the second batch takes ids meanwhile, and commits first
            late = await repository.insert_new_events(session, provider_id, batch, rows("f3"))
            await fold_repository.close_batch(session, batch, [*early.values(), *late.values()], EARLIER)

    async def second() -> None:
        await first_done.wait()
        async with db.transaction() as session:
            batch = await fold_repository.open_batch(session, provider_id, START)
            ids = await repository.insert_new_events(
                session, provider_id, batch, rows("s1", "s2", "s3", "s4")
            )
            await fold_repository.close_batch(session, batch, list(ids.values()), EARLIER)
        async with ctx_factory() as ctx:
            assert await fold.catch_up(ctx) == 4  # the first batch is not committed yet
        second_done.set()

    await asyncio.gather(first(), second())
    async with ctx_factory() as ctx:
        assert await fold.catch_up(ctx) == 3
        totals = await rollup_totals(ctx, world.data)
    assert totals[("account", world.leaf)] == (7, 1, 7)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_fold_on_postgres_plans_its_grouping_alone_and_buckets_by_the_utc_hour(
    ctx_factory: Any, world: World
) -> None:
    """The fold groups by sorting; what its transaction runs next plans as it would have.
    Its hours are UTC hours whatever the connection's time zone."""
    async with ctx_factory() as ctx:
        await send(
            ctx,
            [
                event("h1", "5", "2026-01-14T09:59:59.999999Z", account_id=world.leaf),
                event("h2", "7", "2026-01-14T10:00:00Z", account_id=world.leaf),
            ],
        )
    async with ctx_factory() as ctx:
        await ctx.session.execute(text("SET LOCAL TIME ZONE 'Asia/Kolkata'"))
        before = await ctx.session.scalar(text("SHOW enable_hashagg"))
        assert await fold.catch_up(ctx) == 2
        assert await ctx.session.scalar(text("SHOW enable_hashagg")) == before == "on"
        rows = await ctx.session.execute(
            select(UsageRollup.hour, UsageRollup.total)
            .where(UsageRollup.kind == "account", UsageRollup.subject_id == world.leaf)
            .order_by(UsageRollup.hour)
        )
        assert [(hour.astimezone(UTC), total) for hour, total in rows] == [
            (datetime(2026, 1, 14, 9, tzinfo=UTC), 5),
            (datetime(2026, 1, 14, 10, tzinfo=UTC), 7),
        ]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_usage_taken_while_its_period_is_being_invoiced_is_billed_late(
    ctx_factory: Any, world: World, db: Database
) -> None:
    """An ingest reads the account's usage as not yet invoiced; before it commits, an invoice
    is finalized: it reads the usage (this batch is not committed, so not counted) and sets
    usage_billed_until. The batch commits as on time; the fold after it marks the event
    late, so the next invoice bills it as late usage. Usage the invoice counted is not."""
    provider_id = await _provider_of(ctx_factory)
    async with ctx_factory() as ctx:
        await send(ctx, [event("before", "2", EARLIER, account_id=world.leaf)])
    taken, invoiced = asyncio.Event(), asyncio.Event()

    async def ingest() -> None:
        async with db.transaction() as session:
            batch = await fold_repository.open_batch(session, provider_id, START)
            during = NewEvent("during", world.data, world.leaf, None, 5, EARLIER, START, "print", False, None)
            ids = await repository.insert_new_events(session, provider_id, batch, [during])
            await fold_repository.close_batch(session, batch, list(ids.values()), EARLIER)
            taken.set()
            await invoiced.wait()

    async def finalize() -> None:
        await taken.wait()
        async with ctx_factory() as ctx:
            assert await fold.catch_up(ctx) == 1  # what the invoice counts: "before" alone
            await billing_repository.mark_usage_billed(ctx.session, [world.leaf], START)
        invoiced.set()

    await asyncio.gather(ingest(), finalize())
    async with ctx_factory() as ctx:
        assert await fold.catch_up(ctx) == 1
        rows = await ctx.session.execute(select(UsageEvent.event_key, UsageEvent.late))
        late = {key: flag for key, flag in rows}
    assert late == {"before": False, "during": True}


@asynccontextmanager
async def _workers(settings: Settings, clock: FrozenClock) -> AsyncIterator[JobRuntime]:
    """This process's runtime with a worker thread, as `boughs serve` runs it."""
    runtime = JobRuntime(settings, clock=clock)
    runtime.start_worker(threads=1)
    try:
        yield runtime
    finally:
        await runtime.stop()


async def _until_all_folded(ctx_factory: Any) -> None:
    for _ in range(200):
        if not await pending_batches(ctx_factory):
            return
        await asyncio.sleep(0.05)
    assert await pending_batches(ctx_factory) == 0, "the workers never folded the usage"


async def test_an_ingest_asks_the_workers_to_fold(
    settings: Settings, ctx_factory: Any, world: World, clock: FrozenClock
) -> None:
    from boughs.jobs import runtime as runtime_module

    async with _workers(settings, clock) as runtime:
        async with ctx_factory() as ctx:
            await send(ctx, [event("w", "3", EARLIER, account_id=world.leaf)])
        assert runtime_module.current() is runtime
        await _until_all_folded(ctx_factory)
        async with ctx_factory() as ctx:
            rows = await ctx.session.scalar(
                select(func.sum(UsageRollup.total)).where(
                    UsageRollup.kind == "below", UsageRollup.subject_id == world.top
                )
            )
        assert rows == 3


async def test_a_fold_waits_for_ingestion_to_pause_but_not_past_its_limit(
    settings: Settings, ctx_factory: Any, world: World, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches arriving closer together than the pause are folded together, not one a
    fold; a stream that never pauses is folded at the limit all the same."""
    from boughs.jobs import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "FOLD_QUIET_SECONDS", 1.0)
    monkeypatch.setattr(runtime_module, "FOLD_WAIT_AT_MOST_SECONDS", {"sqlite": 2.5, "postgresql": 2.5})
    async with _workers(settings, clock):
        waiting: list[int] = []
        for n in range(60):
            async with ctx_factory() as ctx:
                await send(ctx, [event(f"s{n}", "1", EARLIER, account_id=world.leaf)])
            waiting.append(await pending_batches(ctx_factory))
            await asyncio.sleep(0.1)
        # Nothing was folded a batch at a time: several waited together first ...
        assert waiting[:5] == [1, 2, 3, 4, 5]
        # ... and the stream was folded while it went on, though it never paused.
        assert any(later < earlier for earlier, later in pairwise(waiting))
        await _until_all_folded(ctx_factory)
        async with ctx_factory() as ctx:
            assert (await rollup_totals(ctx, world.data))[("account", world.leaf)] == (60, 1, 60)


async def test_a_fold_asked_for_outside_an_event_loop_still_comes(
    settings: Settings, ctx_factory: Any, world: World, clock: FrozenClock
) -> None:
    async with _workers(settings, clock) as runtime:
        async with ctx_factory() as ctx:
            await send(ctx, [event("t", "2", EARLIER, account_id=world.leaf)])
        await asyncio.to_thread(runtime.request_fold, await _provider_of(ctx_factory))
        await _until_all_folded(ctx_factory)


async def test_while_another_fold_is_coming_a_fold_leaves_it_less_than_a_whole_fold(
    ctx_factory: Any, world: World, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once its first fold is done, a fold leaves the batches that arrived meanwhile to the
    fold already asked for, unless a whole fold's worth is pending; with none coming it
    folds everything."""
    from boughs.usage.tasks import fold_pending

    # A fold takes up to three batches of a hundred events.
    monkeypatch.setattr(fold, "FOLD_EVENTS", {"sqlite": 300, "postgresql": 300})
    provider_id = await _provider_of(ctx_factory)

    async def batches(first: int, count: int) -> None:
        for n in range(first, first + count):
            async with ctx_factory() as ctx:
                await send(ctx, [event(f"c{n}-{i}", "1", EARLIER, account_id=world.leaf) for i in range(100)])

    await batches(0, 8)
    # A first fold of three batches; three more make a whole fold; the two left wait.
    assert await fold_pending(db, provider_id, clock, next_fold_coming=lambda: True) == 600
    assert await pending_batches(ctx_factory) == 2
    # With a fold coming, the first fold is done all the same.
    assert await fold_pending(db, provider_id, clock, next_fold_coming=lambda: True) == 200
    await batches(8, 4)
    assert await fold_pending(db, provider_id, clock, next_fold_coming=lambda: False) == 400
    assert await pending_batches(ctx_factory) == 0
    async with ctx_factory() as ctx:
        assert (await rollup_totals(ctx, world.data))[("account", world.leaf)] == (1200, 1, 1200)


async def test_the_workers_know_a_fold_is_coming_while_its_asks_wait(
    settings: Settings, ctx_factory: Any, world: World, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from boughs.jobs import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "FOLD_QUIET_SECONDS", 0.5)
    provider_id = await _provider_of(ctx_factory)
    async with _workers(settings, clock) as runtime:
        assert not runtime._fold_asked(provider_id)
        async with ctx_factory() as ctx:
            await send(ctx, [event("k", "1", EARLIER, account_id=world.leaf)])
        assert runtime._fold_asked(provider_id)  # asked once the batch committed; not sent yet
        await _until_all_folded(ctx_factory)
        assert not runtime._fold_asked(provider_id)


async def _provider_of(ctx_factory: Any) -> int:
    async with ctx_factory() as ctx:
        return int(ctx.provider_id)


async def test_a_fold_looks_for_late_or_moved_usage_only_where_there_can_be_some(
    ctx_factory: Any, world: World
) -> None:
    provider_id = await _provider_of(ctx_factory)
    hour = timedelta(hours=1)

    def span(earliest_at: datetime | None) -> fold_repository.Span:
        return fold_repository.Span((1,), 1, 1, 1, earliest_at)

    async with ctx_factory() as ctx:
        await billing_repository.mark_usage_billed(ctx.session, [world.leaf], START)
        await ctx.session.execute(
            update(Account).where(Account.id == world.side).values(chain_since=START - hour)
        )
    async with ctx_factory() as ctx:
        session = ctx.session
        # Usage dated before the leaf's invoiced period ends may be late; after it, none can be.
        assert await fold_repository.invoiced_since(session, provider_id, span(START - hour))
        assert not await fold_repository.invoiced_since(session, provider_id, span(START + hour))
        # Usage dated before the side account's move may pool elsewhere; after it, all as it is.
        assert await fold_repository.moved_since(session, provider_id, span(START - 2 * hour))
        assert not await fold_repository.moved_since(session, provider_id, span(START))
        # A batch that did not keep its earliest event's time is always looked through.
        assert await fold_repository.invoiced_since(session, provider_id, span(None))
        assert await fold_repository.moved_since(session, provider_id, span(None))
    # What ingest keeps: the time of the batch's earliest event.
    async with ctx_factory() as ctx:
        await send(
            ctx,
            [
                event("x1", "1", EARLIER + hour, account_id=world.leaf),
                event("x2", "1", EARLIER, login="leaf-login"),
            ],
        )
        kept = await ctx.session.scalar(select(UsageBatch.earliest_at).where(UsageBatch.folded_at.is_(None)))
    assert kept == EARLIER
