"""Bill runs at scale: a month of a large provider billed, beside the raw engine's floor.

The provider has 10,000 top-level accounts with nine children each (100,000 accounts).
Every other child is billed with its parent, the rest separately, so there are 55,000
invoice owners; a third of the parents are on a pooled plan (child_billing_mode
parent_breakdown, a graduated data charge on the subtree's total, its cost shared back
to the accounts pro rata). Every account has a recurring service whose plan charges two
meters (data in MB, voice minutes to the hundredth), and 10,000,000 usage events fell in
the month: 50 per account and meter, each in some hour of it.

The world is written with the raw engine straight into the tables, as the services and
the ingest would have left it: accounts (paths, roots, depths, invoice modes), one open
account link each, a service each, and the hourly rollups of the events (one row per
service, per account, and for the usage below each parent), aggregated in the database
from the generated events. The provider, its meters and plans go through the domain
services. No raw events are stored: a bill run reads rollups.

Measured, each in the same run:

- Boughs, one worker: ``billing.service.start_bill_run`` in a unit of work, then the
  ``billing.run`` job and the chunk jobs it queues executed one after the other in this
  process (``JobRuntime.execute``), until every draft is written.
- Boughs, several workers (PostgreSQL, with a Redis broker): as many ``boughs worker``
  processes on a queue of their own; the run is started here, its job sent to the
  broker, and the clock stops when the bill run has succeeded. The invoices (and bill
  runs) are cleared in between, so both runs do the same work.
- The floor: hand-written SQL on the bare driver that aggregates the same usage (a GROUP
  BY subject and meter over the month's service rollups, and over the pooled subtrees': the
  parents' own rows and those below them),
  prices it with the same plain arithmetic, and writes the same invoices and lines (COPY
  on PostgreSQL, executemany in one transaction on SQLite).

Every run is checked: one invoice per invoice owner, each invoice's total equal to the
sum of its lines, and Boughs's invoice totals equal to the floor's, owner by owner.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
from sqlalchemy import create_engine, event, func, or_, select, text
from sqlalchemy.engine import make_url

from benchmarks.harness import RESULTS_DIR, Figure, Report
from benchmarks.hierarchy import _dsn
from boughs.auth import service as auth
from boughs.auth.actor import Actor, StaffRole
from boughs.billing import service as billing
from boughs.billing.models import BillRun, BillRunChunk, BillRunStatus
from boughs.billing.rating import allocate, tax_amount
from boughs.billing.schemas import BillRunCreate
from boughs.catalog import service as catalog
from boughs.catalog.schemas import PlanCreate, UsageCharge
from boughs.config import Settings
from boughs.context import Ctx
from boughs.db import Database
from boughs.jobs import repository as jobs_repository
from boughs.jobs.models import Job, JobStatus
from boughs.jobs.runtime import JobRuntime
from boughs.kit.clock import SystemClock
from boughs.kit.money import round_half_up
from boughs.kit.types import hour_number
from boughs.schema import upgrade
from boughs.usage import service as usage
from boughs.usage.schemas import MeterCreate

SUITE = "billing"
WORK = RESULTS_DIR / "work-billing"
# The targets.
RUN_LIMIT_MS = {"postgres": 60_000.0}
FLOOR_RATIO = 3.0
MIN_SPEEDUP = 1.6
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
# One job at a time per worker process: the speed-up then measures processes, not threads
# sharing one event loop.
WORKER_THREADS = 1
RUN_TIMEOUT_SECONDS = 3600.0
TAX_RATE_PPM = 88_750
EXPONENT = 2  # USD
SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000",
                  "cache_size=-65536")  # fmt: skip

METERS = (
    MeterCreate(code="data.mb", name="Data", unit="MB", aggregation="sum"),
    MeterCreate(code="voice.min", name="Voice", unit="minutes", aggregation="sum", precision=2),
)
# The largest quantity one event carries, in meter steps (MB; hundredths of a minute).
EVENT_STEPS = {"data.mb": 400, "voice.min": 1200}


def _charge(meter: str, model: str, unit_price: str | None = None, tiers: Any = ()) -> UsageCharge:
    return UsageCharge.model_validate(
        {"meter": meter, "model": model, "unit_price": unit_price, "tiers": list(tiers)}
    )


PLANS = {
    "member": PlanCreate(
        name="Bench member line", kind="custom", price_amount=1_500, currency="USD", public=True,
        usage_charges=[
            _charge("data.mb", "per_unit", "0.002"),
            _charge("voice.min", "graduated", tiers=[{"up_to": 100, "unit_price": "0.05"},
                                                     {"up_to": None, "unit_price": "0.02"}]),
        ],
    ),
    "business": PlanCreate(
        name="Bench business", kind="custom", price_amount=4_900, currency="USD", public=True,
        usage_charges=[
            _charge("data.mb", "graduated", tiers=[{"up_to": 5_000, "unit_price": "0.003"},
                                                   {"up_to": None, "unit_price": "0.001"}]),
            _charge("voice.min", "per_unit", "0.03"),
        ],
    ),
    "pool": PlanCreate(
        name="Bench pooled", kind="custom", price_amount=19_900, currency="USD", public=True,
        child_billing_mode="parent_breakdown",
        usage_charges=[
            _charge("data.mb", "graduated", tiers=[{"up_to": 50_000, "unit_price": "0.002"},
                                                   {"up_to": 200_000, "unit_price": "0.0012"},
                                                   {"up_to": None, "unit_price": "0.0008"}]),
            _charge("voice.min", "per_unit", "0.02"),
        ],
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    parents: int = 10_000
    children: int = 9
    # None: 50 events per account and meter (10,000,000 for 100,000 accounts).
    events: int | None = None
    workers: int = 2
    redis_url: str = DEFAULT_REDIS

    @property
    def accounts(self) -> int:
        return self.parents * (1 + self.children)

    @property
    def per_meter(self) -> int:
        """Events per account and meter."""
        wanted = self.events if self.events is not None else self.accounts * 50 * len(METERS)
        return max(1, wanted // (self.accounts * len(METERS)))

    @property
    def total_events(self) -> int:
        return self.per_meter * self.accounts * len(METERS)

    @property
    def owners(self) -> int:
        """Invoice owners: the parents and the children billed separately (every other one)."""
        return self.parents + self.parents * self.children // 2

    @property
    def pooled(self) -> int:
        return -(-self.parents // 3)


@dataclass
class Engine:
    name: str
    url: str
    cleanup: Callable[[], None]


def _sqlite() -> Engine:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "billing.sqlite3"

    def cleanup() -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    cleanup()
    return Engine("sqlite", f"sqlite+aiosqlite:///{path}", cleanup)


def _postgres(admin_url: str) -> Engine:
    admin = make_url(admin_url).set(drivername="postgresql+psycopg")
    name = f"boughs_bench_billing_{uuid.uuid4().hex[:6]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def cleanup() -> None:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return Engine("postgres", admin.set(database=name).render_as_string(hide_password=False), cleanup)


# --- the bare driver --------------------------------------------------------------------------


class Raw:
    """One connection on the bare synchronous driver: ``?`` placeholders on both engines."""

    def __init__(self, engine: str, dsn: str, *, bulk: bool = False) -> None:
        self.engine = engine
        self.conn: Any
        if engine == "sqlite":
            self.conn = sqlite3.connect(dsn, isolation_level=None, check_same_thread=False)
            # A scratch database being filled: no journal while it is built.
            pragmas = (
                ("journal_mode=OFF", "synchronous=OFF", "cache_size=-262144") if bulk else SQLITE_PRAGMAS
            )
            for pragma in pragmas:
                self.conn.execute(f"PRAGMA {pragma}")
        else:
            self.conn = psycopg.connect(dsn, autocommit=True)
            if bulk:
                self.conn.execute("SET synchronous_commit = off")
                self.conn.execute("SET work_mem = '256MB'")
                self.conn.execute("SET maintenance_work_mem = '512MB'")

    def _run(self, sql: str, params: tuple[Any, ...]) -> Any:
        if self.engine == "sqlite":
            return self.conn.execute(sql, params)
        # Without parameters psycopg leaves the text alone, so `%` stays the modulo operator.
        return self.conn.execute(sql.replace("?", "%s"), params) if params else self.conn.execute(sql)

    def all(self, sql: str, *params: Any) -> list[Any]:
        return list(self._run(sql, params).fetchall())

    def one(self, sql: str, *params: Any) -> Any:
        return self.all(sql, *params)[0]

    def execute(self, sql: str, *params: Any) -> int:
        return int(self._run(sql, params).rowcount)

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE" if self.engine == "sqlite" else "BEGIN")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def write(self, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
        """Bulk rows into a table: COPY on PostgreSQL, executemany on SQLite."""
        if self.engine == "sqlite":
            marks = ", ".join("?" * len(columns))
            self.conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            return
        with (
            self.conn.cursor() as cursor,
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def stamp(self, moment: datetime) -> Any:
        """How a UTC column takes a time: SQLAlchemy's text on SQLite, the value on PostgreSQL."""
        if self.engine == "sqlite":
            return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return moment

    def hour(self, moment: datetime) -> Any:
        """How a rollup hour is stored (``UTCHour``): a number on SQLite, the value on PostgreSQL."""
        return hour_number(moment) if self.engine == "sqlite" else moment

    def day(self, value: date) -> Any:
        return value.isoformat() if self.engine == "sqlite" else value

    def close(self) -> None:
        self.conn.close()


