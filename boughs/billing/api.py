"""Bill runs and invoices."""

from __future__ import annotations

from boughs.deps import domain_router

router = domain_router("", "billing")
