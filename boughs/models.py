"""Every model, imported once so metadata and Alembic see the whole schema."""

from boughs.accounts.models import Account, AccountLink
from boughs.audit.models import AuditEvent
from boughs.auth.models import ApiToken, Invitation, LoginFailure, User, UserSession
from boughs.billing.models import (
    BillRun,
    BillRunChunk,
    CreditNote,
    DunningHold,
    Invoice,
    InvoiceLine,
    LedgerEntry,
    Payment,
    PaymentAllocation,
    PaymentMethod,
)
from boughs.catalog.models import IpPool, Offer, Plan, Port, Router
from boughs.db import Base
from boughs.idempotency.models import IdempotencyKey
from boughs.jobs.models import Job, Schedule
from boughs.memberships.models import Membership
from boughs.providers.models import Provider
from boughs.services.models import (
    Service,
    ServiceDiscount,
    ServicePlanChange,
    ServiceScheduledChange,
    ServiceStatusChange,
)
from boughs.usage.models import (
    CapAlert,
    CapUsage,
    Meter,
    TopUp,
    UsageBatch,
    UsageEvent,
    UsageRollup,
    UsageUniqueValue,
)

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
    "BillRun",
    "BillRunChunk",
    "CapAlert",
    "CapUsage",
    "CreditNote",
    "DunningHold",
    "IdempotencyKey",
    "Invitation",
    "Invoice",
    "InvoiceLine",
    "IpPool",
    "Job",
    "LedgerEntry",
    "LoginFailure",
    "Membership",
    "Meter",
    "Offer",
    "Payment",
    "PaymentAllocation",
    "PaymentMethod",
    "Plan",
    "Port",
    "Provider",
    "Router",
    "Schedule",
    "Service",
    "ServiceDiscount",
    "ServicePlanChange",
    "ServiceScheduledChange",
    "ServiceStatusChange",
    "TopUp",
    "UsageBatch",
    "UsageEvent",
    "UsageRollup",
    "UsageUniqueValue",
    "User",
    "UserSession",
]
