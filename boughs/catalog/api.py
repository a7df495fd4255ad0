"""Plans, offers, routers, IPv4 pools and ports."""

from __future__ import annotations

from boughs.deps import domain_router

router = domain_router("", "catalog")
