"""Taking usage in: every event answered on its own, stored once, never lost to a bad neighbour."""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from boughs.accounts.models import Account
from boughs.db import Database
from boughs.providers.models import Provider
from boughs.services import service as services
from boughs.services.models import ServiceStatus
from boughs.usage import fold, retention
from boughs.usage import service as usage
from boughs.usage.ingest import MAX_SCALED, fingerprint, subject_of
from boughs.usage.models import UsageEvent
from boughs.usage.schemas import BatchResult, EventIn, Granularity, UsageScope
from tests.conftest import START, Tenant, make_tenant
from tests.usage.support import (
    event,
    member,
    new_account,
    new_meter,
    new_plan,
    new_service,
    reasons,
    rollup_totals,
    send,
    statuses,
    stored_count,
)

API = "/api/v1"
EARLIER = START - timedelta(hours=2)  # 10:00Z, well inside every window


@dataclass
class World:
    root: int
    child: int
    other: int
    service: int
    data: int  # sum, whole bytes
    minutes: int  # sum, two decimals
    devices: int  # unique_count of properties.device


@pytest.fixture
async def world(ctx_factory: Any) -> World:
    async with ctx_factory() as ctx:
        root = await new_account(ctx, "Root", external_id="root-ext", features={"subaccounts": True})
        child = await new_account(ctx, "Child", root, external_id="child-ext")
        other = await new_account(ctx, "Other")
        service = await new_service(ctx, child, await new_plan(ctx), login="alice")
        data = await new_meter(ctx, "data")
        minutes = await new_meter(ctx, "minutes", unit="minutes", precision=2)
        devices = await new_meter(ctx, "devices", "unique_count", unit="devices", unique_property="device")
    return World(root, child, other, service, data, minutes, devices)


async def test_same_content_in_any_spelling_is_a_duplicate_and_other_content_a_conflict(
    ctx_factory: Any, world: World
) -> None:
    first = [
        event("e1", "100", "2026-01-15T10:10:00Z", account_id=world.child),
        event("e2", "2.5", "2026-01-15T10:20:00Z", "minutes", service_id=world.service),
    ]
    async with ctx_factory() as ctx:
        assert statuses(await send(ctx, first)) == ["accepted", "accepted"]
    again = [
        # The same quantity and instant, written differently.
        event("e1", 100, "2026-01-15T10:10:00Z", account_id=world.child),
        event("e1", "100.0", "2026-01-15T05:10:00-05:00", account_id=world.child),
        event("e1", "1E+2", "2026-01-15T11:10:00+01:00", account_id=world.child),
        event("e2", "2.50", "2026-01-15T10:20:00.000+00:00", "minutes", service_id=world.service),
        # Other content under a taken id.
        event("e1", "101", "2026-01-15T10:10:00Z", account_id=world.child),
        event("e1", "100", "2026-01-15T10:11:00Z", account_id=world.child),
        event("e1", "100", "2026-01-15T10:10:00Z", "minutes", account_id=world.child),
        event("e1", "100", "2026-01-15T10:10:00Z", account_id=world.root),
    ]
    async with ctx_factory() as ctx:
        results = await send(ctx, again)
        assert statuses(results) == ["duplicate"] * 4 + ["conflict"] * 4
        assert all(r.reason and r.reason.startswith("id:") for r in results[4:])
        assert [r.id for r in results] == [e["id"] for e in again]
        assert await stored_count(ctx) == 2
        # Nothing but the first sending counted.
        totals = await rollup_totals(ctx, world.data)
        assert totals[("account", world.child)] == (100, 100, 1)
        assert totals[("subtree", world.root)] == (100, 100, 1)
        assert (await rollup_totals(ctx, world.minutes))[("service", world.service)] == (250, 250, 1)


