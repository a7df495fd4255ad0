"""Real `boughs worker` processes on a real broker, sharing the test database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import func, select

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.accounts.tasks import EXPIRY_SWEEP
from boughs.audit.models import AuditEvent
from boughs.db import Database
from boughs.jobs.models import Job
from boughs.kit.clock import SystemClock
from tests.conftest import Tenant, missing

REDIS_URL = os.environ.get("BOUGHS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("BOUGHS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    url = REDIS_URL if request.param == "redis" else AMQP_URL
    if not _reachable(url):
        missing(request.param, f"nothing listens at {url}")
    return url


@pytest.fixture
def queue_name(broker_url: str) -> Iterator[str]:
    name = f"boughs-test-{uuid.uuid4().hex[:10]}"
    yield name
    if broker_url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker_url)
        for key in client.scan_iter(f"{name}-dramatiq*"):
            client.delete(key)
        client.close()
    else:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        channel = connection.channel()
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(queue=name + suffix)
        connection.close()


class Workers:
    def __init__(self, database_url: str, broker_url: str, queue_name: str, log_dir: Path) -> None:
        self.env = {
            **os.environ,
            "BOUGHS_DATABASE_URL": database_url,
            "BOUGHS_BROKER_URL": broker_url,
            "BOUGHS_QUEUE_NAME": queue_name,
            "BOUGHS_SCHEDULER_INTERVAL_SECONDS": "0.5",
            "BOUGHS_JOB_STALE_AFTER_SECONDS": "30",
        }
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        for n in range(count):
            log = open(self.log_dir / f"worker-{len(self.processes)}-{n}.log", "wb")  # noqa: SIM115
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "boughs.cli", "worker", "--threads", "2"],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


@pytest.fixture
def workers(database_url: str, broker_url: str, queue_name: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(database_url, broker_url, queue_name, tmp_path)
    yield pool
    pool.stop()


async def _wait_for(db: Database, condition, what: str, workers: Workers, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        async with db.transaction(write=False) as session:
            if await condition(session):
                return
        for process in workers.processes:
            if process.poll() is not None:
                pytest.fail(f"a worker exited with {process.returncode}:\n{workers.logs()}")
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; worker logs:\n{workers.logs()}")


async def test_two_workers_run_each_scheduled_sweep_once(
    db: Database, tenant: Tenant, ctx_factory, workers: Workers
) -> None:
    # The workers use the real clock, so these expiries are long past for them.
    async with ctx_factory() as ctx:
        parent = await accounts.create(ctx, AccountCreate(name="Lapsed", expiry_date=date(2026, 1, 1)))
        await accounts.create(ctx, AccountCreate(name="Inherits", parent_id=parent.id))
        await accounts.create(
            ctx, AccountCreate(name="Own expiry", parent_id=parent.id, expiry_date=date(2999, 1, 1))
        )
    workers.start(2)

    async def sweep_done(session) -> bool:  # type: ignore[no-untyped-def]
        statuses = await session.execute(
            select(Job.status).where(Job.kind == EXPIRY_SWEEP, Job.provider_id == tenant.provider_id)
        )
        return "succeeded" in statuses.scalars().all()

    await _wait_for(db, sweep_done, "the first expiry sweep", workers)
    await asyncio.sleep(2)  # several more ticks from both workers: none may start a second run
    async with db.transaction(write=False) as session:
        sweeps = (await session.execute(select(Job).where(Job.kind == EXPIRY_SWEEP))).scalars().all()
        assert [j.status for j in sweeps] == ["succeeded"], workers.logs()
        assert sweeps[0].result is not None and sweeps[0].result["expired"] == 2
        expired_events = await session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "expired")
        )
        assert expired_events == 2


async def test_worker_resumes_a_job_whose_worker_died(
    db: Database, tenant: Tenant, ctx_factory, workers: Workers
) -> None:
    async with ctx_factory() as ctx:
        await accounts.create(ctx, AccountCreate(name="Lapsed", expiry_date=date(2026, 1, 1)))
    long_ago = SystemClock().now() - timedelta(hours=1)
    async with db.transaction() as session:
        # Exactly what a worker killed mid-run leaves behind.
        orphan = Job(
            provider_id=tenant.provider_id, kind=EXPIRY_SWEEP, args={}, status="running",
            attempts=1, worker="gone:1:dead", created_at=long_ago, started_at=long_ago,
            heartbeat_at=long_ago, sent_at=long_ago,
        )  # fmt: skip
        session.add(orphan)
    async with db.transaction() as session:
        orphan_id = (await session.execute(select(Job.id).where(Job.worker == "gone:1:dead"))).scalar_one()
    workers.start(1)

    async def resumed(session) -> bool:  # type: ignore[no-untyped-def]
        job = await session.get(Job, orphan_id)
        return job is not None and job.status == "succeeded"

    await _wait_for(db, resumed, "the orphaned job to be resumed", workers)
    async with db.transaction(write=False) as session:
        job = await session.get(Job, orphan_id)
        assert job is not None
        assert job.attempts == 2
        assert job.worker != "gone:1:dead"
        assert job.finished_at is not None and job.finished_at > datetime(2026, 1, 1, tzinfo=UTC)
