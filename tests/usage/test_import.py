"""`boughs usage import`: mediation files taken batch by batch, every row answered."""

from __future__ import annotations

import asyncio
import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from boughs.audit.models import AuditEvent
from boughs.auth.actor import Actor
from boughs.cli import app as cli
from boughs.config import get_settings
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.kit.errors import InvalidInput, NotFound
from boughs.usage import service as usage
from boughs.usage.importer import import_usage, rejects_path_for
from boughs.usage.models import UsageEvent
from boughs.usage.schemas import Granularity, MeterCreate, UsageScope
from tests.conftest import Tenant
from tests.services.lifecycle_support import make_account, make_plan, make_service

HEADER = "id,meter,quantity,timestamp,account_id,external_account_id,service_id,login,iccid,properties"
DAY = (datetime(2026, 1, 14, tzinfo=UTC), datetime(2026, 1, 15, tzinfo=UTC))


@dataclass
class World:
    parent: int
    child: int
    service: int


@pytest.fixture
async def world(ctx_factory: Any) -> World:
    async with ctx_factory() as ctx:
        await usage.create_meter(ctx, MeterCreate(code="data", name="Data", unit="bytes", aggregation="sum"))
        parent = await make_account(ctx, "Parent")
        child = await make_account(ctx, "Child", parent, external_id="CUST-1")
        plan = await make_plan(ctx, "Home", kind="internet", download_rate=1000, upload_rate=100)
        service = await make_service(ctx, child, plan.id, login="home-1")
    return World(parent, child, service)


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def read_rejects(path: Path) -> dict[int, tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "id", "reason"]
    return {int(line): (event_id, reason) for line, event_id, reason in rows[1:]}


async def quantity(
    db: Database, clock: FrozenClock, tenant: Tenant, account_id: int, scope: UsageScope
) -> str:
    async with db.transaction(write=False) as session:
        ctx = Ctx(session=session, clock=clock, actor=tenant.actor())
        out = await usage.account_usage(ctx, account_id, "data", *DAY, Granularity.day, scope)
    return out.quantity


async def stored_events(db: Database) -> int:
    async with db.transaction(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(UsageEvent))).scalar_one())


