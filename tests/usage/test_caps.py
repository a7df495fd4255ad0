"""Data caps on metered usage: 80% warns, 100% applies the cap action, each exactly once per
period and cap; top-ups and the next period restore; pooled caps count a subtree."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from boughs.accounts import service as accounts
from boughs.audit.models import AuditEvent
from boughs.context import Ctx
from boughs.kit.errors import Conflict
from boughs.services import lifecycle
from boughs.services.models import ServiceStatusChange
from boughs.usage import caps, caps_repository, fold
from boughs.usage import service as usage
from boughs.usage.ingest import ingest
from boughs.usage.models import Aggregation, CapAlert, CapUsage
from boughs.usage.schemas import EventStatus, MeterCreate
from tests.conftest import START, Tenant
from tests.services.lifecycle_support import history, load, make_account, make_plan, make_service

CtxFactory = Callable[..., AbstractAsyncContextManager[Ctx]]
CAP = 1000
ROOT = Path(__file__).resolve().parents[2]
# An hour before the frozen clock (2026-01-15 12:00Z): in the period that began on 2026-01-10.
NOW_ISH = "2026-01-15T11:00:00Z"
_ids = itertools.count()


@pytest.fixture
async def plans(ctx_factory: CtxFactory) -> dict[str, int]:
    async with ctx_factory() as ctx:
        await usage.create_meter(
            ctx,
            MeterCreate(
                code="data", name="Data", unit="bytes", aggregation=Aggregation.sum, counts_toward_cap=True
            ),
        )
        await usage.create_meter(
            ctx, MeterCreate(code="calls", name="Calls", unit="calls", aggregation=Aggregation.count)
        )
        capped: dict[str, Any] = {"kind": "internet", "data_cap_bytes": CAP}
        made = [
            await make_plan(ctx, "Capped", **capped, cap_action="disable"),
            await make_plan(
                ctx,
                "Throttled",
                **capped,
                cap_action="throttle",
                throttle_download_rate=512,
                throttle_upload_rate=256,
            ),
            await make_plan(ctx, "Pooled", **capped, cap_action="disable", pooled_cap=True),
            await make_plan(ctx, "Small", kind="internet", data_cap_bytes=300, cap_action="disable"),
            await make_plan(ctx, "Plain", kind="internet"),
            await make_plan(ctx, "Voice", kind="voice"),
        ]
        return {p.name: p.id for p in made}


def event(quantity: int, at: str = NOW_ISH, meter: str = "data", **subject: Any) -> dict[str, Any]:
    return {"id": f"e{next(_ids)}", "meter": meter, "quantity": quantity, "timestamp": at, **subject}


async def use(ctx_factory: CtxFactory, *events: dict[str, Any]) -> None:
    """Ingest the events, then fold them into the caps, each in its own unit of work as the
    API and the workers do."""
    async with ctx_factory() as ctx:
        results = await ingest(ctx, list(events))
    assert [r.status for r in results] == [EventStatus.accepted] * len(events), results
    async with ctx_factory() as ctx:
        assert await fold.catch_up(ctx) == len(events)


async def alerts(ctx_factory: CtxFactory, service_id: int) -> list[tuple[str, int, int, str]]:
    async with ctx_factory() as ctx:
        found = await caps_repository.alerts_of(ctx.session, service_id)
    return [(a.period_start.isoformat(), a.threshold_percent, a.cap_bytes, a.outcome) for a in found]


async def status(ctx_factory: CtxFactory, service_id: int) -> tuple[str, str]:
    async with ctx_factory() as ctx:
        service = await load(ctx, service_id)
    return service.status, service.status_reason


async def audit_actions(ctx: Ctx, service_id: int) -> list[str]:
    rows = await ctx.session.scalars(
        select(AuditEvent.action).where(AuditEvent.entity_id == str(service_id)).order_by(AuditEvent.id)
    )
    return list(rows)


async def test_thresholds_fire_once_top_ups_raise_the_cap_and_the_next_period_restores(
    ctx_factory: CtxFactory, plans: dict[str, int], client: httpx.AsyncClient, clock: Any
) -> None:
    async with ctx_factory() as ctx:
        account = await make_account(ctx, "Customer", timezone="Pacific/Auckland")
        sid = await make_service(ctx, account, plans["Capped"], start_date=date(2026, 1, 10))
    period = "2026-01-10"

    await use(ctx_factory, event(700, service_id=sid), event(5, meter="calls", service_id=sid))
    assert await alerts(ctx_factory, sid) == []
    await use(ctx_factory, event(150, service_id=sid))
    assert await alerts(ctx_factory, sid) == [(period, 80, CAP, "warned")]
    await use(ctx_factory, event(100, service_id=sid))  # 950: nothing new
    assert await alerts(ctx_factory, sid) == [(period, 80, CAP, "warned")]
    assert await status(ctx_factory, sid) == ("active", "manual")

    await use(ctx_factory, event(100, service_id=sid), event(100, account_id=account))  # 1050, 1050
    await use(ctx_factory, event(100, service_id=sid))  # 1150: already disabled, nothing new
    assert await alerts(ctx_factory, sid) == [(period, 80, CAP, "warned"), (period, 100, CAP, "disabled")]
    async with ctx_factory() as ctx:
        service = await load(ctx, sid)
        assert (service.status, service.status_reason) == ("disabled", "cap")
        # Midnight starting 2026-02-10 in Auckland (UTC+13).
        assert service.cap_resets_at == datetime(2026, 2, 9, 11, 0, tzinfo=UTC)
        assert [h[1:] for h in await history(ctx, sid)] == [("active", "manual"), ("disabled", "cap")]
        assert (await audit_actions(ctx, sid)).count("cap_alert") == 2

    r = await client.post(f"/api/v1/services/{sid}/top-ups", json={"bytes": 500, "note": "more"})
    assert r.status_code == 201, r.text
    assert (r.json()["period_start"], r.json()["bytes"], r.json()["note"]) == (period, 500, "more")
    assert await status(ctx_factory, sid) == ("active", "top_up")
    r = await client.get(f"/api/v1/services/{sid}/cap")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "service_id": sid, "period_start": period, "period_end": "2026-02-10", "cap_bytes": 1500,
        "used_bytes": 1150, "pooled": False, "throttled_until": None,
    }  # fmt: skip
    r = await client.get(f"/api/v1/services/{sid}/top-ups")
    assert [t["bytes"] for t in r.json()["items"]] == [500]

    # The raised cap's thresholds fire again, once each.
    await use(ctx_factory, event(100, service_id=sid))  # 1250 of 1500
    await use(ctx_factory, event(300, service_id=sid), event(10, service_id=sid))  # 1560
    assert (await alerts(ctx_factory, sid))[2:] == [
        (period, 80, 1500, "warned"),
        (period, 100, 1500, "disabled"),
    ]
    assert await status(ctx_factory, sid) == ("disabled", "cap")

    clock.set(datetime(2026, 2, 9, 10, 59, tzinfo=UTC))
    async with ctx_factory() as ctx:
        assert await lifecycle.reset_caps(ctx) == []
    clock.set(datetime(2026, 2, 9, 11, 0, tzinfo=UTC))
    async with ctx_factory() as ctx:
        assert await lifecycle.reset_caps(ctx) == [sid]
    assert await status(ctx_factory, sid) == ("active", "cap_reset")
    r = await client.get(f"/api/v1/services/{sid}/cap")
    assert (r.json()["period_start"], r.json()["cap_bytes"], r.json()["used_bytes"]) == ("2026-02-10", CAP, 0)
    # The new period counts from nothing: 900 bytes only warn.
    await use(ctx_factory, event(900, at="2026-02-09T11:00:00Z", service_id=sid))
    assert (await alerts(ctx_factory, sid))[4:] == [("2026-02-10", 80, CAP, "warned")]
    assert await status(ctx_factory, sid) == ("active", "cap_reset")


async def test_a_throttle_holds_until_the_next_period_or_a_top_up(
    ctx_factory: CtxFactory, plans: dict[str, int], client: httpx.AsyncClient, clock: Any
) -> None:
    async with ctx_factory() as ctx:
        account = await make_account(ctx, "Customer")
        sid = await make_service(ctx, account, plans["Throttled"], start_date=date(2026, 1, 1))
    next_period = datetime(2026, 2, 1, tzinfo=UTC)

    await use(ctx_factory, event(CAP, service_id=sid))
    assert [a[1:] for a in await alerts(ctx_factory, sid)] == [(80, CAP, "warned"), (100, CAP, "throttled")]
    async with ctx_factory() as ctx:
        service = await load(ctx, sid)
        assert (service.status, service.throttled_until) == ("active", next_period)
        assert "cap_throttled" in await audit_actions(ctx, sid)
    assert (
        (await client.get(f"/api/v1/services/{sid}/cap")).json()["throttled_until"].startswith("2026-02-01")
    )
    assert (await client.get(f"/api/v1/services/{sid}")).json()["throttled_until"].startswith("2026-02-01")

    r = await client.post(f"/api/v1/services/{sid}/top-ups", json={"bytes": 1000})
    assert r.status_code == 201, r.text
    async with ctx_factory() as ctx:
        service = await load(ctx, sid)
        assert (service.status, service.status_reason, service.throttled_until) == ("active", "manual", None)
        assert "throttle_lifted" in await audit_actions(ctx, sid)
    await use(ctx_factory, event(CAP, service_id=sid))  # 2000 of 2000
    async with ctx_factory() as ctx:
        assert (await load(ctx, sid)).throttled_until == next_period

    # The throttle ends by itself when the period does; the reset job tidies the row.
    clock.set(next_period)
    assert (await client.get(f"/api/v1/services/{sid}/cap")).json()["throttled_until"] is None
    async with ctx_factory() as ctx:
        assert await lifecycle.reset_caps(ctx) == []
        assert (await load(ctx, sid)).throttled_until is None
        assert "throttle_ended" in await audit_actions(ctx, sid)


async def test_a_pooled_cap_on_a_parent_counts_and_holds_its_subtree(
    ctx_factory: CtxFactory, plans: dict[str, int], client: httpx.AsyncClient
) -> None:
    start: dict[str, Any] = {"start_date": date(2026, 1, 1)}
    async with ctx_factory() as ctx:
        parent = await make_account(ctx, "Parent")
        child = await make_account(ctx, "Child", parent)
        grandchild = await make_account(ctx, "Grandchild", child)
        other = await make_account(ctx, "Other")
        pool = await make_service(ctx, parent, plans["Pooled"], start_date=date(2026, 1, 10))
        child_net = await make_service(ctx, child, plans["Plain"], **start)
        child_voice = await make_service(ctx, child, plans["Voice"], **start)
        # Its own cap of 300 bytes holds it too.
        grandchild_net = await make_service(ctx, grandchild, plans["Small"], **start)
        other_net = await make_service(ctx, other, plans["Plain"], **start)

    await use(ctx_factory, event(350, service_id=grandchild_net))  # its own cap: 350 of 300
    assert [a[1:] for a in await alerts(ctx_factory, grandchild_net)] == [
        (80, 300, "warned"), (100, 300, "disabled"),
    ]  # fmt: skip
    await use(ctx_factory, event(5000, service_id=other_net))  # outside the subtree
    await use(ctx_factory, event(450, service_id=child_net))  # the pool: 800
    assert [a[1:] for a in await alerts(ctx_factory, pool)] == [(80, CAP, "warned")]
    assert await status(ctx_factory, child_net) == ("active", "manual")
    await use(ctx_factory, event(300, account_id=grandchild))  # the pool: 1100
    assert [a[1:] for a in await alerts(ctx_factory, pool)] == [(80, CAP, "warned"), (100, CAP, "disabled")]
    for sid in (pool, child_net, grandchild_net):
        assert await status(ctx_factory, sid) == ("disabled", "cap"), sid
    for sid in (child_voice, other_net):
        assert await status(ctx_factory, sid) == ("active", "manual"), sid
    async with ctx_factory() as ctx:
        # Held by both caps: until the later reset, the pool's (its period runs from the 10th).
        assert (await load(ctx, grandchild_net)).cap_resets_at == datetime(2026, 2, 10, tzinfo=UTC)
        assert (await load(ctx, child_net)).cap_resets_at == datetime(2026, 2, 10, tzinfo=UTC)
    r = await client.get(f"/api/v1/services/{pool}/cap")
    assert (r.json()["used_bytes"], r.json()["pooled"]) == (1100, True)

    r = await client.post(f"/api/v1/services/{pool}/top-ups", json={"bytes": 500})
    assert r.status_code == 201, r.text
    assert await status(ctx_factory, pool) == ("active", "top_up")
    assert await status(ctx_factory, child_net) == ("active", "top_up")
    # The pool has room again, but the grandchild's own cap is still used up: until it resets.
    assert await status(ctx_factory, grandchild_net) == ("disabled", "cap")
    async with ctx_factory() as ctx:
        assert (await load(ctx, grandchild_net)).cap_resets_at == datetime(2026, 2, 1, tzinfo=UTC)


async def test_a_cap_read_counts_the_usage_the_fold_has_not_reached_yet(
    ctx_factory: CtxFactory, plans: dict[str, int], client: httpx.AsyncClient, clock: Any
) -> None:
    """What the cap will count, before the fold counts it, and the same after."""
    async with ctx_factory() as ctx:
        parent = await make_account(ctx, "Parent")
        child = await make_account(ctx, "Child", parent)
        newcomer = await make_account(ctx, "Newcomer")
        pool = await make_service(ctx, parent, plans["Pooled"], start_date=date(2025, 12, 10))
        own = await make_service(ctx, child, plans["Capped"], start_date=date(2026, 1, 10))
        newcomer_net = await make_service(ctx, newcomer, plans["Plain"], start_date=date(2026, 1, 10))
    clock.set(datetime(2026, 1, 15, 12, 30, tzinfo=UTC))
    async with ctx_factory() as ctx:
        await accounts.move(ctx, newcomer, parent)
    clock.set(datetime(2026, 1, 15, 12, 45, tzinfo=UTC))
    sent = [
        event(100, service_id=own),  # its own cap and the pool
        event(20, account_id=child),  # the pool only
        event(7, meter="calls", service_id=own),  # not a meter caps count
        event(40, at="2026-01-09T23:00:00Z", service_id=own),  # its first period; the pool's period before
        event(9, at="2026-01-09T23:00:00Z", service_id=newcomer_net),  # the pool's period before
        event(3, service_id=newcomer_net),  # used before its account joined the pool
        event(5, at="2026-01-15T12:40:00Z", service_id=newcomer_net),  # used in the pool
    ]
    async with ctx_factory() as ctx:
        assert {r.status for r in await ingest(ctx, sent)} == {EventStatus.accepted}
    expected = {own: 140, pool: 125, newcomer_net: None}

    async def used() -> dict[int, int | None]:
        found: dict[int, int | None] = {}
        for sid in expected:
            r = await client.get(f"/api/v1/services/{sid}/cap")
            found[sid] = r.json()["used_bytes"] if r.status_code == 200 else None
        return found

    assert await used() == expected
    async with ctx_factory() as ctx:
        assert await fold.catch_up(ctx) == len(sent)
    assert await used() == expected
    await use(ctx_factory, event(1, service_id=own))  # folded and pending together
    async with ctx_factory() as ctx:
        assert await ingest(ctx, [event(10, service_id=own)])
    assert await used() == {own: 151, pool: 136, newcomer_net: None}


async def test_late_usage_for_a_past_period_records_alerts_but_changes_nothing(
    ctx_factory: CtxFactory, plans: dict[str, int]
) -> None:
    async with ctx_factory() as ctx:
        account = await make_account(ctx, "Customer")
        sid = await make_service(ctx, account, plans["Capped"], start_date=date(2025, 12, 10))
    await use(ctx_factory, event(1200, at="2026-01-09T23:00:00Z", service_id=sid))
    assert await alerts(ctx_factory, sid) == [
        ("2025-12-10", 80, CAP, "unchanged"),
        ("2025-12-10", 100, CAP, "unchanged"),
    ]
    assert await status(ctx_factory, sid) == ("active", "manual")
    async with ctx_factory() as ctx:
        state = await caps.state(ctx, sid)
        assert (state.period_start, state.used_bytes) == (date(2026, 1, 10), 0)
        with pytest.raises(Conflict):
            await caps.state(ctx, await make_service(ctx, account, plans["Plain"]))


# --- many workers --------------------------------------------------------------------------------

WORKER = """
import asyncio, sys
from datetime import datetime
from boughs.auth.actor import Actor
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.usage import fold
from boughs.usage.ingest import ingest