async def test_repeats_within_a_batch(ctx_factory: Any, world: World) -> None:
    async with ctx_factory() as ctx:
        await send(ctx, [event("stored", "5", EARLIER, account_id=world.child)])
    batch = [
        event("r1", "10", EARLIER, account_id=world.child),
        event("r1", "10.0", EARLIER, account_id=world.child),  # same content
        event("r1", "11", EARLIER, account_id=world.child),  # other content
        event("bad", "1", EARLIER, account_id=999_999_999),  # unknown subject...
        event("bad", "1", EARLIER, account_id=999_999_999),  # ...and its repeat
        event("stored", "6", EARLIER, account_id=world.child),  # differs from what is stored...
        event("stored", "6", EARLIER, account_id=world.child),  # ...and so does its repeat
        event("stored", "5", EARLIER, account_id=world.child),  # as stored
    ]
    async with ctx_factory() as ctx:
        results = await send(ctx, batch)
        assert statuses(results) == [
            "accepted", "duplicate", "conflict", "rejected", "rejected", "conflict", "conflict", "duplicate",
        ]  # fmt: skip
        assert reasons(results)[3] == reasons(results)[4] and reasons(results)[4].startswith("account_id:")
        assert await stored_count(ctx) == 2
        assert (await rollup_totals(ctx, world.data))[("account", world.child)] == (15, 10, 2)


async def test_each_bad_event_is_rejected_naming_its_field_and_its_neighbours_are_kept(
    ctx_factory: Any, world: World, tenant: Tenant, db: Database, clock: Any
) -> None:
    foreign = await make_tenant(db, clock, "Foreign ISP")
    async with ctx_factory(foreign.actor()) as ctx:
        foreign_account = await new_account(ctx, "Foreign", external_id="foreign-ext")
        await new_meter(ctx, "foreign")
    future = START + timedelta(minutes=6)
    bad: list[tuple[Any, str]] = [
        (event("b1", "1", EARLIER, "nope", account_id=world.child), "meter"),
        (event("b2", "1", EARLIER, "foreign", account_id=world.child), "meter"),
        (event("b3", "1", EARLIER, account_id=999_999_999), "account_id"),
        (event("b4", "1", EARLIER, account_id=foreign_account), "account_id"),
        (event("b5", "1", EARLIER, external_account_id="nobody"), "external_account_id"),
        (event("b6", "1", EARLIER, external_account_id="foreign-ext"), "external_account_id"),
        (event("b7", "1", EARLIER, service_id=999_999_999), "service_id"),
        (event("b8", "1", EARLIER, login="nobody"), "login"),
        (event("b9", "1", EARLIER, iccid="8988247000001234567"), "iccid"),
        (event("b10", "1", EARLIER, iccid="not-an-iccid"), "iccid"),
        (event("b11", "1", EARLIER, account_id=world.child, service_id=world.service), "subject"),
        (event("b12", "1", EARLIER), "subject"),
        (event("b13", "-1", EARLIER, account_id=world.child), "quantity"),
        (event("b14", "lots", EARLIER, account_id=world.child), "quantity"),
        (event("b15", "NaN", EARLIER, account_id=world.child), "quantity"),
        (event("b16", "1.5", EARLIER, account_id=world.child), "quantity"),  # data takes whole bytes
        (event("b17", "1.005", EARLIER, "minutes", account_id=world.child), "quantity"),
        (event("b18", "1", future, account_id=world.child), "timestamp"),
        (event("b19", "1", START - timedelta(days=401), account_id=world.child), "timestamp"),
        (event("b20", "1", "2026-01-15T10:00:00", account_id=world.child), "timestamp"),
        (event("b21", "1", "yesterday", account_id=world.child), "timestamp"),
        (event("b22", "1", EARLIER, "devices", account_id=world.child), "properties.device"),
        (
            event("b23", "1", EARLIER, "devices", account_id=world.child, properties={"device": {"a": 1}}),
            "properties.device",
        ),
        (
            {"meter": "data", "quantity": "1", "timestamp": EARLIER.isoformat(), "account_id": world.child},
            "id",
        ),
        (event("b25", "1", EARLIER, account_id=world.child, colour="red"), "colour"),
        ("not an event", "event"),
        (17, "event"),
        ([event("b28", "1", EARLIER, account_id=world.child)], "event"),
        (None, "event"),
        (event("b30", str(MAX_SCALED + 1), EARLIER, account_id=world.child), "quantity"),
        (event("b31", "1E+30", EARLIER, "minutes", account_id=world.child), "quantity"),
    ]
    good = [
        event("g1", "7", EARLIER, account_id=world.child),
        event("g2", "8", EARLIER, external_account_id="root-ext"),
        event("g3", "9", EARLIER, service_id=world.service),
        event("g4", "10", EARLIER, login="alice"),
        event("g5", "0", EARLIER, account_id=world.other),  # zero is a quantity
        event("g6", "1.25", EARLIER, "minutes", account_id=world.child),
        event("g7", "1", START + timedelta(minutes=4), account_id=world.child),  # within the clock tolerance
        event("g8", "1", START - timedelta(days=399), account_id=world.child),  # inside the retention window
        event("g9", "1", EARLIER, "devices", account_id=world.child, properties={"device": 42}),
        # The most one event may carry, twice in one hour: the rollups have room for it.
        event("g10", str(MAX_SCALED), EARLIER, account_id=world.child),
        event("g11", f"{MAX_SCALED}.0", EARLIER, account_id=world.child),
    ]
    batch: list[Any] = []
    expected: dict[int, str] = {}
    for i, (raw, field) in enumerate(bad):
        expected[len(batch)] = field
        batch.append(raw)
        if i < len(good):
            batch.append(good[i])
    async with ctx_factory() as ctx:
        results = await send(ctx, batch)
        for index, result in enumerate(results):
            if index in expected:
                field = expected[index]
                assert result.status == "rejected", (batch[index], result)
                assert result.reason and result.reason.startswith(f"{field}:"), (field, result.reason)
                raw = batch[index]
                assert result.id == (raw.get("id") if isinstance(raw, dict) else None)
            else:
                assert result.status == "accepted", (batch[index], result)
        assert await stored_count(ctx) == len(good)
    why = {r.id: r.reason or "" for r in results if r.id}
    assert "future" in why["b18"] and "retention" in why["b19"] and "timezone" in why["b20"]
    assert "2 decimal places" in why["b17"] and "more than one event" in why["b30"]


