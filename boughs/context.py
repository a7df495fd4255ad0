"""What a unit of work carries: its session, the clock, who acts, and the request id."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from boughs.auth.actor import Actor
from boughs.db import AfterCommit, after_commit
from boughs.kit.clock import Clock
from boughs.kit.secrets import SecretBox, default_box


@dataclass
class Ctx:
    session: AsyncSession
    clock: Clock
    actor: Actor
    request_id: str | None = None
    acting_account_id: int | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    # Seals subscriber secrets with this installation's key.
    secrets: SecretBox = field(default_factory=default_box)

    @property
    def provider_id(self) -> int:
        return self.actor.provider_id

    def now(self) -> datetime:
        return self.clock.now()

    def after_commit(self, hook: AfterCommit) -> None:
        after_commit(self.session, hook)
