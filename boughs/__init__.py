"""Boughs: subscriber management and billing built around account hierarchies."""

__version__ = "0.1.0"
