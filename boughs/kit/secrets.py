"""Subscriber secrets sealed at rest and recoverable (RADIUS PAP/CHAP needs them in clear).

Operator passwords are hashed instead (auth.passwords); these are not, on purpose.
The key is derived from BOUGHS_SECRET_KEY, so changing that key makes sealed secrets
unreadable: rotate by unsealing with the old box and sealing with the new.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken


class SecretUnreadable(Exception):
    """A sealed value that this installation's key does not open."""


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"boughs/subscriber-secrets/v1\x00" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def unseal(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except InvalidToken:
            raise SecretUnreadable("sealed with another BOUGHS_SECRET_KEY") from None


@lru_cache(maxsize=8)
def box_for(secret_key: str) -> SecretBox:
    return SecretBox(secret_key)


def default_box() -> SecretBox:
    from boughs.config import get_settings

    return box_for(get_settings().secret_key)
