"""Identifiers and secrets handed to clients."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "bgh_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """Tokens carry 256 random bits, so a plain SHA-256 is a safe and fast lookup key."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_request_id() -> str:
    return secrets.token_hex(8)
