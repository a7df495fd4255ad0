from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StaffRole(StrEnum):
    owner = "owner"
    admin = "admin"
    billing = "billing"
    support = "support"


@dataclass(frozen=True)
class Actor:
    """Whoever a unit of work runs as: a user behind a token or session, or the system itself."""

    provider_id: int
    label: str
    user_id: int | None = None
    staff_role: str | None = None
    token_id: int | None = None
    # The console session behind the request, when it came with the session cookie.
    session_id: int | None = None

    @classmethod
    def system(cls, provider_id: int, what: str) -> Actor:
        return cls(provider_id=provider_id, label=f"system:{what}", staff_role=StaffRole.owner)

    @property
    def is_staff(self) -> bool:
        return self.staff_role is not None
