from __future__ import annotations

import pytest

from boughs.kit.secrets import SecretBox, SecretUnreadable, box_for


def test_a_sealed_secret_opens_with_the_same_key_only() -> None:
    box = SecretBox("key-one")
    sealed = box.seal("pässword-123")
    assert "pässword" not in sealed and "123" not in sealed
    assert box.unseal(sealed) == "pässword-123"
    assert SecretBox("key-one").unseal(sealed) == "pässword-123"
    with pytest.raises(SecretUnreadable):
        SecretBox("key-two").unseal(sealed)


def test_sealing_twice_gives_different_texts() -> None:
    box = box_for("key-one")
    assert box.seal("same") != box.seal("same")
    assert box_for("key-one") is box