# --- the world --------------------------------------------------------------------------------


@dataclass
class World:
    provider_id: int
    period_start: date
    period_end: date
    window: tuple[datetime, datetime]
    meters: dict[str, int]
    plans: dict[str, int]
    accounts: int = 0
    rollups: dict[str, int] = field(default_factory=dict)
    build_seconds: float = 0.0


def last_full_month(today: date) -> tuple[date, date]:
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


async def make_catalog(engine: Engine) -> World:
    """The provider, its meters and plans, through the domain services."""
    upgrade(engine.url)
    db = Database(engine.url)
    clock = SystemClock()
    now = clock.now()
    start, end = last_full_month(now.date())
    try:
        async with db.transaction() as session:
            provider = await auth.ensure_provider(session, "Benchmark ISP", now)
            provider.default_tax_rate_ppm = TAX_RATE_PPM
            ctx = Ctx(
                session=session, clock=clock, actor=Actor(provider.id, "bench", staff_role=StaffRole.owner)
            )
            meters = {m.code: (await usage.create_meter(ctx, m)).id for m in METERS}
            plans = {key: (await catalog.create_plan(ctx, plan)).id for key, plan in PLANS.items()}
    finally:
        await db.dispose()
    window = (datetime.combine(start, datetime.min.time(), UTC),
              datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC))  # fmt: skip
    return World(provider.id, start, end, window, meters, plans)


ACCOUNT_COLUMNS = (
    "id", "provider_id", "parent_id", "root_id", "path", "depth", "name", "external_id", "description",
    "status", "invoice_mode", "parent_access", "features", "created_at", "updated_at",
)  # fmt: skip
LINK_COLUMNS = ("provider_id", "child_id", "parent_id", "valid_from")
SERVICE_COLUMNS = (
    "provider_id", "account_id", "plan_id", "description", "quantity", "status", "status_reason",
    "status_changed_at", "start_date", "ipv4_mode", "additional_networks", "mac_addresses", "created_at",
    "updated_at",
)  # fmt: skip


def write_world(engine: Engine, world: World, sizes: Sizes) -> None:
    """Accounts, links, services and the month's rollups, straight into the tables."""
    raw = Raw(engine.name, _dsn(engine.url), bulk=True)
    try:
        _write_accounts(raw, world, sizes)
        _write_rollups(raw, world, sizes)
        if engine.name == "sqlite":
            raw.execute("PRAGMA journal_mode=WAL")
            raw.execute("PRAGMA analysis_limit=1000")
            raw.execute("ANALYZE")
        else:
            # Done now, so neither autovacuum nor a checkpoint lands in a measurement.
            raw.execute("VACUUM ANALYZE")
            raw.execute("CHECKPOINT")
    finally:
        raw.close()


