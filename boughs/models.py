"""Every model, imported once so metadata and Alembic see the whole schema."""

from boughs.accounts.models import Account, AccountLink
from boughs.audit.models import AuditEvent
from boughs.auth.models import ApiToken, User
from boughs.db import Base
from boughs.idempotency.models import IdempotencyKey
from boughs.jobs.models import Job, Schedule
from boughs.providers.models import Provider

__all__ = [
    "Account",
    "AccountLink",
    "ApiToken",
    "AuditEvent",
    "Base",
    "IdempotencyKey",
    "Job",
    "Provider",
    "Schedule",
    "User",
]
