"""Accounts: a forest per provider, with per-attribute inheritance down the tree."""
