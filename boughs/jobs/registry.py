"""Job kinds and periodic tasks, declared by each domain's tasks.py."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boughs.jobs.runtime import JobRun

Handler = Callable[["JobRun"], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class Periodic:
    kind: str
    every: timedelta


TASK_MODULES = (
    "boughs.accounts.tasks",
    "boughs.billing.dunning_tasks",
    "boughs.billing.tasks",
    "boughs.idempotency.tasks",
    "boughs.jobs.tasks",
    "boughs.services.tasks",
    "boughs.usage.tasks",
)
HANDLERS: dict[str, Handler] = {}
PERIODIC: dict[str, Periodic] = {}


def job(kind: str, *, every: timedelta | None = None) -> Callable[[Handler], Handler]:
    """Register a job handler; with ``every``, the scheduler also runs it per provider."""

    def register(handler: Handler) -> Handler:
        if kind in HANDLERS and HANDLERS[kind] is not handler:
            raise ValueError(f"job kind {kind!r} is registered twice")
        HANDLERS[kind] = handler
        if every is not None:
            PERIODIC[kind] = Periodic(kind, every)
        return handler

    return register


def load_all() -> None:
    """Import every domain's tasks so their handlers are registered."""
    for module in TASK_MODULES:
        importlib.import_module(module)