async def test_valid_rows_are_kept_and_every_other_row_is_reported(
    db: Database, clock: FrozenClock, tenant: Tenant, world: World, tmp_path: Path
) -> None:
    c, p, s = world.child, world.parent, world.service
    at = "2026-01-14T10:00:00Z"
    text = "\n".join(
        [
            HEADER,
            f"a1,data,100,{at},{c},,,,,",  # 2
            'a2,data,50,2026-01-14T10:30:00Z,,CUST-1,,,,"{""cell"": ""A1"", ""note"": ""x,y""}"',  # 3
            f"a3,data,7,2026-01-14T11:00:00Z,,,{s},,,",  # 4
            "a4,data, 3 ,2026-01-14T11:00:00Z,,,,home-1,,",  # 5: cells are trimmed
            "",  # 6: blank lines are skipped
            f"a1,data,100,{at},{c},,,,,",  # 7: the same event again, in the same batch
            "a2,data,51,2026-01-14T10:30:00Z,,CUST-1,,,,",  # 8: the same id, other content
            f"b1,data,1,{at},{c},,,,",  # 9
            f'b2,data,"1"x,{at},{c},,,,,',  # 10
            f"b3,data,1,{at},{c},,,,,{{not json",  # 11
            f"b4,data,1,{at},{c},,,,,[1]",  # 12
            f"b5,,1,{at},{c},,,,,",  # 13
            f"b6,nope,1,{at},{c},,,,,",  # 14
            f"b7,data,-1,{at},{c},,,,,",  # 15
            f"b8,data,1,2026-01-16T10:00:00Z,{c},,,,,",  # 16
            f"b9,data,1,{at},,,,,8944500102198304826,",  # 17
            f"b10,data,1,{at},{c},CUST-1,,,,",  # 18
            f"b11,data,1.5,{at},{c},,,,,",  # 19
            f"b12,data,1,{at},{c},,,,,\x00",  # 20
            f"b13,data,1,{at},{c},,,home-\udcff,,",  # 21: not UTF-8 in the file
            f'b15,data,1,{at},{c},,,,,"{{""level"": NaN}}"',  # 22: not JSON, though Python reads it
            f'b16,data,1,{at},{c},,,,,"{{""cell"": ""\\u0000""}}"',  # 23
            f'a5,data,2,2026-01-14T12:00:00Z,{p},,,,,"{{""multi"":',  # 24
            '""line""}"',  # 25
            f"a6,data,4,2026-01-14T13:00:00Z,{c},,,,,",  # 26
            f'b14,data,1,{at},{c},,,,,"{{""never"": ""closed}}',  # 27
            f"a7,data,1,{at},{c},,,,,",  # 28: swallowed by the open quote above
        ]
    )
    source = write(tmp_path / "usage.csv", text.encode("utf-8", "surrogateescape") + b"\n")
    progress: list[tuple[int, int]] = []
    report = await import_usage(
        db, tenant.provider_id, source, clock=clock, batch_size=5, on_progress=lambda *p: progress.append(p)
    )

    assert (report.accepted, report.duplicates, report.conflicts, report.rejected) == (6, 1, 1, 16)
    assert report.rows == 24 and not report.ok and report.rate > 0
    assert report.rejects_path == tmp_path / "usage.rejects.csv" == rejects_path_for(source)
    rejects = read_rejects(report.rejects_path)
    expected = {
        8: ("a2", "an event with this id and different content was already taken"),
        9: ("b1", "has 9 fields but the header has 10"),
        10: ("", "is not valid CSV"),
        11: ("b3", "properties: is not valid JSON"),
        12: ("b4", "properties: must be a JSON object"),
        13: ("b5", "meter: is empty"),
        14: ("b6", "meter: there is no meter 'nope'"),
        15: ("b7", "quantity:"),
        16: ("b8", "timestamp: is in the future"),
        17: ("b9", "iccid:"),
        18: ("b10", "give exactly one of"),
        19: ("b11", "quantity: meter 'data' takes whole numbers"),
        20: ("b12", "NUL"),
        21: ("b13", "not valid UTF-8"),
        22: ("b15", "properties: is not valid JSON (NaN is not a JSON value)"),
        23: ("b16", "properties: contains a NUL character"),
        27: ("", "never closed, so lines 27-28 were read as one row"),
    }
    assert sorted(rejects) == sorted(expected), rejects
    for line, (event_id, reason) in expected.items():
        assert rejects[line][0] == event_id and reason in rejects[line][1], (line, rejects[line])
    assert [line for line, _, _ in report.first_problems] == sorted(expected)[:10]

    # The rows taken are in the rollups exactly once; the parent's subtree holds its own too.
    assert await quantity(db, clock, tenant, c, UsageScope.self) == str(100 + 50 + 7 + 3 + 4)
    assert await quantity(db, clock, tenant, p, UsageScope.subtree) == str(100 + 50 + 7 + 3 + 4 + 2)
    assert progress[0] == (0, 27) and progress[-1] == (24, 24)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    async with db.transaction(write=False) as session:
        audit = (
            await session.execute(select(AuditEvent).where(AuditEvent.entity == "usage_events"))
        ).scalars()
        [imported] = list(audit)
    assert imported.action == "imported" and imported.actor_label == "system:usage-import"
    assert imported.after == {
        "file": "usage.csv", "rows": 24, "accepted": 6, "duplicates": 1, "conflicts": 1, "rejected": 16,
    }  # fmt: skip


class Crash(Exception):
    pass


async def test_a_crash_keeps_committed_batches_and_a_rerun_counts_them_as_duplicates(
    db: Database, clock: FrozenClock, tenant: Tenant, world: World, tmp_path: Path
) -> None:
    rows = [f"e{i},data,{i},2026-01-14T{i % 24:02d}:00:00Z,{world.child},,,,," for i in range(1, 26)]
    source = write(tmp_path / "day.csv", "\n".join([HEADER, *rows]))
    rejects = tmp_path / "out" / "rejects.csv"
    rejects.parent.mkdir()

    def crash_after_first_batch(done: int, _total: int) -> None:
        if done == 10:
            raise Crash

    with pytest.raises(Crash):
        await import_usage(
            db, tenant.provider_id, source, clock=clock, batch_size=10,
            rejects_path=rejects, on_progress=crash_after_first_batch,
        )  # fmt: skip
    assert await stored_events(db) == 10
    assert read_rejects(rejects) == {}

    again = await import_usage(
        db, tenant.provider_id, source, clock=clock, batch_size=10, rejects_path=rejects
    )
    assert (again.accepted, again.duplicates, again.conflicts, again.rejected) == (15, 10, 0, 0) and again.ok
    assert await stored_events(db) == 25
    assert await quantity(db, clock, tenant, world.parent, UsageScope.subtree) == str(sum(range(1, 26)))


