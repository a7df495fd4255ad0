"""Console pages: accounts."""

from __future__ import annotations

from boughs.console.frame import console_router

router = console_router()
