from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from boughs.kit.schema import Input, Output


class JobStart(Input):
    kind: str = Field(description="A periodic task to run now, e.g. accounts.expiry_sweep.")


class JobOut(Output):
    id: int
    kind: str
    status: str
    attempts: int
    progress_done: int
    progress_total: int | None
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
