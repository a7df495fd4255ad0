"""`make bench`: every suite on SQLite and, when reachable, PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from benchmarks import billing, console, hierarchy, usage
from benchmarks.harness import Report

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
SUITES = ("hierarchy", "usage", "billing", "console")


def _postgres_url(explicit: str | None) -> str | None:
    url = (
        explicit
        or os.environ.get("BOUGHS_BENCH_POSTGRES_URL")
        or os.environ.get("BOUGHS_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5432), timeout=1):
            return url
    except OSError:
        print(f"PostgreSQL is not reachable at {url}: measuring SQLite only.")
        return None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value.replace("_", "").replace(",", "")) if value else default


def main() -> None:
    defaults = usage.Sizes()
    bill = billing.Sizes()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--suite", action="append", choices=SUITES, help="run this suite (repeatable); default every suite"
    )
    parser.add_argument(
        "--levels", type=int, default=6, help="hierarchy: tree levels (6 = 1,111,110 accounts)"
    )
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per query figure")
    parser.add_argument(
        "--usage-levels",
        type=int,
        default=_env_int("BOUGHS_BENCH_USAGE_LEVELS", defaults.levels),
        help="usage: tree levels (5 = 111,110 accounts); env BOUGHS_BENCH_USAGE_LEVELS",
    )
    parser.add_argument(
        "--usage-events",
        type=int,
        default=_env_int("BOUGHS_BENCH_USAGE_EVENTS", defaults.events),
        help="usage: events to ingest (default 1,000,000); env BOUGHS_BENCH_USAGE_EVENTS",
    )
    parser.add_argument(
        "--usage-clients",
        type=int,
        default=_env_int("BOUGHS_BENCH_USAGE_CLIENTS", defaults.clients),
        help="usage: concurrent HTTP clients (default 4); env BOUGHS_BENCH_USAGE_CLIENTS",
    )
    parser.add_argument(
        "--usage-processes",
        type=int,
        default=_env_int("BOUGHS_BENCH_USAGE_PROCESSES", defaults.processes),
        help="usage: `boughs serve --processes` (default 1); env BOUGHS_BENCH_USAGE_PROCESSES",
    )
    parser.add_argument(
        "--billing-parents",
        type=int,
        default=_env_int("BOUGHS_BENCH_BILLING_PARENTS", bill.parents),
        help="billing: top-level accounts (default 10,000); env BOUGHS_BENCH_BILLING_PARENTS",
    )
    parser.add_argument(
        "--billing-children",
        type=int,
        default=_env_int("BOUGHS_BENCH_BILLING_CHILDREN", bill.children),
        help="billing: children per top-level account (default 9); env BOUGHS_BENCH_BILLING_CHILDREN",
    )
    parser.add_argument(
        "--billing-events",
        type=int,
        default=_env_int("BOUGHS_BENCH_BILLING_EVENTS", 0) or None,
        help="billing: usage events in the month (default 50 per account and meter: 10,000,000); "
        "env BOUGHS_BENCH_BILLING_EVENTS",
    )
    parser.add_argument(
        "--billing-workers",
        type=int,
        default=_env_int("BOUGHS_BENCH_BILLING_WORKERS", bill.workers),
        help="billing: worker processes for the broker run, PostgreSQL only (default 2; 1 skips it); "
        "env BOUGHS_BENCH_BILLING_WORKERS",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BOUGHS_BENCH_REDIS_URL", bill.redis_url),
        help="billing: the broker of the worker run; env BOUGHS_BENCH_REDIS_URL",
    )
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    postgres = None if args.sqlite_only else _postgres_url(args.postgres_url)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    for suite in args.suite or SUITES:
        report = Report()
        extra: dict[str, Any] = {"when": datetime.now(UTC).isoformat(), "machine": machine}
        if suite == "hierarchy":
            asyncio.run(hierarchy.run(report, levels=args.levels, postgres_url=postgres, repeat=args.repeat))
            extra["levels"] = args.levels
        elif suite == "console":
            extra.update(asyncio.run(console.run(report, postgres_url=postgres, repeat=args.repeat)))
        elif suite == "billing":
            billing_sizes = billing.Sizes(
                parents=args.billing_parents,
                children=args.billing_children,
                events=args.billing_events,
                workers=args.billing_workers,
                redis_url=args.redis_url,
            )
            extra.update(asyncio.run(billing.run(report, sizes=billing_sizes, postgres_url=postgres)))
        else:
            sizes = usage.Sizes(
                levels=args.usage_levels,
                events=args.usage_events,
                clients=args.usage_clients,
                processes=args.usage_processes,
                repeat=args.repeat,
            )
            extra.update(asyncio.run(usage.run(report, sizes=sizes, postgres_url=postgres)))
        report.print_table()
        print(f"Results written to {report.write(suite, extra)}")


if __name__ == "__main__":
    main()