def _write_accounts(raw: Raw, world: World, sizes: Sizes) -> None:
    p = world.provider_id
    now = datetime.now(UTC)
    stamp = raw.stamp(now)
    linked = raw.stamp(world.window[0] - timedelta(days=90))
    started = raw.day(world.period_start - timedelta(days=60))
    (next_id,) = raw.one("SELECT coalesce(max(id), 0) + 1 FROM accounts")
    accounts: list[tuple[Any, ...]] = []
    links: list[tuple[Any, ...]] = []
    services: list[tuple[Any, ...]] = []
    child = 0

    def service(account_id: int, plan: str) -> tuple[Any, ...]:
        return (p, account_id, world.plans[plan], "", 1, "active", "manual", stamp, started, "none", "[]",
                "[]", stamp, stamp)  # fmt: skip

    for i in range(sizes.parents):
        parent = next_id
        next_id += 1
        path = f"/{parent}/"
        accounts.append((parent, p, None, parent, path, 0, f"Parent {i}", f"p{i}", "", "active", "separate",
                         "manage", "{}", stamp, stamp))  # fmt: skip
        links.append((p, parent, None, linked))
        services.append(service(parent, "pool" if i % 3 == 0 else "business"))
        for j in range(sizes.children):
            account = next_id
            next_id += 1
            mode = "separate" if child % 2 else "with_parent"
            child += 1
            accounts.append((account, p, parent, parent, f"{path}{account}/", 1, f"Child {i}.{j}",
                             f"p{i}.{j}", "", "active", mode, "manage", "{}", stamp, stamp))  # fmt: skip
            links.append((p, account, parent, linked))
            services.append(service(account, "member"))
    raw.begin()
    raw.write("accounts", ACCOUNT_COLUMNS, accounts)
    raw.write("account_links", LINK_COLUMNS, links)
    raw.write("services", SERVICE_COLUMNS, services)
    if raw.engine == "postgres":
        raw.execute("SELECT setval(pg_get_serial_sequence('accounts', 'id'), (SELECT max(id) FROM accounts))")
    raw.commit()
    if raw.engine == "postgres":
        # The planner must know the new rows before the rollups join them.
        raw.execute("ANALYZE accounts, account_links, services")
    world.accounts = len(accounts)


# Each event of a service gets an hour of the month and a quantity from a hash of (service,
# meter, event number); the events are grouped into their hourly rows as the ingest would.
SERVICE_ROLLUPS = """
INSERT INTO usage_rollups (meter_id, kind, subject_id, hour, provider_id, account_id, total, peak, events)
SELECT e.meter_id, 'service', e.service_id, h.hour, {p}, e.account_id, sum(e.q), max(e.q), count(*)
FROM (
    SELECT m.id AS meter_id, s.id AS service_id, s.account_id AS account_id,
           (s.id * 7919 + k.k * k.k * 104729 + k.k * 613 + m.id * 15485863) % 1000003 % {hours} AS h,
           1 + (s.id * 48271 + k.k * k.k * 16807 + k.k * 69621 + m.id * 31) % 1000033
               % (CASE m.code WHEN 'data.mb' THEN {data_steps} ELSE {voice_steps} END) AS q
    FROM services AS s CROSS JOIN meters AS m CROSS JOIN bench_events AS k
    WHERE s.provider_id = {p} AND m.provider_id = {p}
) AS e JOIN bench_hours AS h ON h.h = e.h
GROUP BY e.meter_id, e.service_id, e.account_id, h.hour
{order}
"""
# One service per account and no usage reported on accounts themselves: an account's own rows
# are its service's. The trees are two levels deep: the usage below each root is its
# children's (a root's subtree is its own rows and those).
ACCOUNT_ROLLUPS = """
INSERT INTO usage_rollups (meter_id, kind, subject_id, hour, provider_id, account_id, total, peak, events)
SELECT meter_id, 'account', account_id, hour, provider_id, account_id, total, peak, events
FROM usage_rollups WHERE kind = 'service' AND provider_id = {p}
{order}
"""
BELOW_ROOT_ROLLUPS = """
INSERT INTO usage_rollups (meter_id, kind, subject_id, hour, provider_id, account_id, total, peak, events)
SELECT r.meter_id, 'below', a.root_id, r.hour, {p}, a.root_id, sum(r.total), max(r.peak), sum(r.events)
FROM usage_rollups AS r JOIN accounts AS a ON a.id = r.subject_id
WHERE r.kind = 'account' AND r.provider_id = {p} AND a.depth > 0
GROUP BY r.meter_id, a.root_id, r.hour
{order}
"""