async def test_subjects_name_the_account_and_service_the_usage_belongs_to(
    ctx_factory: Any, world: World
) -> None:
    async with ctx_factory() as ctx:
        results = await send(
            ctx,
            [
                event("a", "1", EARLIER, account_id=world.child),
                event("x", "10", EARLIER, external_account_id="child-ext"),
                event("s", "100", EARLIER, service_id=world.service),
                event("l", "1000", EARLIER, login="alice"),
                event("r", "10000", EARLIER, external_account_id="root-ext"),
            ],
        )
        assert statuses(results) == ["accepted"] * 5
        stored = {
            e.event_key: (e.account_id, e.service_id, e.quantity)
            for e in await ctx.session.scalars(select(UsageEvent))
        }
        assert stored == {
            "a": (world.child, None, 1),
            "x": (world.child, None, 10),
            "s": (world.child, world.service, 100),
            "l": (world.child, world.service, 1000),
            "r": (world.root, None, 10000),
        }
        totals = await rollup_totals(ctx, world.data)
        assert totals[("service", world.service)] == (1100, 1000, 2)
        assert totals[("account", world.child)] == (1111, 1000, 4)
        assert totals[("account", world.root)] == (10000, 10000, 1)
        assert totals[("subtree", world.child)] == (1111, 1000, 4)
        assert totals[("subtree", world.root)] == (11111, 10000, 5)
        assert ("subtree", world.other) not in totals

        # An archived service's login is free again and no longer names it; a live service may take it.
        await services.change_status(ctx, world.service, ServiceStatus.archived)
    async with ctx_factory() as ctx:
        gone = await send(ctx, [event("l2", "1", EARLIER, login="alice")])
        assert statuses(gone) == ["rejected"] and reasons(gone)[0].startswith("login:")
        by_id = await send(ctx, [event("s2", "1", EARLIER, service_id=world.service)])
        assert statuses(by_id) == ["accepted"]  # its id still names it: late usage of a closed service
        successor = await new_service(ctx, world.other, await new_plan(ctx), login="alice")
    async with ctx_factory() as ctx:
        assert statuses(await send(ctx, [event("l3", "5", EARLIER, login="alice")])) == ["accepted"]
        totals = await rollup_totals(ctx, world.data)
        assert totals[("service", successor)] == (5, 5, 1)
        assert totals[("service", world.service)] == (1101, 1000, 3)


