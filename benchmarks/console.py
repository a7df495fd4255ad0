"""The console at scale: every page rendered on the server with 100,000+ accounts.

The provider holds the demo data (plans, services, usage, invoices, bill runs) and a
10-ary tree five levels deep (111,110 accounts) written beside it. Every console page that
answers a GET is requested in-process through the ASGI app as the demo admin, with
`account_id` the top of an 11,111-account subtree, and timed from request to the last
byte of HTML: routing, the session check, the queries and the template. The reference,
measured alternately in the same run, is the raw engine reading what nearly every page
needs at least: the account by id and one page of its children.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from benchmarks.harness import RESULTS_DIR, Figure, Report, paired_ms
from benchmarks.hierarchy import Raw, _dsn, postgres_engine, raw_import, sqlite_engine, write_csv
from boughs.app import create_app
from boughs.auth import repository as users
from boughs.auth import sessions
from boughs.auth.actor import Actor
from boughs.config import Settings
from boughs.console import console_routes
from boughs.context import Ctx
from boughs.db import Database
from boughs.demo import DEMO_ADMIN_EMAIL, load_demo
from boughs.jobs import service as jobs
from boughs.kit.clock import SystemClock
from boughs.schema import upgrade

LEVELS = 5
# Lists asked the expensive way too: sorted against an index, searched, deep in their pages.
VARIANTS = (
    "/accounts?sort=created&dir=desc",
    "/accounts?sort=status&dir=desc",
    "/accounts?q=Account+n0.0.3",
    "/accounts?status=active&depth=3",
    "/accounts?page=400",
    "/accounts/{account_id}/usage?scope=subtree&granularity=hour",
    "/dual-device-users?page=50",
    "/switcher?q=n0.0.3",
)
PAGE_LIMIT_MS = 200.0
WORK = RESULTS_DIR / "work"
SKIP_PREFIXES = ("/api", "/static", "/login", "/logout", "/invitations", "/healthz")
PARAM = re.compile(r"{(\w+)}")
# The first row of each table stands in for "a plan", "an invoice" … in the page URLs.
FIRST_ROW_OF = {
    "service_id": "services",
    "plan_id": "plans",
    "invoice_id": "invoices",
    "bill_run_id": "bill_runs",
    "job_id": "jobs",
    "meter_id": "meters",
    "router_id": "routers",
    "pool_id": "ip_pools",
    "port_id": "ports",
    "method_id": "payment_methods",
    "payment_id": "payments",
    "credit_note_id": "credit_notes",
}
REFERENCE_ACCOUNT = "SELECT * FROM accounts WHERE id = ? AND provider_id = ?"
REFERENCE_CHILDREN = "SELECT * FROM accounts WHERE parent_id = ? AND provider_id = ? ORDER BY name LIMIT 26"


def console_pages(ids: dict[str, int], owners: dict[str, dict[str, int]]) -> tuple[list[str], list[str]]:
    """Every console GET route with its ids filled in, and the routes no id was found for.

    A route naming a child connection or a payment method takes the account they belong to;
    every other account page takes the top of the big subtree.
    """
    pages: list[str] = []
    missing: list[str] = []
    for route in console_routes():
        if "GET" not in route.methods:
            continue
        if route.path.startswith(SKIP_PREFIXES) or route.path.endswith(".pdf"):
            continue
        names = PARAM.findall(route.path)
        chosen = dict(ids)
        for name in names:
            chosen.update(owners.get(name, {}))
        if any(name not in chosen for name in names):
            missing.append(route.path)
            continue
        pages.append(PARAM.sub(lambda m, c=chosen: str(c[m.group(1)]), route.path))
    return pages, missing


async def _owners(raw: Raw, provider_id: int) -> dict[str, dict[str, int]]:
    """The accounts that own the first child connection and the first payment method."""
    owners: dict[str, dict[str, int]] = {}
    connection = await raw.all(
        "SELECT a.parent_id, a.id FROM accounts AS a JOIN services AS s ON s.account_id = a.id "
        "WHERE a.provider_id = ? AND a.parent_id IS NOT NULL AND s.login IS NOT NULL ORDER BY a.id LIMIT 1",
        provider_id,
    )
    if connection:
        owners["child_id"] = {"account_id": int(connection[0][0]), "child_id": int(connection[0][1])}
    method = await raw.all(
        "SELECT account_id, id FROM payment_methods WHERE provider_id = ? ORDER BY id LIMIT 1", provider_id
    )
    if method:
        owners["method_id"] = {"account_id": int(method[0][0]), "method_id": int(method[0][1])}
    return owners


async def _first_ids(db: Database, provider_id: int) -> dict[str, int]:
    found: dict[str, int] = {}
    async with db.transaction(write=False) as session:
        for param, table in FIRST_ROW_OF.items():
            value = await session.scalar(
                text(f"SELECT min(id) FROM {table} WHERE provider_id = :p"), {"p": provider_id}
            )
            if value is not None:
                found[param] = int(value)
    return found


async def run_engine(engine: Any, csv_path: Path, report: Report, repeat: int) -> dict[str, Any]:
    upgrade(engine.url)
    db = Database(engine.url)
    clock = SystemClock()
    try:
        demo = await load_demo(db, clock)
        provider_id = demo.provider_id
        async with db.transaction(write=False) as session:
            first_free = int(await session.scalar(text("SELECT max(id) FROM accounts")) or 0) + 1
        total = await raw_import(engine.name, _dsn(engine.url), csv_path, provider_id, first_id=first_free)
        raw = Raw(engine.name, _dsn(engine.url))
        await raw.open()
        if engine.name == "postgres":
            # The tree was written with explicit ids: later accounts must number after it.
            await raw.execute(
                "SELECT setval(pg_get_serial_sequence('accounts', 'id'), (SELECT max(id) FROM accounts))"
            )
        # Statistics as the periodic maintenance job keeps them, for both sides alike.
        await raw.execute("ANALYZE")
        top = int((await raw.one("SELECT id FROM accounts WHERE external_id = 'n0.0'"))[0])
        async with db.transaction() as session:
            admin = await users.user_by_email(session, DEMO_ADMIN_EMAIL)
            assert admin is not None
            issued = await sessions.start(session, admin, clock.now())
            # An operation on record, so its page is measured too (queued: no worker runs here).
            actor = Actor(admin.provider_id, f"user:{admin.email}", admin.id, admin.staff_role)
            await jobs.run_periodic_now(
                Ctx(session=session, clock=clock, actor=actor), "accounts.expiry_sweep"
            )
        ids = {"account_id": top, **await _first_ids(db, provider_id)}
        owners = await _owners(raw, provider_id)
        settings = Settings(database_url=engine.url, embedded_worker=False)
        app = create_app(settings, db=db, clock=clock, check_schema=False, run_jobs=False)
        pages, missing = console_pages(ids, owners)
        pages += [v.replace("{account_id}", str(top)) for v in VARIANTS]
        transport = httpx.ASGITransport(app=app)
        slowest: list[tuple[float, str]] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            client.cookies.set(sessions.SESSION_COOKIE, issued.cookie)

            def fetch(url: str) -> Callable[[], Awaitable[None]]:
                async def go() -> None:
                    answer = await client.get(url)
                    if answer.status_code != 200:
                        raise RuntimeError(f"GET {url} answered {answer.status_code}: {answer.text[:300]}")

                return go

            async def reference() -> None:
                await raw.one(REFERENCE_ACCOUNT, top, provider_id)
                await raw.all(REFERENCE_CHILDREN, top, provider_id)

            for url in pages:
                ours, theirs = await paired_ms(fetch(url), reference, repeat)
                slowest.append((ours, url))
                report.add(
                    Figure("console", engine.name, url[:34], "ms", ours, theirs, None, PAGE_LIMIT_MS, url)
                )
        await raw.close()
        slowest.sort(reverse=True)
        print(f"  {engine.name}: slowest pages: " + ", ".join(f"{u} {ms:.1f} ms" for ms, u in slowest[:5]))
        return {
            "accounts": total + demo.accounts_total,
            "pages": len(pages),
            "not_measured": missing,
            "slowest": [{"url": u, "ms": ms} for ms, u in slowest[:10]],
        }
    finally:
        await db.dispose()


async def run(report: Report, *, postgres_url: str | None, repeat: int) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    csv_path = WORK / f"tree-{LEVELS}.csv"
    total = write_csv(csv_path, LEVELS)
    print(f"console: the demo data beside a tree of {total:,} accounts", flush=True)
    engines = [sqlite_engine("console")]
    if postgres_url:
        engines.append(postgres_engine(postgres_url, "console"))
    details: dict[str, Any] = {}
    for engine in engines:
        try:
            details[engine.name] = await run_engine(engine, csv_path, report, repeat)
        finally:
            engine.cleanup()
    return details
