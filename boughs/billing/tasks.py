"""Bill runs as jobs."""

from __future__ import annotations
