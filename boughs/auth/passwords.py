"""Operator and portal passwords are hashed with argon2id."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from boughs.kit.errors import InvalidInput

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    return _hasher.hash("no user has this password: it only spends the time a real check takes")


def dummy_verify(password: str) -> bool:
    """Spend what a real verification costs, so an unknown email answers as slowly as a known one."""
    verify_password(_dummy_hash(), password)
    return False


def check_password_strength(password: str, *, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput.on_field(
            field,
            f"is shorter than {MIN_PASSWORD_LENGTH} characters",
            f"choose a password of at least {MIN_PASSWORD_LENGTH} characters",
        )
    if password.isdigit() or (password.isalpha() and password.lower() == password):
        raise InvalidInput.on_field(
            field,
            "is too easy to guess",
            "mix letters with digits, capitals or symbols",
        )
