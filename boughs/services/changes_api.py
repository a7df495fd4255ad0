"""Plan changes, scheduled changes and data caps."""

from __future__ import annotations

from boughs.deps import domain_router

router = domain_router("", "services")
