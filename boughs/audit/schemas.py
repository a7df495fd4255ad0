from __future__ import annotations

from datetime import datetime
from typing import Any

from boughs.kit.schema import Output


class AuditEventOut(Output):
    id: int
    created_at: datetime
    actor_user_id: int | None
    actor_label: str
    acting_account_id: int | None
    account_id: int | None
    entity: str
    entity_id: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
