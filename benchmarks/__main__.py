"""`make bench`: every suite on SQLite and, when reachable, PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
from datetime import UTC, datetime
from urllib.parse import urlparse

from benchmarks import hierarchy
from benchmarks.harness import Report

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", type=int, default=6, help="tree levels (6 = 1,111,110 accounts)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per figure")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    postgres = None if args.sqlite_only else _postgres_url(args.postgres_url)
    report = Report()
    asyncio.run(hierarchy.run(report, levels=args.levels, postgres_url=postgres, repeat=args.repeat))
    report.print_table()
    path = report.write(
        "hierarchy",
        {
            "when": datetime.now(UTC).isoformat(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "levels": args.levels,
        },
    )
    print(f"Results written to {path}")


if __name__ == "__main__":
    main()
