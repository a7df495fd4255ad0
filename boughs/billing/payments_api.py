"""Routes filled in by the billing work in progress."""

from __future__ import annotations

from boughs.deps import domain_router

router = domain_router("", "billing")
