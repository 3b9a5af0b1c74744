"""Ed25519 through libsodium: the same signatures OpenSSL makes, the same refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from p2pfaas.errors import SignatureError
from p2pfaas.identity import KeyPair, PublicKey


def test_signatures_are_openssls_and_verify_both_ways() -> None:
    keys = KeyPair.from_seed(b"identity test")
    for data in (b"", b"x", bytes(range(256)) * 40):
        signature = keys.sign(data)
        assert signature == keys._private.sign(data)  # Ed25519 is deterministic
        Ed25519PublicKey.from_public_bytes(keys.public.raw).verify(signature, data)
        keys.public.verify(signature, data)


def test_tampered_data_signature_or_key_is_refused() -> None:
    keys, other = KeyPair.from_seed(b"a"), KeyPair.from_seed(b"b")
    signature = keys.sign(b"payload")
    bad = [
        (keys.public, signature, b"payload!"),
        (keys.public, signature[:-1] + bytes([signature[-1] ^ 1]), b"payload"),
        (other.public, signature, b"payload"),
        (PublicKey(bytes(32)), signature, b"payload"),  # a small-order key
    ]
    for key, sig, data in bad:
        with pytest.raises(SignatureError, match="bad signature"):
            key.verify(sig, data)
    with pytest.raises(SignatureError, match="64 bytes"):
        keys.public.verify(signature[:63], b"payload")


def test_key_paths_expand_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #16: the README's `KeyPair.load("~/.p2pfaas/lessee.key")` failed (no `~` expansion)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    keys = KeyPair.load_or_create(Path("~/.p2pfaas/lessee.key"))
    assert (tmp_path / ".p2pfaas" / "lessee.key").exists()
    assert KeyPair.load(Path("~/.p2pfaas/lessee.key")).key_id == keys.key_id