async def test_stored_instants_are_those_the_columns_hold_however_the_timestamp_was_written(
    ctx_factory: Any, world: World
) -> None:
    """Ingest writes events below the ORM; a time it stores must equal the same instant
    compared through the column (on SQLite: the very text the column type writes)."""
    whole = EARLIER.replace(second=0)
    fraction = EARLIER.replace(second=7, microsecond=120_500)
    offset = fraction.astimezone(timezone(timedelta(hours=5, minutes=30)))
    async with ctx_factory() as ctx:
        results = await send(
            ctx,
            [
                event("whole", "1", whole, account_id=world.child),
                event("fraction", "1", offset.isoformat(), account_id=world.child),
            ],
        )
        assert statuses(results) == ["accepted"] * 2
    async with ctx_factory() as ctx:
        found = {
            key: await ctx.session.scalar(
                select(UsageEvent.event_key).where(
                    UsageEvent.event_key == key, UsageEvent.occurred_at == at, UsageEvent.received_at == START
                )
            )
            for key, at in (("whole", whole), ("fraction", fraction))
        }
        assert found == {"whole": "whole", "fraction": "fraction"}
        stored = await ctx.session.scalar(
            select(UsageEvent.occurred_at).where(UsageEvent.event_key == "fraction")
        )
        assert stored == fraction and stored.tzinfo is not None


async def test_an_account_user_reports_only_within_its_subtree_and_role(
    ctx_factory: Any, world: World
) -> None:
    async with ctx_factory() as ctx:
        admin = await member(ctx, world.child, "admin")
        technical = await member(ctx, world.root, "technical")
        viewer = await member(ctx, world.root, "viewer")
        billing = await member(ctx, world.child, "billing")
    async with ctx_factory(admin) as ctx:
        results = await send(
            ctx,
            [
                event("u1", "1", EARLIER, account_id=world.child),
                event("u2", "1", EARLIER, login="alice"),
                event("u3", "1", EARLIER, account_id=world.root),  # above its account
                event("u4", "1", EARLIER, account_id=world.other),  # another tree
                event("u5", "1", EARLIER, external_account_id="root-ext"),
                event("u6", "1", EARLIER, account_id=999_999_999),  # nobody's
            ],
        )
        assert statuses(results) == ["accepted", "accepted", "rejected", "rejected", "rejected", "rejected"]
        # Out of reach reads exactly like nonexistent: nothing tells the account exists.
        assert reasons(results)[3].replace(str(world.other), "N") == reasons(results)[5].replace(
            "999999999", "N"
        )
        assert reasons(results)[2].replace(str(world.root), "N") == reasons(results)[5].replace(
            "999999999", "N"
        )
        assert "role" not in reasons(results)[3]
    async with ctx_factory(technical) as ctx:
        results = await send(ctx, [event("t1", "1", EARLIER, account_id=world.root)])
        assert statuses(results) == ["accepted"]
    for refused in (viewer, billing):
        async with ctx_factory(refused) as ctx:
            results = await send(ctx, [event(f"v{refused.user_id}", "1", EARLIER, account_id=world.child)])
            assert statuses(results) == ["rejected"]
            assert reasons(results)[0].startswith("account_id:") and "role" in reasons(results)[0]
    async with ctx_factory() as ctx:
        assert await stored_count(ctx) == 3


async def test_usage_of_an_invoiced_period_is_kept_and_flagged_late(
    ctx_factory: Any, world: World, db: Database
) -> None:
    billed_until = datetime(2026, 1, 1, tzinfo=UTC)
    async with db.transaction() as session:
        await session.execute(
            update(Account).where(Account.id == world.root).values(usage_billed_until=billed_until)
        )
    async with ctx_factory() as ctx:
        results = await send(
            ctx,
            [
                event("late", "1", billed_until - timedelta(seconds=1), account_id=world.root),
                event("on-time", "2", billed_until, account_id=world.root),
                event("child", "4", billed_until - timedelta(days=1), account_id=world.child),  # not invoiced
            ],
        )
        assert statuses(results) == ["accepted"] * 3
        assert [r.late for r in results] == [True, False, False]
        late = dict((await ctx.session.execute(select(UsageEvent.event_key, UsageEvent.late))).all())
        assert late == {"late": True, "on-time": False, "child": False}
        # Late usage still counts where it happened.
        assert (await rollup_totals(ctx, world.data))[("subtree", world.root)] == (7, 4, 3)
        again = await send(
            ctx, [event("late", "1", billed_until - timedelta(seconds=1), account_id=world.root)]
        )
        assert statuses(again) == ["duplicate"]


