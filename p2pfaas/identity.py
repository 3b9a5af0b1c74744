"""Ed25519 identities for lessees and nodes.

A `KeyPair` signs; a `PublicKey` verifies. A node's id is the SHA-1 of its raw 32-byte public key,
which is also its 160-bit Kademlia id. Key files are PEM (PKCS#8, unencrypted) written with
owner-only permissions; loading refuses a private key file that others can read.

This module does no I/O beyond reading and writing key files.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl import bindings as sodium
from nacl.exceptions import CryptoError

from p2pfaas.errors import KeyFileError, SignatureError

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def node_id_of(public_key: bytes) -> bytes:
    """The 20-byte node id (Kademlia id) for a raw Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise SignatureError(f"public key must be {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}")
    return hashlib.sha1(public_key).digest()


@dataclass(frozen=True)
class PublicKey:
    """A raw Ed25519 public key that can verify signatures."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != PUBLIC_KEY_BYTES:
            raise SignatureError(f"public key must be {PUBLIC_KEY_BYTES} bytes, got {len(self.raw)}")

    @property
    def node_id(self) -> bytes:
        return node_id_of(self.raw)

    @property
    def key_id(self) -> str:
        """A short printable name: the hex node id."""
        return self.node_id.hex()

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raise `SignatureError` unless `signature` is this key's signature of `data`."""
        if len(signature) != SIGNATURE_BYTES:
            raise SignatureError(f"signature must be {SIGNATURE_BYTES} bytes, got {len(signature)}")
        try:  # libsodium: about half the CPU of OpenSSL's Ed25519, the dearest step of an invocation
            sodium.crypto_sign_open(signature + data, self.raw)
        except CryptoError:
            raise SignatureError(f"bad signature for key {self.key_id[:12]}") from None


class KeyPair:
    """An Ed25519 private key with its public half."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public = PublicKey(raw)
        seed = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        self._sodium_secret = seed + raw  # libsodium's secret key form: seed, then public key

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """A deterministic key from a 32-byte seed (simulations and tests)."""
        return cls(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))

    @property
    def node_id(self) -> bytes:
        return self.public.node_id

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def private_key(self) -> Ed25519PrivateKey:
        """The key object itself, for what must hold it (`p2pfaas.tls` signs the node's certificate)."""
        return self._private

    def sign(self, data: bytes) -> bytes:
        signed: bytes = sodium.crypto_sign(data, self._sodium_secret)  # signature, then data
        return signed[:SIGNATURE_BYTES]

    # --- files ---------------------------------------------------------------------------------

    def save(self, path: Path, *, overwrite: bool = False) -> None:
        """Write the private key (PEM) to `path` with mode 0600, and the public key beside it (.pub)."""
        path = Path(path).expanduser()
        if path.exists() and not overwrite:
            raise KeyFileError(f"{path} exists; refusing to overwrite a key")
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by umask, and ignored for an existing file
            os.write(fd, pem)
        finally:
            os.close(fd)
        path.with_suffix(path.suffix + ".pub").write_text(self.public.raw.hex() + "\n")

    @classmethod
    def load(cls, path: Path) -> KeyPair:
        path = Path(path).expanduser()
        try:
            st = path.stat()
            data = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"{path} is readable by others (mode {st.st_mode & 0o777:o}); chmod 600 it")
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path} is not a PEM private key: {exc}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise KeyFileError(f"{path} holds a {type(private).__name__}, not an Ed25519 key")
        return cls(private)

    @classmethod
    def load_or_create(cls, path: Path) -> KeyPair:
        path = Path(path).expanduser()
        if path.exists():
            return cls.load(path)
        keys = cls.generate()
        keys.save(path)
        return keys
