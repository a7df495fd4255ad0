"""Running jobs: the broker, the workers, and the scheduler tick.

A job is a row first. Its message carries only the id; the worker claims the row by
compare-and-set, so duplicate deliveries, re-sent messages and several workers never
run the same job twice at once. Every tick, any worker re-sends what was never sent,
was lost by the broker, or belonged to a worker that died, so a restart resumes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware.asyncio import AsyncIO
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from boughs.auth.actor import Actor
from boughs.config import Settings
from boughs.context import Ctx
from boughs.db import Database
from boughs.jobs import registry, repository
from boughs.jobs.models import Job, JobStatus, Schedule
from boughs.kit.clock import Clock, SystemClock
from boughs.kit.secrets import SecretBox, box_for
from boughs.providers import repository as providers

log = logging.getLogger(__name__)

ACTOR_NAME = "boughs_run_job"
FOLD_ACTOR_NAME = "boughs_fold_usage"
# A fold asked for after an ingest waits for ingestion to pause this long, so that the
# batches of a burst are folded together; asks made meanwhile ride on it.
FOLD_QUIET_SECONDS = 0.2
# Under a steady stream it waits no longer than this after the first ask it covers, so
# rollups and caps lag the usage by at most about this plus the fold's own time. On SQLite
# a fold holds the one write lock, and the more events it takes at once the fewer pages
# it writes for each (on a large tree, a fold of 1,000 events took twice the time per
# event of one of 12,000): folds there wait longer and take more. On PostgreSQL a fold
# runs beside the ingests, and one sent as soon as the pause is up keeps the lag short.
FOLD_WAIT_AT_MOST_SECONDS = {"sqlite": 3.0, "postgresql": FOLD_QUIET_SECONDS}
HEARTBEAT_EVERY = 10.0
# A job's whole run, across all its chunks; Dramatiq's default of ten minutes is for
# short tasks, and a bill run over a large provider can take longer.
TIME_LIMIT_MS = 6 * 60 * 60 * 1000

_current: JobRuntime | None = None
_current_lock = threading.Lock()


def current() -> JobRuntime | None:
    """The runtime of this process, if one is running (serve or worker)."""
    return _current


def make_broker(settings: Settings) -> dramatiq.Broker:
    url = settings.broker_url
    broker: dramatiq.Broker
    if not url:
        broker = StubBroker()
    elif url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url, namespace=f"{settings.queue_name}-dramatiq")
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url)
    else:
        raise ValueError(
            f"BOUGHS_BROKER_URL {url!r} is neither redis:// nor amqp://; set one of those, "
            "or unset it to run jobs inside `boughs serve`"
        )
    broker.add_middleware(AsyncIO())
    return broker


@dataclass(slots=True)
class _FoldAsks:
    """When the first and the latest ask for a fold not yet sent came, and the event loop
    whose timer sends it."""

    first: float
    latest: float
    loop: asyncio.AbstractEventLoop


@dataclass
class JobRun:
    """What a handler gets: its job, and units of work on the runtime's database."""

    runtime: JobRuntime
    job: Job
    db: Database

    @property
    def args(self) -> dict[str, Any]:
        return self.job.args

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[Ctx]:
        async with self.db.transaction() as session:
            yield Ctx(
                session=session,
                clock=self.runtime.clock,
                actor=Actor.system(self.job.provider_id, self.job.kind),
                request_id=f"job-{self.job.id}",
                secrets=self.secrets,
            )

    @property
    def secrets(self) -> SecretBox:
        return box_for(self.runtime.settings.secret_key)

    async def progress(self, done: int, total: int | None = None) -> None:
        """Record progress in its own transaction, so it is visible while the job runs."""
        values: dict[str, Any] = {"progress_done": done, "heartbeat_at": self.runtime.clock.now()}
        if total is not None:
            values["progress_total"] = total
        async with self.db.transaction() as session:
            await repository.set_fields(session, self.job.id, self.runtime.worker_name, **values)