async def test_raw_events_expire_but_their_rollups_stay(
    ctx_factory: Any, world: World, db: Database, clock: Any, tenant: Tenant
) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(Provider).where(Provider.id == tenant.provider_id).values(usage_retention_days=30)
        )
    old, recent = START - timedelta(days=10), START - timedelta(days=1)
    async with ctx_factory() as ctx:
        results = await send(
            ctx,
            [
                event("old", "3", old, account_id=world.child),
                event("recent", "4", recent, account_id=world.child),
                event("too-old", "5", START - timedelta(days=31), account_id=world.child),
            ],
        )
        assert statuses(results) == ["accepted", "accepted", "rejected"]
        assert "30-day retention" in reasons(results)[2]
    clock.advance(timedelta(days=25))  # "old" is now 35 days old, "recent" 26
    async with ctx_factory() as ctx:
        # Not while the fold has still to add it to the rollups: it would be lost.
        assert await retention.purge_expired(ctx) == 0
        assert await fold.catch_up(ctx) == 2
        assert await retention.purge_expired(ctx) == 1
        assert await retention.purge_expired(ctx) == 0
    async with ctx_factory() as ctx:
        keys = list(await ctx.session.scalars(select(UsageEvent.event_key)))
        assert keys == ["recent"]
        answer = await usage.account_usage(
            ctx, world.root, "data", START - timedelta(days=11), START, Granularity.month, UsageScope.subtree
        )
        assert answer.quantity == "7" and answer.events == 2
        # The purged event cannot come back and be counted twice: it is outside the window now.
        resent = await send(ctx, [event("old", "3", old, account_id=world.child)])
        assert statuses(resent) == ["rejected"] and reasons(resent)[0].startswith("timestamp:")


def test_fingerprints_stay_what_stored_events_were_compared_by() -> None:
    """A resent event is a duplicate only if its fingerprint matches the stored one, so the
    canonical form may never change: these are fingerprints events were stored with."""
    cases = [
        (
            {"id": "f1", "meter": "data", "quantity": "1500.0", "timestamp": "2026-03-01T13:30:00+02:00",
             "login": "alice"},
            "507f243e476a0034a7b1b5a08d0cbea1",
        ),
        (
            {"id": "f2", "meter": "voice", "quantity": 12.50, "timestamp": "2026-03-01T11:30:00Z",
             "account_id": 42, "properties": {"b": 1, "a": "x"}},
            "3ac2008729a0eaa5a359117303f4c6fa",
        ),
    ]  # fmt: skip
    for raw, stored in cases:
        sent = EventIn.model_validate(raw)
        assert fingerprint(sent, subject_of(sent), sent.timestamp.astimezone(UTC)) == stored
    # The same usage spelled differently is the same event.
    respelled = EventIn.model_validate(
        {**cases[0][0], "quantity": "1.5E3", "timestamp": "2026-03-01T11:30:00Z"}
    )
    assert fingerprint(respelled, "login", respelled.timestamp.astimezone(UTC)) == cases[0][1]


# --- over HTTP ----------------------------------------------------------------------------------


async def test_the_api_answers_every_event_and_counts_them(
    client: httpx.AsyncClient, ctx_factory: Any, world: World
) -> None:
    batch = {
        "events": [
            event("h1", "100", EARLIER, account_id=world.child),
            "not an object",
            event("h1", "100", EARLIER, account_id=world.child),
            event("h2", "-5", EARLIER, account_id=world.child),
            None,
            event("h3", 5, EARLIER, login="alice"),
        ]
    }
    answer = await client.post(f"{API}/usage-events", json=batch)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["duplicates"], body["conflicts"], body["rejected"]) == (2, 1, 0, 3)
    assert [r["status"] for r in body["results"]] == [
        "accepted", "rejected", "duplicate", "rejected", "rejected", "accepted",
    ]  # fmt: skip
    assert [r["index"] for r in body["results"]] == list(range(6))
    assert body["results"][1]["reason"].startswith("event:")
    # The answer is written without the model: it must still be exactly the documented one.
    documented = BatchResult.model_validate_json(answer.text)
    assert json.loads(documented.model_dump_json()) == body
    conflict = await client.post(
        f"{API}/usage-events", json={"events": [event("h1", "99", EARLIER, account_id=world.child)]}
    )
    assert conflict.json()["conflicts"] == 1
    async with ctx_factory() as ctx:
        assert await stored_count(ctx) == 2