def _write_rollups(raw: Raw, world: World, sizes: Sizes) -> None:
    hours = int((world.window[1] - world.window[0]).total_seconds() // 3600)
    hour_type = "INTEGER" if raw.engine == "sqlite" else "timestamptz"
    raw.execute(f"CREATE TEMP TABLE bench_hours (h INTEGER PRIMARY KEY, hour {hour_type} NOT NULL)")
    raw.execute("CREATE TEMP TABLE bench_events (k INTEGER PRIMARY KEY)")
    raw.begin()
    raw.write("bench_hours", ("h", "hour"),
              ((h, raw.hour(world.window[0] + timedelta(hours=h))) for h in range(hours)))  # fmt: skip
    raw.write("bench_events", ("k",), ((k,) for k in range(sizes.per_meter)))
    raw.commit()
    if raw.engine == "postgres":
        raw.execute("ANALYZE bench_hours")
        raw.execute("ANALYZE bench_events")
    values = {"p": world.provider_id, "hours": hours, "data_steps": EVENT_STEPS["data.mb"],
              "voice_steps": EVENT_STEPS["voice.min"]}  # fmt: skip
    rebuild = _drop_rollup_indexes(raw)
    steps = (("service", SERVICE_ROLLUPS, "e.meter_id, e.service_id, h.hour"),
             ("account", ACCOUNT_ROLLUPS, "meter_id, account_id, hour"),
             ("below (roots)", BELOW_ROOT_ROLLUPS, "r.meter_id, a.root_id, r.hour"))  # fmt: skip
    for kind, sql, key_order in steps:
        started = time.perf_counter()
        # SQLite keeps the primary key's index (it is part of the table): fed in its order.
        order = f"ORDER BY {key_order}" if raw.engine == "sqlite" else ""
        raw.begin()
        world.rollups[kind] = raw.execute(sql.format(order=order, **values))
        raw.commit()
        if raw.engine == "postgres":
            raw.execute("ANALYZE usage_rollups")
        print(
            f"  {world.rollups[kind]:,} {kind} rollup rows in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
    started = time.perf_counter()
    for statement in rebuild:
        raw.execute(statement)
    if raw.engine == "postgres":
        raw.execute("RESET session_replication_role")
    print(f"  rollup indexes rebuilt in {time.perf_counter() - started:.1f} s", flush=True)
    raw.execute("DROP TABLE bench_hours")
    raw.execute("DROP TABLE bench_events")


def _drop_rollup_indexes(raw: Raw) -> list[str]:
    """Drop the rollups' indexes while the table fills; returns the statements that make them
    again exactly as they were. Building an index once is far cheaper than row by row."""
    if raw.engine == "sqlite":
        found = raw.all(
            "SELECT name, sql FROM sqlite_master "
            "WHERE type = 'index' AND tbl_name = 'usage_rollups' AND sql IS NOT NULL"
        )
        for name, _sql in found:
            raw.execute(f'DROP INDEX "{name}"')
        return [sql for _name, sql in found]
    (superuser,) = raw.one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    if superuser:
        # The rows are consistent by construction: their foreign keys need no checking one by one.
        raw.execute("SET session_replication_role = replica")
    keys = raw.all(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'usage_rollups'::regclass AND contype IN ('p', 'u')"
    )
    indexes = raw.all(
        "SELECT indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = current_schema() AND tablename = 'usage_rollups'"
    )
    again = []
    for name, definition in indexes:
        if name not in {key for key, _ in keys}:
            raw.execute(f'DROP INDEX "{name}"')
            again.append(definition)
    for name, definition in keys:
        raw.execute(f'ALTER TABLE usage_rollups DROP CONSTRAINT "{name}"')
        again.append(f'ALTER TABLE usage_rollups ADD CONSTRAINT "{name}" {definition}')
    return again


# --- the floor --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Priced:
    """A plan's usage charge, ready for plain Decimal arithmetic."""

    meter: str
    model: str
    unit_price: Decimal
    tiers: tuple[tuple[int, int | None, Decimal, int], ...]  # (after, up to, unit price, flat amount)


def _priced(charge: dict[str, Any]) -> Priced:
    tiers: list[tuple[int, int | None, Decimal, int]] = []
    lower = 0
    stored = charge.get("tiers") or []
    for i, tier in enumerate(stored):
        upper = None if i == len(stored) - 1 else int(tier["up_to"])
        tiers.append((lower, upper, Decimal(tier["unit_price"]), int(tier.get("flat_amount") or 0)))
        lower = upper or lower
    return Priced(charge["meter"], charge["model"], Decimal(charge.get("unit_price") or 0), tuple(tiers))


def _price(charge: Priced, quantity: Decimal) -> int:
    if charge.model == "per_unit":
        return round_half_up((quantity * charge.unit_price).scaleb(EXPONENT))
    amount = Decimal(0)
    for lower, upper, unit_price, flat in charge.tiers:
        if quantity <= lower:
            break
        top = quantity if upper is None else min(quantity, Decimal(upper))
        amount += ((top - lower) * unit_price).scaleb(EXPONENT) + flat
    return round_half_up(amount)


FLOOR_METERS = "SELECT id, code, name, unit, precision FROM meters WHERE provider_id = ?"
FLOOR_PLANS = (
    "SELECT id, name, price_amount, child_billing_mode, usage_charges FROM plans WHERE provider_id = ?"
)
FLOOR_ACCOUNTS = """
SELECT a.id, a.parent_id, a.root_id, a.invoice_mode, a.name, a.external_id, s.id, s.plan_id
FROM accounts AS a JOIN services AS s ON s.account_id = a.id
WHERE a.provider_id = ? AND s.status <> 'pending' AND s.start_date <= ?
  AND (s.end_date IS NULL OR s.end_date >= ?)
ORDER BY a.id, s.id
"""
FLOOR_SERVICE_USAGE = """
SELECT subject_id, meter_id, sum(total) FROM usage_rollups
WHERE meter_id IN ({meters}) AND kind = 'service' AND provider_id = ? AND hour >= ? AND hour < ?
GROUP BY subject_id, meter_id
"""
FLOOR_POOLED_USAGE = """
SELECT r.subject_id, r.meter_id, sum(r.total) FROM usage_rollups AS r
WHERE r.meter_id IN ({meters}) AND r.kind IN ('account', 'below') AND r.hour >= ? AND r.hour < ?
  AND r.subject_id IN (SELECT s.account_id FROM services AS s JOIN plans AS p ON p.id = s.plan_id
                       WHERE s.provider_id = ? AND p.child_billing_mode IS NOT NULL)
GROUP BY r.subject_id, r.meter_id
"""
INVOICE_COLUMNS = (
    "provider_id", "owner_account_id", "status", "currency", "period_start", "period_end", "net_terms_days",
    "tax_rate_ppm", "tax_exempt", "layout", "subtotal_amount", "tax_amount", "total_amount", "amount_paid",
    "amount_credited", "bill_to", "payer", "account_ids", "created_at", "updated_at",
)  # fmt: skip
LINE_COLUMNS = (
    "provider_id", "invoice_id", "position", "kind", "account_id", "service_id", "plan_id", "meter_code",
    "description", "period_start", "period_end", "quantity", "unit_price", "amount", "details",
)  # fmt: skip


@dataclass
class Floor:
    seconds: float = 0.0
    read_seconds: float = 0.0
    price_seconds: float = 0.0
    write_seconds: float = 0.0
    invoices: int = 0
    lines: int = 0
    totals: dict[int, int] = field(default_factory=dict)


def _text(value: Decimal) -> str:
    plain = format(value, "f")
    return (plain.rstrip("0").rstrip(".") if "." in plain else plain) or "0"


def run_floor(engine: Engine, world: World) -> Floor:
    """Aggregate, price and write the month's invoices by hand."""
    raw = Raw(engine.name, _dsn(engine.url))
    out = Floor()
    try:
        started = time.perf_counter()
        p = world.provider_id
        start, end = raw.hour(world.window[0]), raw.hour(world.window[1])
        meters = {code: (meter_id, name, unit, precision) for meter_id, code, name, unit, precision
                  in raw.all(FLOOR_METERS, p)}  # fmt: skip
        plans: dict[int, tuple[str, int, str | None, list[Priced]]] = {}
        for plan_id, name, price, mode, charges in raw.all(FLOOR_PLANS, p):
            stored = charges if isinstance(charges, list) else json.loads(charges)
            plans[plan_id] = (name, price, mode, [_priced(c) for c in stored])
        rows = raw.all(FLOOR_ACCOUNTS, p, raw.day(world.period_end), raw.day(world.period_start))
        marks = ", ".join("?" * len(meters))
        meter_ids = [m[0] for m in meters.values()]
        used = {(s, m): int(t) for s, m, t in raw.all(FLOOR_SERVICE_USAGE.format(meters=marks), *meter_ids, p,
                                                      start, end)}  # fmt: skip
        pooled = {(a, m): int(t) for a, m, t in raw.all(FLOOR_POOLED_USAGE.format(meters=marks), *meter_ids,
                                                        start, end, p)}  # fmt: skip
        out.read_seconds = time.perf_counter() - started

        mark = time.perf_counter()
        first, last = world.period_start, world.period_end
        owner_of: dict[int, int] = {}
        names: dict[int, tuple[str, str]] = {}
        lines: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        trees: dict[int, list[tuple[int, int]]] = defaultdict(list)
        pools: dict[int, tuple[int, int]] = {}
        details = {(code, c.model): json.dumps({"unit": meters[code][2], "model": c.model})
                   for _, _, _, charges in plans.values() for c in charges for code in [c.meter]}  # fmt: skip

        def usage_line(owner: int, account: int, service: int, plan_id: int, charge: Priced, steps: int,
                       amount: int, description: str) -> None:  # fmt: skip
            quantity = Decimal(steps).scaleb(-meters[charge.meter][3])
            detail = details[(charge.meter, charge.model)]
            lines[owner].append(("usage", account, service, plan_id, charge.meter, description,
                                 _text(quantity), _text(charge.unit_price), amount, detail))  # fmt: skip

        for account, parent, root, mode, name, external_id, service, plan_id in rows:
            owner = account if parent is None or mode == "separate" else owner_of[parent]
            owner_of[account] = owner
            names[account] = (name, external_id)
            plan_name, price, pool_mode, _charges = plans[plan_id]
            lines[owner].append(("recurring", account, service, plan_id, None, plan_name, "1",
                                 _text(Decimal(price).scaleb(-EXPONENT)), price, "{}"))  # fmt: skip
            trees[root].append((account, service))
            if pool_mode is not None:
                pools[account] = (service, plan_id)
        for account, _parent, root, _mode, _name, _ext, service, plan_id in rows:
            if root in pools:
                continue  # the pool prices this tree's usage
            plan_name, _price_amount, _pool_mode, charges = plans[plan_id]
            for charge in charges:
                meter_id, meter_name, _unit, precision = meters[charge.meter]
                steps = used.get((service, meter_id), 0)
                amount = _price(charge, Decimal(steps).scaleb(-precision))
                if steps or amount:
                    usage_line(owner_of[account], account, service, plan_id, charge, steps, amount,
                               f"{meter_name} ({plan_name})")  # fmt: skip
        for root, (pool_service, plan_id) in pools.items():
            plan_name, _price_amount, _pool_mode, charges = plans[plan_id]
            for charge in charges:
                meter_id, meter_name, _unit, precision = meters[charge.meter]
                total = pooled.get((root, meter_id), 0)
                amount = _price(charge, Decimal(total).scaleb(-precision))
                if not amount and not total:
                    continue
                weights = {a: w for a, s in trees[root] if (w := used.get((s, meter_id), 0))} or {root: 1}
                for account, part in allocate(amount, weights).items():
                    usage_line(owner_of[root], account, pool_service, plan_id, charge, weights[account], part,
                               f"{meter_name}, share of pooled usage ({plan_name})")  # fmt: skip
        invoices: list[tuple[Any, ...]] = []
        now = raw.stamp(datetime.now(UTC))
        for owner, owned in lines.items():
            subtotal = sum(line[8] for line in owned)
            tax = tax_amount(subtotal, TAX_RATE_PPM)
            if tax:
                owned.append(("tax", owner, None, None, None, "Tax", "1", "0", tax, "{}"))
            out.totals[owner] = subtotal + tax
            name, external_id = names[owner]
            bill_to = {"name": name, "external_id": external_id, "account_id": owner, "address": None,
                       "tax_id": None, "email": None}  # fmt: skip
            account_ids = sorted({owner, *(line[1] for line in owned)})
            invoices.append((p, owner, "draft", "USD", raw.day(first), raw.day(last), 30, TAX_RATE_PPM, False,
                             "breakdown", subtotal, tax, subtotal + tax, 0, 0, json.dumps(bill_to), "{}",
                             json.dumps(account_ids), now, now))  # fmt: skip
        out.price_seconds = time.perf_counter() - mark

        mark = time.perf_counter()
        raw.begin()
        raw.write("invoices", INVOICE_COLUMNS, invoices)
        ids = dict(raw.all("SELECT owner_account_id, id FROM invoices "
                           "WHERE provider_id = ? AND period_end = ? AND bill_run_id IS NULL",
                           p, raw.day(last)))  # fmt: skip
        day_first, day_last = raw.day(first), raw.day(last)
        raw.write(
            "invoice_lines",
            LINE_COLUMNS,
            ((p, ids[owner], position, kind, account, service, plan_id, meter, description, day_first,
              day_last, quantity, unit_price, amount, detail)
             for owner, owned in lines.items()
             for position, (kind, account, service, plan_id, meter, description, quantity, unit_price, amount,
                            detail) in enumerate(owned, start=1)),
        )  # fmt: skip
        raw.commit()
        out.write_seconds = time.perf_counter() - mark
        out.seconds = time.perf_counter() - started
        out.invoices = len(invoices)
        out.lines = sum(len(owned) for owned in lines.values())
        return out
    finally:
        raw.close()


# --- checks and resets ------------------------------------------------------------------------


@dataclass
class Written:
    invoices: int
    lines: int
    total: int
    totals: dict[int, int]


def check_invoices(engine: Engine, world: World, sizes: Sizes, who: str) -> Written:
    """One draft per invoice owner for the month, and every invoice's total the sum of its lines."""
    raw = Raw(engine.name, _dsn(engine.url))
    try:
        month = (world.provider_id, raw.day(world.period_end))
        invoices, drafts, total = raw.one(
            "SELECT count(*), coalesce(sum(CASE WHEN status = 'draft' THEN 1 ELSE 0 END), 0), "
            "coalesce(sum(total_amount), 0) FROM invoices WHERE provider_id = ? AND period_end = ?",
            *month,
        )
        lines, lines_total = raw.one(
            "SELECT count(*), coalesce(sum(l.amount), 0) FROM invoice_lines AS l "
            "JOIN invoices AS i ON i.id = l.invoice_id WHERE i.provider_id = ? AND i.period_end = ?",
            *month,
        )
        (unequal,) = raw.one(
            "SELECT count(*) FROM invoices AS i WHERE i.provider_id = ? AND i.period_end = ? AND "
            "i.total_amount <> (SELECT coalesce(sum(l.amount), 0) FROM invoice_lines AS l "
            "WHERE l.invoice_id = i.id)",
            *month,
        )
        totals = {int(o): int(t) for o, t in raw.all(
            "SELECT owner_account_id, total_amount FROM invoices WHERE provider_id = ? AND period_end = ?",
            *month)}  # fmt: skip
    finally:
        raw.close()
    problems = []
    if invoices != sizes.owners or drafts != invoices:
        problems.append(f"{invoices:,} invoices ({drafts:,} drafts) for {sizes.owners:,} invoice owners")
    if len(totals) != invoices:
        problems.append(f"{invoices - len(totals):,} owners have more than one invoice")
    if int(total) != int(lines_total) or unequal:
        problems.append(
            f"invoice totals {total:,} against lines {lines_total:,}; {unequal:,} invoices differ"
        )
    if problems:
        raise RuntimeError(f"{who}: " + "; ".join(problems))
    return Written(int(invoices), int(lines), int(total), totals)


def same_totals(who: str, ours: Written, floor: Floor) -> None:
    differ = sorted(
        o for o in floor.totals.keys() | ours.totals.keys() if floor.totals.get(o) != ours.totals.get(o)
    )
    if differ or ours.lines != floor.lines:
        sample = [(o, ours.totals.get(o), floor.totals.get(o)) for o in differ[:5]]
        raise RuntimeError(
            f"{who} and the floor disagree: {len(differ):,} invoice totals differ (owner, boughs, floor: "
            f"{sample}); {ours.lines:,} lines against {floor.lines:,}"
        )


def keep_as_last_month(engine: Engine, world: World) -> None:
    """The floor's invoices become the month before's. A provider bills with its earlier
    invoices in place, and the planner then sees the invoice tables at a realistic size:
    planned on an empty table, the per-line lookups of invoices turn into scans."""
    raw = Raw(engine.name, _dsn(engine.url))
    try:
        end = world.period_start - timedelta(days=1)
        before = (raw.day(end.replace(day=1)), raw.day(end))
        month = (world.provider_id, raw.day(world.period_end))
        raw.begin()
        raw.execute(
            "UPDATE invoice_lines SET period_start = ?, period_end = ? WHERE invoice_id IN "
            "(SELECT id FROM invoices WHERE provider_id = ? AND period_end = ?)",
            *before, *month,
        )  # fmt: skip
        raw.execute(
            "UPDATE invoices SET period_start = ?, period_end = ? WHERE provider_id = ? AND period_end = ?",
            *before, *month,
        )  # fmt: skip
        raw.commit()
        raw.execute("ANALYZE invoices")
        raw.execute("ANALYZE invoice_lines")
    finally:
        raw.close()


def clear_invoices(engine: Engine, world: World) -> None:
    """The month's drafts and the bill runs go, so the next run bills the month from scratch."""
    raw = Raw(engine.name, _dsn(engine.url))
    try:
        month = (world.provider_id, raw.day(world.period_end))
        raw.begin()
        raw.execute(
            "DELETE FROM invoice_lines WHERE invoice_id IN "
            "(SELECT id FROM invoices WHERE provider_id = ? AND period_end = ?)",
            *month,
        )
        raw.execute("DELETE FROM invoices WHERE provider_id = ? AND period_end = ?", *month)
        raw.execute("DELETE FROM bill_run_chunks WHERE provider_id = ?", world.provider_id)
        raw.execute("DELETE FROM bill_runs WHERE provider_id = ?", world.provider_id)
        raw.commit()
        if engine.name == "postgres":
            raw.execute("VACUUM ANALYZE invoice_lines, invoices, bill_run_chunks, bill_runs, jobs")
    finally:
        raw.close()


# --- Boughs -----------------------------------------------------------------------------------


def _actor(world: World) -> Actor:
    return Actor(world.provider_id, "bench", staff_role=StaffRole.owner)


async def _start_run(db: Database, world: World) -> BillRun:
    async with db.transaction() as session:
        ctx = Ctx(session=session, clock=SystemClock(), actor=_actor(world))
        return await billing.start_bill_run(ctx, BillRunCreate(period_end=world.period_end))


async def _bill_run(db: Database, run_id: int) -> BillRun:
    async with db.transaction(write=False) as session:
        found = await session.scalar(select(BillRun).where(BillRun.id == run_id))
    assert found is not None
    return found


async def _failed_jobs(db: Database, since: datetime) -> list[str]:
    async with db.transaction(write=False) as session:
        rows = (
            await session.execute(
                select(Job.id, Job.kind, Job.error).where(
                    Job.status == JobStatus.failed.value, Job.created_at >= since
                )
            )
        ).all()
    return [f"job {r.id} ({r.kind}): {r.error}" for r in rows]


def _profile_statements(db: Database) -> dict[str, list[float]]:
    """BOUGHS_BENCH_SQL_PROFILE=1: time every statement of the in-process run, by its text."""
    spent: dict[str, list[float]] = {}

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    @event.listens_for(db.engine.sync_engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        took = time.perf_counter() - conn.info.pop("bench_started", time.perf_counter())
        key = " ".join(statement.split())[:150]
        entry = spent.setdefault(key, [0, 0.0])
        entry[0] += 1
        entry[1] += took

    return spent


def _print_statements(spent: dict[str, list[float]], seconds: float) -> None:
    total = sum(v[1] for v in spent.values())
    calls = sum(int(v[0]) for v in spent.values())
    print(f"  statements: {calls:,} taking {total:.2f} s of the run's {seconds:.2f} s; the costliest:")
    for text_, (count, took) in sorted(spent.items(), key=lambda kv: -kv[1][1])[:15]:
        print(f"    {took:7.2f} s {int(count):6,}x  {text_}")


async def boughs_in_process(engine: Engine, world: World) -> tuple[float, int, int]:
    """The run and its chunk jobs executed one after the other here: (seconds, chunks, the
    largest chunk's roots), the chunks as the run cut them."""
    settings = Settings(database_url=engine.url, broker_url=None, queue_name=f"bench-{uuid.uuid4().hex[:8]}")
    runtime = JobRuntime(settings)
    db = Database(engine.url)
    clock = SystemClock()
    statements = _profile_statements(db) if os.environ.get("BOUGHS_BENCH_SQL_PROFILE") == "1" else None
    python_profile = cProfile.Profile() if os.environ.get("BOUGHS_BENCH_PY_PROFILE") == "1" else None
    try:
        if python_profile is not None:
            python_profile.enable()
        since = clock.now()
        started = time.perf_counter()
        run = await _start_run(db, world)
        while True:
            async with db.transaction(write=False) as session:
                queued = list(
                    await session.scalars(
                        select(Job.id)
                        .where(
                            Job.provider_id == world.provider_id,
                            Job.status == JobStatus.queued.value,
                            or_(Job.run_after.is_(None), Job.run_after <= clock.now()),
                        )
                        .order_by(Job.id)
                    )
                )
            if not queued:
                break
            for job_id in queued:
                if await runtime.execute(db, job_id) != JobStatus.succeeded.value:
                    raise RuntimeError(f"the bill run failed: {await _failed_jobs(db, since) or job_id}")
        seconds = time.perf_counter() - started
        if statements is not None:
            _print_statements(statements, seconds)
        if python_profile is not None:
            python_profile.disable()
            if os.environ.get("BOUGHS_BENCH_PY_DUMP"):
                python_profile.dump_stats(os.environ["BOUGHS_BENCH_PY_DUMP"])
            pstats.Stats(python_profile).sort_stats(
                os.environ.get("BOUGHS_BENCH_PY_SORT", "tottime")
            ).print_stats(os.environ.get("BOUGHS_BENCH_PY_FILTER", ""), 30)
        done = await _bill_run(db, run.id)
        if done.status != BillRunStatus.succeeded.value:
            raise RuntimeError(f"bill run {run.id} is {done.status}: {done.error}")
        async with db.transaction(write=False) as session:
            chunks, largest = (
                await session.execute(
                    select(func.count(), func.max(BillRunChunk.roots)).where(
                        BillRunChunk.bill_run_id == run.id
                    )
                )
            ).one()
        return seconds, int(chunks), int(largest or 0)
    finally:
        await db.dispose()
        runtime.broker.close()


class Workers:
    """`boughs worker` processes on a broker queue of their own."""

    READY = "is running jobs"

    def __init__(self, url: str, redis_url: str, count: int) -> None:
        self.queue = f"bench-billing-{uuid.uuid4().hex[:8]}"
        self.redis_url = redis_url
        env = {**os.environ, "BOUGHS_DATABASE_URL": url, "BOUGHS_BROKER_URL": redis_url,
               "BOUGHS_QUEUE_NAME": self.queue, "BOUGHS_LOG_LEVEL": "WARNING"}  # fmt: skip
        WORK.mkdir(parents=True, exist_ok=True)
        self.logs = [WORK / f"{self.queue}-{i}.log" for i in range(count)]
        command = [sys.executable, "-m", "boughs.cli", "worker", "--threads", str(WORKER_THREADS)]
        self.processes: list[subprocess.Popen[bytes]] = []
        for log_path in self.logs:
            with log_path.open("wb") as log:
                self.processes.append(
                    subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
                )

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs if p.exists())

    def check(self) -> None:
        if any(p.poll() is not None for p in self.processes):
            raise RuntimeError(f"a boughs worker exited:\n{self.output()}")

    async def ready(self, within_seconds: float = 60.0) -> None:
        deadline = time.monotonic() + within_seconds
        while time.monotonic() < deadline:
            self.check()
            if all(self.READY in p.read_text(errors="replace") for p in self.logs):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the workers did not start in time:\n{self.output()}")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(f"{self.queue}-dramatiq:*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
        for log_path in self.logs:
            log_path.unlink(missing_ok=True)


async def _idle(db: Database, workers: Workers, within_seconds: float = 300.0) -> None:
    """Wait out the periodic jobs the workers' first ticks start."""
    await asyncio.sleep(2)
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        workers.check()
        async with db.transaction(write=False) as session:
            live = await session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.status.in_((JobStatus.queued.value, JobStatus.running.value)))
            )
        if not live:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("the workers' periodic jobs did not finish in time")