class JobRuntime:
    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        registry.load_all()
        self.settings = settings
        self.clock = clock or SystemClock()
        self.broker = make_broker(settings)
        self.queue_name = settings.queue_name
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.actor = self._declare(ACTOR_NAME, self._perform)
        self.fold_actor = self._declare(FOLD_ACTOR_NAME, self._fold_usage)
        self._fold_asks: dict[int, _FoldAsks] = {}
        self._fold_asks_lock = threading.Lock()
        backend = make_url(settings.database_url).get_backend_name()
        self._fold_wait_at_most = FOLD_WAIT_AT_MOST_SECONDS.get(backend, FOLD_QUIET_SECONDS)
        self._worker: dramatiq.Worker | None = None
        self._worker_db: Database | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._tick_db: Database | None = None
        self._stopping = asyncio.Event()

    def _declare(self, name: str, perform: Any) -> Any:
        return dramatiq.actor(
            broker=self.broker, actor_name=name, queue_name=self.queue_name, max_retries=0,
            time_limit=TIME_LIMIT_MS,
        )(perform)  # fmt: skip

    # --- sending ----------------------------------------------------------------------

    def send(self, job_id: int, delay_seconds: float = 0) -> None:
        delay = int(delay_seconds * 1000) if delay_seconds > 0 else None
        self.actor.send_with_options(args=(job_id,), delay=delay)

    def request_fold(self, provider_id: int) -> None:
        """Fold the provider's pending usage once ingestion pauses for FOLD_QUIET_SECONDS,
        or the database's FOLD_WAIT_AT_MOST_SECONDS after this ask if it never does. The
        fold takes what is pending when it starts, so asks made before it is sent ride on it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop to time the wait on: the broker delays it instead
            self.fold_actor.send_with_options(args=(provider_id,), delay=int(FOLD_QUIET_SECONDS * 1000))
            return
        now = time.monotonic()
        with self._fold_asks_lock:
            asks = self._waiting_asks(provider_id)
            if asks is not None:
                asks.latest = now
                return
            asks = self._fold_asks[provider_id] = _FoldAsks(now, now, loop)
        loop.call_later(FOLD_QUIET_SECONDS, self._send_fold_when_due, provider_id, asks)

    def _send_fold_when_due(self, provider_id: int, asks: _FoldAsks) -> None:
        now = time.monotonic()
        with self._fold_asks_lock:
            if self._fold_asks.get(provider_id) is not asks:  # started afresh: its own timer runs
                return
            due = min(asks.latest + FOLD_QUIET_SECONDS, asks.first + self._fold_wait_at_most)
            if now < due:
                asks.loop.call_later(due - now, self._send_fold_when_due, provider_id, asks)
                return
            del self._fold_asks[provider_id]
        self.fold_actor.send(provider_id)

    # --- lifecycle --------------------------------------------------------------------

    async def start_embedded(self) -> None:
        """Inside `boughs serve`: workers in threads of this process, ticks on this loop."""
        self.start_worker()
        self._tick_db = Database(self.settings.database_url)
        self._tick_task = asyncio.create_task(self._tick_forever(self._tick_db))

    def start_worker(self, threads: int = 4) -> None:
        global _current
        with _current_lock:
            _current = self
        self._worker = dramatiq.Worker(
            self.broker, queues={self.queue_name}, worker_threads=threads, worker_timeout=200
        )
        self._worker.start()

    async def stop(self) -> None:
        global _current
        self._stopping.set()
        if self._tick_task is not None:
            self._tick_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._tick_task
        if self._tick_db is not None:
            await self._tick_db.dispose()
        await asyncio.to_thread(self.stop_worker)
        with _current_lock:
            if _current is self:
                _current = None

    def stop_worker(self) -> None:
        if self._worker is None:
            return
        loop_thread = get_event_loop_thread()
        if self._worker_db is not None and loop_thread is not None:
            loop_thread.run_coroutine(self._worker_db.dispose())
        self._worker.stop()
        self._worker = None
        self.broker.close()

    def drain(self, timeout_seconds: float = 60) -> None:
        """Wait until the in-process queue is empty and no job is running (tests, CLI)."""
        if isinstance(self.broker, StubBroker):
            self.broker.join(self.queue_name, timeout=int(timeout_seconds * 1000))
        if self._worker is not None:
            self._worker.join()

    # --- executing --------------------------------------------------------------------

    def _db_for_worker(self) -> Database:
        # Created on first use inside the worker's event loop, whose connections it keeps.
        if self._worker_db is None:
            self._worker_db = Database(self.settings.database_url)
        return self._worker_db

    async def _perform(self, job_id: int) -> None:
        await self.execute(self._db_for_worker(), job_id)

    async def _fold_usage(self, provider_id: int) -> None:
        from boughs.usage.tasks import fold_pending

        secrets = box_for(self.settings.secret_key)
        await fold_pending(
            self._db_for_worker(), provider_id, self.clock, secrets,
            next_fold_coming=lambda: self._fold_asked(provider_id),
        )  # fmt: skip

    def _fold_asked(self, provider_id: int) -> bool:
        """Whether a fold for the provider has been asked for in this process and is yet to
        be sent (its timer runs): it folds whatever is pending when it runs."""
        with self._fold_asks_lock:
            return self._waiting_asks(provider_id) is not None

    def _waiting_asks(self, provider_id: int) -> _FoldAsks | None:
        """The provider's asks whose timer still runs (under ``_fold_asks_lock``): asks whose
        event loop has closed lost their timer with it, and the next ask starts afresh."""
        asks = self._fold_asks.get(provider_id)
        return asks if asks is not None and not asks.loop.is_closed() else None

    async def execute(self, db: Database, job_id: int) -> str | None:
        """Claim and run one job; returns its final status, or None if it was not ours."""
        now = self.clock.now()
        stale_before = now - timedelta(seconds=self.settings.job_stale_after_seconds)
        async with db.transaction() as session:
            if not await repository.claim(session, job_id, self.worker_name, now, stale_before):
                return None
            job = await repository.get_any(session, job_id)
        assert job is not None
        handler = registry.HANDLERS.get(job.kind)
        heartbeat = asyncio.create_task(self._heartbeat(db, job_id))
        try:
            if handler is None:
                raise LookupError(f"no handler is registered for job kind {job.kind!r}")
            result = await handler(JobRun(self, job, db))
        except Exception as exc:
            heartbeat.cancel()
            return await self._failed(db, job, exc)
        heartbeat.cancel()
        async with db.transaction() as session:
            await repository.set_fields(
                session, job_id, self.worker_name,
                status=JobStatus.succeeded.value, result=result,
                finished_at=self.clock.now(), error=None,
            )  # fmt: skip
        return JobStatus.succeeded.value

    async def _failed(self, db: Database, job: Job, exc: Exception) -> str:
        log.exception("job %s (%s) failed", job.id, job.kind, exc_info=exc)
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:4000]
        attempts = job.attempts + 1
        retry = attempts < job.max_attempts
        delay = min(2**attempts, 300)
        status = JobStatus.queued if retry else JobStatus.failed
        async with db.transaction() as session:
            values: dict[str, Any] = {"status": status.value, "error": error}
            if retry:
                values["run_after"] = self.clock.now() + timedelta(seconds=delay)
                values["sent_at"] = self.clock.now()
            else:
                values["finished_at"] = self.clock.now()
            await repository.set_fields(session, job.id, self.worker_name, **values)
        if retry:
            self.send(job.id, delay_seconds=delay)
        return status.value

    async def _heartbeat(self, db: Database, job_id: int) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            try:
                async with db.transaction() as session:
                    await repository.set_fields(
                        session, job_id, self.worker_name, heartbeat_at=self.clock.now()
                    )
            except Exception:
                log.exception("heartbeat of job %s failed", job_id)

    # --- the scheduler tick -----------------------------------------------------------

    async def _tick_forever(self, db: Database) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick(db)
            except Exception:
                log.exception("scheduler tick failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), timeout=self.settings.scheduler_interval_seconds
                )

    async def tick(self, db: Database) -> list[int]:
        """Start due periodic jobs (once, whatever the number of workers) and re-send
        jobs nobody is running. Returns the ids sent."""
        now = self.clock.now()
        started = await self._run_due_schedules(db, now)
        stale_before = now - timedelta(seconds=self.settings.job_stale_after_seconds)
        async with db.transaction() as session:
            ids = await repository.needing_send(session, now, stale_before, stale_before)
            await repository.mark_sent(session, ids, now)
        for job_id in ids:
            self.send(job_id)
        await self._fold_what_waits(db)
        return sorted(set(started) | set(ids))

    async def _fold_what_waits(self, db: Database) -> None:
        """Usage no fold took yet: taken by an API process that sends nothing to the broker,
        or its message lost with a worker."""
        from boughs.usage import fold_repository

        async with db.transaction(write=False) as session:
            waiting = await fold_repository.providers_with_pending(session)
        for provider_id in waiting:
            self.request_fold(provider_id)

    async def _run_due_schedules(self, db: Database, now: datetime) -> list[int]:
        with suppress(IntegrityError):  # another worker created them at the same moment
            await self._ensure_schedules(db, now)
        started = await self._claim_schedules(db, now)
        for job_id in started:
            self.send(job_id)
        return started

    async def _ensure_schedules(self, db: Database, now: datetime) -> None:
        async with db.transaction() as session:
            provider_ids = await providers.all_ids(session)
            existing = {(s.provider_id, s.name): s for s in await repository.schedules(session)}
            for provider_id in provider_ids:
                for periodic in registry.PERIODIC.values():
                    if (provider_id, periodic.kind) not in existing:
                        session.add(
                            Schedule(
                                provider_id=provider_id,
                                name=periodic.kind,
                                interval_seconds=periodic.every.total_seconds(),
                                next_run_at=now,
                            )
                        )

    async def _claim_schedules(self, db: Database, now: datetime) -> list[int]:
        started: list[int] = []
        async with db.transaction() as session:
            for schedule in await repository.schedules(session):
                if schedule.next_run_at > now or schedule.name not in registry.PERIODIC:
                    continue
                new_next = now + timedelta(seconds=schedule.interval_seconds)
                claimed = await repository.claim_schedule(
                    session, schedule.id, schedule.next_run_at, new_next, now
                )
                if not claimed:
                    continue  # another worker took this run
                job = Job(
                    provider_id=schedule.provider_id,
                    kind=schedule.name,
                    args={},
                    status=JobStatus.queued.value,
                    dedupe_key=f"schedule:{schedule.name}:{schedule.next_run_at.isoformat()}",
                    created_at=now,
                    sent_at=now,
                )
                session.add(job)
                await session.flush()
                schedule.last_job_id = job.id
                started.append(job.id)
        return started
