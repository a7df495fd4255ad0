"""Memberships: a user's role on an account, reaching down its subtree."""
