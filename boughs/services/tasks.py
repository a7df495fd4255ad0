"""Periodic work on services."""
