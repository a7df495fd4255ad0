"""Periodic dunning."""

from __future__ import annotations
