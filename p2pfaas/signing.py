"""Signing and verifying wire messages.

A signed message is a registered message whose last two fields are `signer` (raw Ed25519 public key)
and `signature`. The signature covers the message's codec encoding with `signature=b""`, so every
field, the tag and the version are bound. This module does not decide *who* may sign what: callers
check `signer` against the identity they expect.
"""

from __future__ import annotations

from typing import TypeVar

from p2pfaas import codec
from p2pfaas.identity import KeyPair, PublicKey

S = TypeVar("S", bound=codec.Message)


def signing_bytes(msg: codec.Message) -> bytes:
    """The bytes a signature covers: the encoding with an empty signature."""
    return codec.encode(codec.replace_scalar(msg, "signature", b""))


def sign(msg: S, keys: KeyPair) -> S:
    """Return `msg` with `signer` set to `keys`' public key and a fresh signature.

    The message is encoded once: the signed copy reuses the wire form the signature was made over.
    """
    unsigned = codec.replace_scalar(codec.replace_scalar(msg, "signer", keys.public.raw), "signature", b"")
    return codec.replace_scalar(unsigned, "signature", keys.sign(codec.encode(unsigned)))


def verify(msg: codec.Message) -> PublicKey:
    """Check `msg`'s signature against its own `signer`; return the signer's key or raise SignatureError."""
    signer = PublicKey(getattr(msg, "signer"))  # noqa: B009 - the field is part of the signed-message shape
    signer.verify(getattr(msg, "signature"), signing_bytes(msg))  # noqa: B009
    return signer
