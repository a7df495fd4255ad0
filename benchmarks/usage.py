"""Usage ingestion at scale: events over HTTP into a large tree, beside the raw engine.

A 10-ary tree of accounts (five levels: 111,110 accounts) is imported, with an internet
service on every fifth account and three meters (internet bytes that count toward caps,
voice minutes to the hundredth, API calls counted). Boughs then takes the events over
HTTP: a real `boughs serve` process (uvicorn, one worker, with its embedded job workers)
on the database, fed batches of 1,000 by concurrent clients, with idempotency (sender ids,
content fingerprints) and rollups (service, account, and the usage below every ancestor)
on: a round is timed until every batch is answered and the workers have folded it into
the rollups. The reference writes
the same rows with the raw engine into a scratch table of the same shape (the columns,
unique key, indexes and foreign keys of ``usage_events``), in the same batches, a
transaction each: COPY through psycopg on PostgreSQL, with as many writers as there are
clients; executemany through sqlite3 in WAL mode on SQLite, with one writer, since
SQLite takes one at a time. The two alternate in rounds, so drift on a noisy machine
hits both alike.

Then the subtree usage of the top account of one of the ten trees (11,111 accounts)
over the events' 30 days, day by day, through ``usage.service.account_usage``, beside a
plain SUM over the same rollup rows on the bare driver.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

from benchmarks.harness import RESULTS_DIR, Figure, Report, paired_ms
from benchmarks.hierarchy import FANOUT, Raw, _dsn, write_csv
from boughs.accounts.importer import import_csv
from boughs.accounts.models import Account
from boughs.auth import service as auth
from boughs.auth.actor import Actor, StaffRole
from boughs.catalog import service as catalog
from boughs.catalog.schemas import PlanCreate
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import SystemClock
from boughs.kit.types import hour_number
from boughs.schema import upgrade
from boughs.services.models import Service
from boughs.usage import service as usage
from boughs.usage.schemas import Granularity, MeterCreate, UsageScope

SUITE = "usage"
WORK = RESULTS_DIR / "work-usage"
RAW_TABLE = "usage_events_raw"
SQLITE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "foreign_keys=ON",
    "busy_timeout=30000",
    "cache_size=-65536",
)
RAW_COLUMNS = (
    "provider_id", "event_key", "meter_id", "account_id", "service_id", "quantity", "occurred_at",
    "received_at", "fingerprint", "late", "properties",
)  # fmt: skip
# The issue's targets.
MIN_SHARE_OF_RAW = 0.40
P99_LIMIT_MS = 250.0
SUBTREE_LIMIT_MS = 50.0
WINDOW = timedelta(days=30)
METERS = (
    MeterCreate(
        code="internet_bytes", name="Internet data", unit="bytes", aggregation="sum", counts_toward_cap=True
    ),
    MeterCreate(code="voice_minutes", name="Voice minutes", unit="minutes", aggregation="sum", precision=2),
    MeterCreate(code="api_calls", name="API calls", unit="calls", aggregation="count"),
)


@dataclass(frozen=True)
class Sizes:
    levels: int = 5
    events: int = 1_000_000
    clients: int = 4
    batch: int = 1000
    rounds: int = 10
    # `boughs serve --processes`: more than one only pays with cores to spare; on two cores
    # the server, its workers, the database and the clients already share them.
    processes: int = 1
    # An internet service on every n-th account.
    service_every: int = 5
    repeat: int = 20

    @property
    def accounts(self) -> int:
        return sum(FANOUT**k for k in range(1, self.levels + 1))


@dataclass
class Engine:
    name: str
    url: str
    cleanup: Callable[[], None]


def _sqlite(tag: str) -> Engine:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{tag}.sqlite3"

    def cleanup() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    cleanup()
    return Engine("sqlite", f"sqlite+aiosqlite:///{path}", cleanup)


def _postgres(admin_url: str, tag: str) -> Engine:
    admin = make_url(admin_url).set(drivername="postgresql+psycopg")
    name = f"boughs_bench_{tag}_{uuid.uuid4().hex[:6]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def cleanup() -> None:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return Engine("postgres", admin.set(database=name).render_as_string(hide_password=False), cleanup)


# --- the tree, its services and meters ------------------------------------------------------


@dataclass
class World:
    provider_id: int
    token: str
    account_ids: list[int]
    external_ids: list[str]  # parallel to account_ids
    services: dict[int, tuple[int, str]]  # account id → (service id, login)
    meters: dict[str, int]
    top: int  # the top of the subtree the usage query reads
    subtree: frozenset[int]


async def build_world(engine: Engine, sizes: Sizes) -> World:
    upgrade(engine.url)
    db = Database(engine.url)
    clock = SystemClock()
    now = clock.now()
    try:
        async with db.transaction() as session:
            provider = await auth.ensure_provider(session, "Benchmark ISP", now)
            owner = await auth.create_user(
                session, provider.id, f"owner-{uuid.uuid4().hex[:6]}@bench.test", "Bench-mark-2026", now,
                staff_role=StaffRole.owner,
            )  # fmt: skip
            token = (await auth.issue_token(session, owner, "bench", now)).token
        actor = Actor(provider.id, f"user:{owner.email}", owner.id, StaffRole.owner)
        csv_path = WORK / f"usage-tree-{sizes.levels}.csv"
        write_csv(csv_path, sizes.levels)
        try:
            imported = await import_csv(db, provider.id, csv_path, clock=clock)
        finally:
            csv_path.unlink(missing_ok=True)
        if not imported.ok:
            raise RuntimeError(f"the tree import failed: {imported.rejected[:3]}")
        async with db.transaction() as session:
            ctx = Ctx(session=session, clock=clock, actor=actor)
            meters = {m.code: (await usage.create_meter(ctx, m)).id for m in METERS}
            plan = await catalog.create_plan(
                ctx,
                PlanCreate(
                    name="Bench Fibre", kind="internet", price_amount=3000, currency="USD", public=True,
                    download_rate=100_000, upload_rate=20_000,
                ),  # type: ignore[call-arg]
            )  # fmt: skip
            rows = (
                await session.execute(
                    select(Account.id, Account.external_id, Account.path)
                    .where(Account.provider_id == provider.id)
                    .order_by(Account.id)
                )
            ).all()
        account_ids = [r.id for r in rows]
        external_ids = [str(r.external_id) for r in rows]
        top_path = next(r.path for r in rows if r.external_id == "n0")
        subtree = frozenset(r.id for r in rows if r.path.startswith(top_path))
        wanted = account_ids[:: sizes.service_every]
        async with db.transaction() as session:
            for start in range(0, len(wanted), 5000):
                await session.execute(
                    insert(Service),
                    [
                        {
                            "provider_id": provider.id, "account_id": a, "plan_id": plan.id,
                            "status": "active", "status_changed_at": now, "start_date": now.date(),
                            "login": f"bench-{a}", "created_at": now, "updated_at": now,
                        }
                        for a in wanted[start : start + 5000]
                    ],
                )  # fmt: skip
            found = (
                await session.execute(
                    select(Service.account_id, Service.id, Service.login).where(
                        Service.provider_id == provider.id
                    )
                )
            ).all()
        services = {r.account_id: (r.id, str(r.login)) for r in found}
        return World(
            provider.id, token, account_ids, external_ids, services, meters,
            top=next(r.id for r in rows if r.external_id == "n0"), subtree=subtree,
        )  # fmt: skip
    finally:
        await db.dispose()


def sqlite_time(moment: datetime) -> str:
    """How the UTC columns hold a time on SQLite."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def stored_time(engine: str, moment: datetime) -> Any:
    return sqlite_time(moment) if engine == "sqlite" else moment