url, provider_id, user_id, service_id, worker, now = sys.argv[1:]

async def main():
    db = Database(url)
    clock = FrozenClock(datetime.fromisoformat(now))
    actor = Actor(provider_id=int(provider_id), label="worker", user_id=int(user_id), staff_role="owner")
    async with db.transaction(write=False) as session:  # connect before the start
        pass
    print("ready", flush=True)
    sys.stdin.readline()
    for batch in range(5):
        events = [
            {"id": f"w{worker}-{batch}-{i}", "meter": "data", "quantity": 10,
             "timestamp": "2026-01-15T11:00:00Z", "service_id": int(service_id)}
            for i in range(2)
        ]
        async with db.transaction() as session:
            results = await ingest(Ctx(session=session, clock=clock, actor=actor), events)
        assert all(r.status == "accepted" for r in results), results
        # Every process folds too, at the same time as the others: each batch once.
        async with db.transaction() as session:
            await fold.catch_up(Ctx(session=session, clock=clock, actor=actor))
    await db.dispose()

asyncio.run(main())
"""


async def run_workers(arguments: list[list[str]]) -> None:
    """Start the workers, let them connect, then release them at once."""
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            *args,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for args in arguments
    ]
    for worker in workers:
        assert worker.stdout is not None
        line = await worker.stdout.readline()
        if line.strip() != b"ready":
            _, err = await worker.communicate()
            pytest.fail(f"a worker did not start: {err.decode()}")
    answers = await asyncio.gather(*(w.communicate(b"go\n") for w in workers))
    for worker, (_, err) in zip(workers, answers, strict=True):
        assert worker.returncode == 0, err.decode()


async def test_caps_fire_exactly_once_across_processes(
    ctx_factory: CtxFactory, database_url: str, tenant: Tenant, plans: dict[str, int]
) -> None:
    async with ctx_factory() as ctx:
        account = await make_account(ctx, "Customer")
        sid = await make_service(ctx, account, plans["Capped"], start_date=date(2026, 1, 1))
    await use(ctx_factory, event(700, service_id=sid))
    # Four processes add 100 bytes each, in batches of 20: together they cross 800 and 1000.
    common = [database_url, str(tenant.provider_id), str(tenant.owner_id), str(sid)]
    await run_workers([[*common, str(n), START.isoformat()] for n in range(4)])

    assert [a[1:] for a in await alerts(ctx_factory, sid)] == [(80, CAP, "warned"), (100, CAP, "disabled")]
    async with ctx_factory() as ctx:
        used = await ctx.session.scalar(select(CapUsage.used_bytes).where(CapUsage.service_id == sid))
        assert used == 1100
        to_cap = await ctx.session.scalar(
            select(func.count()).where(
                ServiceStatusChange.service_id == sid, ServiceStatusChange.reason == "cap"
            )
        )
        assert to_cap == 1
        assert (await audit_actions(ctx, sid)).count("cap_alert") == 2
        assert await ctx.session.scalar(select(func.count()).select_from(CapAlert)) == 2