async def boughs_on_workers(engine: Engine, world: World, sizes: Sizes) -> float:
    """The run on worker processes, from its start until the bill run has succeeded."""
    workers = Workers(engine.url, sizes.redis_url, sizes.workers)
    db = Database(engine.url)
    sender = JobRuntime(
        Settings(database_url=engine.url, broker_url=sizes.redis_url, queue_name=workers.queue)
    )
    try:
        await workers.ready()
        await _idle(db, workers)
        clock = SystemClock()
        since = clock.now()
        started = time.perf_counter()
        run = await _start_run(db, world)
        assert run.job_id is not None
        async with db.transaction() as session:
            await jobs_repository.mark_sent(session, [run.job_id], clock.now())
        sender.send(run.job_id)
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while True:
            await asyncio.sleep(0.1)
            status = (await _bill_run(db, run.id)).status
            if status == BillRunStatus.succeeded.value:
                break
            failed = await _failed_jobs(db, since)
            if status == BillRunStatus.failed.value or failed:
                raise RuntimeError(f"the bill run failed on the workers: {failed}\n{workers.output()}")
            workers.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bill run did not finish in {RUN_TIMEOUT_SECONDS:.0f} s")
        return time.perf_counter() - started
    finally:
        sender.broker.close()
        await db.dispose()
        workers.stop()


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