def stored_hour(engine: str, moment: datetime) -> Any:
    """An hour as the rollups store it (``UTCHour``): a number on SQLite."""
    return hour_number(moment) if engine == "sqlite" else moment


# --- the events -----------------------------------------------------------------------------


@dataclass
class Workload:
    """The events, batch by batch: the request bodies Boughs gets and the rows the raw
    engine writes. Made before anything is timed."""

    start: datetime
    end: datetime
    bodies: list[bytes] = field(default_factory=list)
    rows: list[list[tuple[Any, ...]]] = field(default_factory=list)
    subtree_internet_bytes: int = 0


def make_workload(world: World, sizes: Sizes, engine: str) -> Workload:
    rng = random.Random(20261122)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - WINDOW
    seconds = int(WINDOW.total_seconds())
    sqlite = engine == "sqlite"
    received_at = stored_time(engine, datetime.now(UTC))
    ids, external_ids, services, meters = world.account_ids, world.external_ids, world.services, world.meters
    work = Workload(start=start, end=end)
    n_accounts = len(ids)
    with_service = [position for position, account in enumerate(ids) if account in services]
    for first in range(0, sizes.events, sizes.batch):
        events: list[dict[str, Any]] = []
        rows: list[tuple[Any, ...]] = []
        for i in range(first, min(first + sizes.batch, sizes.events)):
            choice = rng.random()
            # Internet usage comes from the accounts with a service; the rest from any account.
            position = rng.choice(with_service) if choice < 0.6 else rng.randrange(n_accounts)
            account = ids[position]
            at = start + timedelta(seconds=rng.randrange(seconds))
            event: dict[str, Any] = {
                "id": f"bench-{i:08d}",
                "timestamp": at.isoformat().replace("+00:00", "Z"),
            }
            service_id = None
            if choice < 0.6:
                service = services[account]
                scaled = rng.randint(10_000, 500_000_000)
                event.update(meter="internet_bytes", quantity=str(scaled), login=service[1])
                service_id = service[0]
                if account in world.subtree:
                    work.subtree_internet_bytes += scaled
            elif choice < 0.85:
                scaled = rng.randint(1, 6000)
                event.update(meter="voice_minutes", quantity=f"{scaled / 100:.2f}", account_id=account)
            else:
                scaled = 1
                event.update(meter="api_calls", quantity="1", external_account_id=external_ids[position])
            events.append(event)
            encoded = json.dumps(event, sort_keys=True).encode()
            rows.append(
                (
                    world.provider_id, event["id"], meters[event["meter"]], account, service_id, scaled,
                    sqlite_time(at) if sqlite else at, received_at,
                    hashlib.blake2b(encoded, digest_size=16).hexdigest(), False, None,
                )
            )  # fmt: skip
        work.bodies.append(json.dumps({"events": events}).encode())
        work.rows.append(rows)
    return work


