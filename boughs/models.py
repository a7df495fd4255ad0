"""Every model, imported once so metadata and Alembic see the whole schema."""

from boughs.accounts.models import Account, AccountLink
from boughs.audit.models import AuditEvent
from boughs.auth.models import ApiToken, Invitation, LoginFailure, User, UserSession
from boughs.db import Base
from boughs.idempotency.models import IdempotencyKey
from boughs.jobs.models import Job, Schedule
from boughs.memberships.models import Membership
from boughs.providers.models import Provider

# Ids are never reused: history (parent links, audit events, billed periods) names
# accounts and users by id long after they are deleted, so SQLite must not hand a
# deleted row's id to a new one (PostgreSQL sequences never do).
for _table in Base.metadata.tables.values():
    _table.dialect_options["sqlite"]["autoincrement"] = True

__all__ = [
    "Account",
    "AccountLink",
    "ApiToken",
    "AuditEvent",
    "Base",
    "IdempotencyKey",
    "Invitation",
    "Job",
    "LoginFailure",
    "Membership",
    "Provider",
    "Schedule",
    "User",
    "UserSession",
]
