"""Child connections (seed 000) and dual device users."""

from __future__ import annotations

from boughs.deps import domain_router

router = domain_router("", "child connections")