async def test_what_no_column_can_store_is_rejected_per_event(
    client: httpx.AsyncClient, ctx_factory: Any, world: World
) -> None:
    """NaN, infinities and NUL characters pass a JSON parser but no engine stores them."""
    bad = [
        {**event("n1", "1", EARLIER, account_id=world.child), "properties": {"ratio": float("nan")}},
        {**event("n2", "1", EARLIER, account_id=world.child), "properties": {"deep": [1, float("inf")]}},
        {**event("n3", "1", EARLIER, account_id=world.child), "properties": {"note": "a\x00b"}},
        event("n4\x00", "1", EARLIER, account_id=world.child),
        event("n5", "1", EARLIER, login="ali\x00ce"),
    ]
    good = event("n6", "1", EARLIER, account_id=world.child)
    # Python's encoder writes NaN and Infinity as senders' JSON libraries often do.
    body = json.dumps({"events": [*bad, good]})
    answer = await client.post(
        f"{API}/usage-events", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == ["rejected"] * 5 + ["accepted"]
    assert [r["reason"].split(":")[0] for r in results[:5]] == [
        "properties.ratio", "properties.deep.1", "properties.note", "id", "login",
    ]  # fmt: skip
    async with ctx_factory() as ctx:
        assert await stored_count(ctx) == 1


async def test_a_batch_over_a_thousand_or_malformed_json_is_refused_whole(
    client: httpx.AsyncClient, ctx_factory: Any, world: World
) -> None:
    events = [event(f"big{i}", "1", EARLIER, account_id=world.child) for i in range(1001)]
    answer = await client.post(f"{API}/usage-events", json={"events": events})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "events" in [e["field"] for e in answer.json()["errors"]]
    at_limit = await client.post(f"{API}/usage-events", json={"events": events[:1000]})
    assert at_limit.status_code == 200 and at_limit.json()["accepted"] == 1000
    async with ctx_factory() as ctx:
        assert (await rollup_totals(ctx, world.data))[("subtree", world.root)] == (1000, 1, 1000)

    for body in (b'{"events": [', b"events", b'{"events": {"id": "x"}}', b"{}", b"[]"):
        answer = await client.post(
            f"{API}/usage-events", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json"), body
        assert answer.json()["errors"], body
    async with ctx_factory() as ctx:
        assert await stored_count(ctx) == 1000


def test_accounts_named_by_id_are_looked_up_by_key_whatever_sqlite_sampled(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """ANALYZE with an analysis_limit (as after imports and every few hours) samples a
    one-provider file as if each provider had a thousand accounts: the lookup must still
    go by key, not scan the provider's accounts."""
    from boughs.authz.scope import Scope
    from boughs.sqlite_inline import InlineSQLiteDialect
    from boughs.usage.repository import _accounts

    path = tmp_path / "sampled.sqlite3"
    shutil.copyfile(sqlite_template, path)
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "INSERT INTO providers (id, name, default_timezone, default_currency, created_at, updated_at) "
            "VALUES (1, 'One ISP', 'UTC', 'USD', '2026-01-01', '2026-01-01')"
        )
        conn.executemany(
            "INSERT INTO accounts (id, provider_id, root_id, path, depth, name, description, status, "
            "invoice_mode, parent_access, features, created_at, updated_at) "
            "VALUES (?, 1, ?, ?, 0, ?, '', 'active', 'separate', 'manage', '{}', '2026-01-01', '2026-01-01')",
            [(i, i, f"/{i}/", f"Account {i}") for i in range(1, 20_001)],
        )
        conn.commit()
        conn.execute("PRAGMA analysis_limit=1000")
        conn.execute("ANALYZE")
        # A batch names a few hundred accounts.
        wanted = list(range(7, 20_000, 50))
        everything = Scope(provider_id=1, whole_provider=True, staff_role="owner")
        statement = _accounts(everything, Account.id, by_key=True).where(Account.id.in_(wanted))
        sql = str(statement.compile(dialect=InlineSQLiteDialect(), compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(step[3]) for step in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        found = [row[0] for row in conn.execute(sql)]
    finally:
        conn.close()
    assert "PRIMARY KEY" in plan and "provider_id=" not in plan, plan
    assert sorted(found) == wanted


def test_the_api_checks_each_event_before_its_unit_of_work_begins() -> None:
    """The forms need no database: checked before the write (on SQLite, the one write lock)."""
    from fastapi.routing import APIRoute

    from boughs.deps import unit_of_work
    from boughs.usage.api import _formed, router

    (route,) = [
        r for r in router.routes
        if isinstance(r, APIRoute) and r.path.endswith("/usage-events") and "POST" in r.methods
    ]  # fmt: skip
    calls = [d.call for d in route.dependant.dependencies]
    assert calls.index(_formed) < calls.index(unit_of_work), calls