async def test_a_header_it_cannot_use_is_refused_before_anything_is_written(
    db: Database, clock: FrozenClock, tenant: Tenant, world: World, tmp_path: Path
) -> None:
    row = f"e1,data,1,2026-01-14T10:00:00Z,{world.child}"
    cases = {
        "id,quantity,timestamp,account_id": "the header has no 'meter' column",
        "id,meter,quantity,timestamp": "the header has no subject column",
        "id,meter,quantity,timestamp,account_id,colour": "unknown column(s) 'colour'",
        "id,meter,quantity,timestamp,account_id,Meter": "column(s) 'meter' appear more than once",
        "": "the file is empty",
    }
    for header, message in cases.items():
        source = write(tmp_path / "bad.csv", f"{header}\n{row}\n" if header else "")
        with pytest.raises(InvalidInput) as refused:
            await import_usage(db, tenant.provider_id, source, clock=clock)
        assert message in refused.value.detail, (header, refused.value.detail)
        assert refused.value.fix
    good = write(tmp_path / "good.csv", f"id,meter,quantity,timestamp,account_id\n{row}\n")
    with pytest.raises(NotFound):
        await import_usage(db, tenant.provider_id + 100, good, clock=clock)
    with pytest.raises(InvalidInput, match="the file being imported"):
        await import_usage(db, tenant.provider_id, good, clock=clock, rejects_path=good)
    assert await stored_events(db) == 0
    assert not rejects_path_for(tmp_path / "bad.csv").exists() and not rejects_path_for(good).exists()


# --- the command ----------------------------------------------------------------------------


async def _set_up(url: str, clock: FrozenClock) -> int:
    from tests.conftest import make_tenant

    db = Database(url)
    try:
        tenant = await make_tenant(db, clock)
        async with db.transaction() as session:
            ctx = Ctx(session=session, clock=clock, actor=Actor.system(tenant.provider_id, "test"))
            await usage.create_meter(
                ctx, MeterCreate(code="voice", name="Voice", unit="minutes", aggregation="sum", precision=2)
            )
            return await make_account(ctx, "Front desk")
    finally:
        await db.dispose()


def test_the_command_imports_reports_and_says_so_in_its_exit_code(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command reads the real clock: usage from an hour ago is recent on any day.
    now = datetime.now(UTC).replace(microsecond=0)
    account = asyncio.run(_set_up(database_url, FrozenClock(now)))
    monkeypatch.setenv("BOUGHS_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        at = now.replace(minute=0, second=0).isoformat()
        source = write(
            tmp_path / "calls.csv",
            f"id,meter,quantity,timestamp,account_id\nc1,voice,1.25,{at},{account}\n"
            f"c2,voice,2.5,{at},{account}\nc3,voice,0.125,{at},{account}\n",
        )
        runner = CliRunner()
        first = runner.invoke(cli, ["usage", "import", str(source)])
        assert first.exit_code == 1, first.output
        assert (
            "3 rows in" in first.stdout
            and "2 accepted, 0 duplicates, 0 conflicts, 1 rejected" in first.stdout
        )
        assert "line 4 (c3): quantity: meter 'voice' takes at most 2 decimal places" in first.stdout
        assert "1 row not taken; every one is in" in first.output
        assert read_rejects(tmp_path / "calls.rejects.csv").keys() == {4}

        clean = write(tmp_path / "clean.csv", source.read_text().replace("0.125", "0.13"))
        elsewhere = tmp_path / "reports" / "clean-rejects.csv"
        elsewhere.parent.mkdir()
        second = runner.invoke(cli, ["usage", "import", str(clean), "--rejects", str(elsewhere)])
        assert second.exit_code == 0, second.output
        assert "1 accepted, 2 duplicates, 0 conflicts, 0 rejected" in second.stdout
        assert read_rejects(elsewhere) == {} and not (tmp_path / "clean.rejects.csv").exists()
        assert (
            "Exit status: 0 when every row was taken"
            in runner.invoke(cli, ["usage", "import", "--help"]).stdout
        )
    finally:
        get_settings.cache_clear()