# --- the suite --------------------------------------------------------------------------------


async def run_engine(engine: Engine, sizes: Sizes, report: Report, details: dict[str, Any]) -> None:
    started = time.perf_counter()
    print(f"billing/{engine.name}: building the world", flush=True)
    world = await make_catalog(engine)
    await asyncio.to_thread(write_world, engine, world, sizes)
    world.build_seconds = time.perf_counter() - started
    print(
        f"billing/{engine.name}: {world.accounts:,} accounts, {sum(world.rollups.values()):,} rollup rows "
        f"for {sizes.total_events:,} events in {world.period_start:%B %Y}, "
        f"built in {world.build_seconds:.1f} s",
        flush=True,
    )

    floor = await asyncio.to_thread(run_floor, engine, world)
    written = await asyncio.to_thread(check_invoices, engine, world, sizes, "the floor")
    same_totals("the floor's own writing", written, floor)
    print(
        f"  floor: {floor.invoices:,} invoices, {floor.lines:,} lines in {floor.seconds:.1f} s (read "
        f"{floor.read_seconds:.1f}, price {floor.price_seconds:.1f}, write {floor.write_seconds:.1f})",
        flush=True,
    )
    await asyncio.to_thread(keep_as_last_month, engine, world)

    load = {"floor": os.getloadavg()[0]}
    one_seconds, chunks, chunk_roots = await boughs_in_process(engine, world)
    load["one_worker"] = os.getloadavg()[0]
    written = await asyncio.to_thread(check_invoices, engine, world, sizes, "Boughs, one worker")
    same_totals("Boughs (one worker)", written, floor)
    print(
        f"  boughs, one worker: {one_seconds:.1f} s, {chunks} chunks (load {load['one_worker']:.1f})",
        flush=True,
    )
    report.add(
        Figure(SUITE, engine.name, f"bill run {world.accounts:,} accts, 1 worker", "ms",
               one_seconds * 1000, floor.seconds * 1000, FLOOR_RATIO, RUN_LIMIT_MS.get(engine.name),
               f"{written.invoices:,} invoices, {written.lines:,} lines; boughs: start_bill_run and its jobs "
               "in this process; raw: the floor (GROUP BY over the rollups, priced, written in bulk)")
    )  # fmt: skip
    result: dict[str, Any] = {
        "accounts": world.accounts,
        "invoice_owners": sizes.owners,
        "pooled_parents": sizes.pooled,
        "events": sizes.total_events,
        "rollup_rows": world.rollups,
        "period": [world.period_start.isoformat(), world.period_end.isoformat()],
        "build_seconds": world.build_seconds,
        "invoices": written.invoices,
        "lines": written.lines,
        "total_amount": written.total,
        "floor": {k: v for k, v in asdict(floor).items() if k != "totals"},
        "one_worker_seconds": one_seconds,
        "chunks": chunks,
        "roots_per_chunk": chunk_roots,
        # The machine is shared: the one-minute load average after each measurement.
        "load_average": load,
    }
    if chunks < 4 * sizes.workers:
        note = (
            f"{chunks} chunks of up to {chunk_roots} roots for {sizes.workers} workers: the last "
            "chunks leave workers idle, so the speed-up is capped by the chunking"
        )
        print(f"  note: {note}", flush=True)
        result["chunk_note"] = note

    if engine.name == "postgres" and sizes.workers > 1:
        if not _reachable(sizes.redis_url):
            print(f"  Redis is not reachable at {sizes.redis_url}: no run on worker processes.", flush=True)
        else:
            await asyncio.to_thread(clear_invoices, engine, world)
            many_seconds = await boughs_on_workers(engine, world, sizes)
            load["workers"] = os.getloadavg()[0]
            written = await asyncio.to_thread(check_invoices, engine, world, sizes, "Boughs, workers")
            same_totals(f"Boughs ({sizes.workers} workers)", written, floor)
            speedup = one_seconds / many_seconds
            print(
                f"  boughs, {sizes.workers} workers: {many_seconds:.1f} s, speed-up {speedup:.2f}x "
                f"(load {load['workers']:.1f})",
                flush=True,
            )
            report.add(
                Figure(SUITE, engine.name, f"bill run, {sizes.workers} workers (ref: 1)", "ms",
                       many_seconds * 1000, one_seconds * 1000, 1 / MIN_SPEEDUP, None,
                       f"speed-up {speedup:.2f}x (target ≥{MIN_SPEEDUP}x); boughs: {sizes.workers} "
                       f"`boughs worker` processes ({WORKER_THREADS} thread each) on Redis; reference: the "
                       "one-worker run")
            )  # fmt: skip
            result.update(workers=sizes.workers, workers_seconds=many_seconds, speedup=speedup)
    details[engine.name] = result


async def run(report: Report, *, sizes: Sizes, postgres_url: str | None) -> dict[str, Any]:
    """Measure on SQLite and, when given, PostgreSQL; returns details for the JSON report."""
    print(
        f"billing: {sizes.accounts:,} accounts ({sizes.parents:,} parents with {sizes.children} children), "
        f"{sizes.owners:,} invoice owners, {sizes.pooled:,} pools, {sizes.total_events:,} usage events",
        flush=True,
    )
    engines: list[Callable[[], Engine]] = [_sqlite]
    if postgres_url:
        engines.append(lambda: _postgres(postgres_url))
    details: dict[str, Any] = {
        "sizes": asdict(sizes)
        | {"accounts": sizes.accounts, "owners": sizes.owners, "events": sizes.total_events}
    }
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