# --- Boughs over HTTP -----------------------------------------------------------------------


class Server:
    """`boughs serve` in its own process on the benchmark's database."""

    def __init__(self, url: str, processes: int = 1) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "BOUGHS_DATABASE_URL": url, "BOUGHS_LOG_LEVEL": "WARNING"}
        WORK.mkdir(parents=True, exist_ok=True)
        self.log = WORK / f"server-{self.port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "boughs.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--processes", str(processes)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    async def ready(self, within_seconds: float = 60.0) -> None:
        deadline = time.monotonic() + within_seconds
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"boughs serve exited:\n{self.output()}")
                try:
                    if (await client.get(f"{self.base}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError("boughs serve did not answer /healthz in time")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


PENDING_SQL = "SELECT count(*) FROM usage_batches WHERE folded_at IS NULL"


async def folded(raw: Raw, within_seconds: float = 600.0) -> None:
    """Wait until the server's workers have folded every batch into the rollups."""
    deadline = time.monotonic() + within_seconds
    while (await raw.one(PENDING_SQL))[0]:
        if time.monotonic() > deadline:
            raise RuntimeError("the fold did not catch up in time")
        await asyncio.sleep(0.01)


async def post_batches(server: Server, token: str, bodies: list[bytes], clients: int) -> list[float]:
    """Send the bodies from ``clients`` concurrent clients; each batch's latency in ms."""
    queue = list(reversed(bodies))
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=server.base, headers=headers, timeout=300) as http:
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                answer = await http.post("/api/v1/usage-events", content=body)
                latencies.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(
                        f"POST /usage-events answered {answer.status_code}: {answer.text[:500]}"
                    )
                summary = answer.json()
                if summary["accepted"] != len(summary["results"]):
                    refused = [r for r in summary["results"] if r["status"] != "accepted"][:3]
                    raise RuntimeError(f"events were not accepted: {refused}")

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


# --- the raw engine -------------------------------------------------------------------------


def create_raw_table(engine: Engine) -> None:
    """A scratch table shaped like usage_events: columns, unique key, indexes, foreign keys."""
    if engine.name == "sqlite":
        with sqlite3.connect(_dsn(engine.url)) as conn:
            statements = [
                sql
                for (sql,) in conn.execute(
                    "SELECT sql FROM sqlite_master WHERE tbl_name = 'usage_events' AND sql IS NOT NULL "
                    "ORDER BY type DESC"  # the table before its indexes
                )
            ]
            for sql in statements:
                conn.execute(sql.replace("usage_events", RAW_TABLE))
        return
    with psycopg.connect(_dsn(engine.url), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {RAW_TABLE} (LIKE usage_events INCLUDING ALL)")
        foreign_keys = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'usage_events'::regclass AND contype = 'f'"
        ).fetchall()
        for (definition,) in foreign_keys:
            conn.execute(f"ALTER TABLE {RAW_TABLE} ADD {definition}")


class RawWriter:
    """Writes batches of rows, a transaction each, on as many connections as writers."""

    def __init__(self, engine: Engine, writers: int) -> None:
        self.engine = engine.name
        self.dsn = _dsn(engine.url)
        self.writers = writers if engine.name == "postgres" else 1
        self.latencies: list[float] = []
        self._lock = threading.Lock()
        self._connections: list[Any] = []

    def open(self) -> None:
        for _ in range(self.writers):
            if self.engine == "sqlite":
                conn = sqlite3.connect(self.dsn, isolation_level=None, check_same_thread=False)
                # The pragmas Boughs's connections run with.
                for pragma in SQLITE_PRAGMAS:
                    conn.execute(f"PRAGMA {pragma}")
            else:
                conn = psycopg.connect(self.dsn)
            self._connections.append(conn)

    def close(self) -> None:
        for conn in self._connections:
            conn.close()

    def _write(self, conn: Any, rows: list[tuple[Any, ...]]) -> None:
        started = time.perf_counter()
        if self.engine == "sqlite":
            conn.execute("BEGIN IMMEDIATE")
            marks = ", ".join("?" * len(RAW_COLUMNS))
            conn.executemany(f"INSERT INTO {RAW_TABLE} ({', '.join(RAW_COLUMNS)}) VALUES ({marks})", rows)
            conn.execute("COMMIT")
        else:
            statement = f"COPY {RAW_TABLE} ({', '.join(RAW_COLUMNS)}) FROM STDIN"
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        elapsed = (time.perf_counter() - started) * 1000
        with self._lock:
            self.latencies.append(elapsed)

    def write(self, batches: list[list[tuple[Any, ...]]]) -> None:
        shares = [batches[k :: self.writers] for k in range(self.writers)]

        def run(conn: Any, share: list[list[tuple[Any, ...]]]) -> None:
            for rows in share:
                self._write(conn, rows)

        threads = [
            threading.Thread(target=run, args=(conn, share))
            for conn, share in zip(self._connections, shares, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


# --- the suite ------------------------------------------------------------------------------


def _percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


SUBTREE_SQL = (
    "SELECT coalesce(sum(total), 0), coalesce(sum(events), 0) FROM usage_rollups "
    "WHERE meter_id = ? AND kind IN ('account', 'below') AND subject_id = ? AND hour >= ? AND hour < ?"
)


async def run_engine(engine: Engine, sizes: Sizes, report: Report, details: dict[str, Any]) -> None:
    started = time.perf_counter()
    world = await build_world(engine, sizes)
    create_raw_table(engine)
    raw = Raw(engine.name, _dsn(engine.url))
    await raw.open()
    await raw.execute("ANALYZE")
    setup_seconds = time.perf_counter() - started
    started = time.perf_counter()
    work = make_workload(world, sizes, engine.name)
    print(
        f"usage/{engine.name}: {len(world.account_ids):,} accounts, {len(world.services):,} services; "
        f"{sizes.events:,} events made in {time.perf_counter() - started:.1f} s "
        f"(setup {setup_seconds:.1f} s)",
        flush=True,
    )

    server = Server(engine.url, sizes.processes)
    writer = RawWriter(engine, sizes.clients)
    # Answered: until the last batch is answered; ours: until the workers have also folded
    # every batch into the rollups, the figure held against the raw rate.
    answered_seconds = ours_seconds = theirs_seconds = 0.0
    ours_latencies: list[float] = []
    try:
        await server.ready()
        writer.open()
        per_round = -(-len(work.bodies) // sizes.rounds)
        for first in range(0, len(work.bodies), per_round):
            mark = time.perf_counter()
            ours_latencies += await post_batches(
                server, world.token, work.bodies[first : first + per_round], sizes.clients
            )
            answered_seconds += time.perf_counter() - mark
            await folded(raw)
            ours_seconds += time.perf_counter() - mark
            mark = time.perf_counter()
            await asyncio.to_thread(writer.write, work.rows[first : first + per_round])
            theirs_seconds += time.perf_counter() - mark
            done = min(first + per_round, len(work.bodies)) * sizes.batch
            print(
                f"  {min(done, sizes.events):,} events: boughs {done / ours_seconds:,.0f}/s "
                f"(answered at {done / answered_seconds:,.0f}/s), raw {done / theirs_seconds:,.0f}/s",
                flush=True,
            )
    finally:
        server.stop()
        writer.close()

    (stored,) = await raw.one("SELECT count(*) FROM usage_events")
    (written,) = await raw.one(f"SELECT count(*) FROM {RAW_TABLE}")
    if stored != sizes.events or written != sizes.events:
        raise RuntimeError(
            f"expected {sizes.events} events; Boughs stored {stored}, the raw engine {written}"
        )
    if engine.name == "postgres":
        await raw.execute("ANALYZE")
    ours_rate, theirs_rate = sizes.events / ours_seconds, sizes.events / theirs_seconds
    writers = f"{writer.writers} writer{'s' if writer.writers > 1 else ''}"
    report.add(
        Figure(SUITE, engine.name, f"ingest {sizes.events:,} events, HTTP, rolled up", "rows/s", ours_rate,
               theirs_rate, 1 / MIN_SHARE_OF_RAW, None,
               f"boughs: {sizes.clients} HTTP clients, batches of {sizes.batch:,}, `boughs serve --processes "
               f"{sizes.processes}` with its embedded workers, until every batch is answered and folded into "
               "the rollups; "
               f"raw: {'COPY' if engine.name == 'postgres' else 'executemany'}, {writers}")
    )  # fmt: skip
    report.add(
        Figure(SUITE, engine.name, f"ingest {sizes.events:,} events, HTTP, answered", "rows/s",
               sizes.events / answered_seconds, theirs_rate, None, None,
               "boughs: until the last batch is answered (its events stored, the fold still going)")
    )  # fmt: skip
    for share, limit in ((0.5, None), (0.99, P99_LIMIT_MS)):
        report.add(
            Figure(SUITE, engine.name, f"batch latency p{int(share * 100)} ({sizes.batch:,} events)", "ms",
                   _percentile(ours_latencies, share), _percentile(writer.latencies, share), None, limit,
                   "boughs: request to answer at the client; raw: one batch's write and commit")
        )  # fmt: skip

    db = Database(engine.url)
    actor = Actor(world.provider_id, "bench", staff_role=StaffRole.owner)
    meter = world.meters["internet_bytes"]

    async def ours() -> Any:
        async with db.transaction(write=False) as session:
            ctx = Ctx(session=session, clock=SystemClock(), actor=actor)
            return await usage.account_usage(
                ctx, world.top, "internet_bytes", work.start, work.end, Granularity.day, UsageScope.subtree
            )

    async def theirs() -> Any:
        start, end = stored_hour(engine.name, work.start), stored_hour(engine.name, work.end)
        return await raw.one(SUBTREE_SQL, meter, world.top, start, end)

    answer, (total, _events) = await ours(), await theirs()
    if not int(answer.quantity) == int(total) == work.subtree_internet_bytes:
        raise RuntimeError(
            f"subtree usage disagrees: boughs {answer.quantity}, rollup sum {total}, "
            f"events sent {work.subtree_internet_bytes}"
        )
    ours_ms, theirs_ms = await paired_ms(ours, theirs, sizes.repeat)
    report.add(
        Figure(SUITE, engine.name, f"subtree 30 days by day, {len(world.subtree):,}", "ms",
               ours_ms, theirs_ms, None, SUBTREE_LIMIT_MS,
               "boughs: usage.service.account_usage(scope=subtree, granularity=day); "
               "raw: SUM over the subtree's hourly rollup rows")
    )  # fmt: skip
    await db.dispose()
    await raw.close()
    details[engine.name] = {
        "accounts": len(world.account_ids),
        "services": len(world.services),
        "subtree_accounts": len(world.subtree),
        "boughs_seconds": ours_seconds,
        "boughs_answered_seconds": answered_seconds,
        "raw_seconds": theirs_seconds,
        "raw_writers": writer.writers,
        "boughs_latency_ms": {
            "p50": _percentile(ours_latencies, 0.5),
            "p90": _percentile(ours_latencies, 0.9),
            "p99": _percentile(ours_latencies, 0.99),
            "max": max(ours_latencies),
            "mean": statistics.fmean(ours_latencies),
        },
        "raw_latency_ms": {
            "p50": _percentile(writer.latencies, 0.5),
            "p99": _percentile(writer.latencies, 0.99),
        },
    }


async def run(report: Report, *, sizes: Sizes, postgres_url: str | None) -> dict[str, Any]:
    """Measure on SQLite and, when given, PostgreSQL; returns details for the JSON report."""
    print(
        f"usage: {sizes.events:,} events in batches of {sizes.batch:,} from {sizes.clients} clients "
        f"into a tree of {sizes.accounts:,} accounts",
        flush=True,
    )
    engines: list[Callable[[], Engine]] = [lambda: _sqlite("usage")]
    if postgres_url:
        engines.append(lambda: _postgres(postgres_url, "usage"))
    details: dict[str, Any] = {"sizes": asdict(sizes) | {"accounts": sizes.accounts}}
    try:
        for make in engines:
            engine = make()
            try:
                await run_engine(engine, sizes, report, details)
            finally:
                engine.cleanup()
    finally:
        for leftover in WORK.glob("*"):
            leftover.unlink(missing_ok=True)
        if WORK.exists():
            WORK.rmdir()
    return details


__all__ = ["Sizes", "run"]
