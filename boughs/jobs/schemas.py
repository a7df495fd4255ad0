from __future__ import annotations

from datetime import datetime
from typing import Any

from boughs.kit.schema import Output


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
