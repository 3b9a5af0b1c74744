"""Signing and verifying wire messages.

A signed message is a registered message whose last two fields are `signer` (raw Ed25519 public key)
and `signature`. The signature covers the message's codec encoding with `signature=b""`, so every
field, the tag and the version are bound. This module does not decide *who* may sign what: callers
check `signer` against the identity they expect.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from p2pfaas import codec
from p2pfaas.identity import KeyPair, PublicKey

S = TypeVar("S", bound=codec.Message)


def signing_bytes(msg: codec.Message) -> bytes:
    """The bytes a signature covers: the encoding with an empty signature."""
    return codec.encode(dataclasses.replace(msg, signature=b""))  # type: ignore[type-var]


def sign(msg: S, keys: KeyPair) -> S:
    """Return `msg` with `signer` set to `keys`' public key and a fresh signature."""
    unsigned = dataclasses.replace(msg, signer=keys.public.raw, signature=b"")  # type: ignore[type-var]
    return dataclasses.replace(unsigned, signature=keys.sign(codec.encode(unsigned)))  # type: ignore[type-var]


def verify(msg: codec.Message) -> PublicKey:
    """Check `msg`'s signature against its own `signer`; return the signer's key or raise SignatureError."""
    signer = PublicKey(getattr(msg, "signer"))  # noqa: B009 - the field is part of the signed-message shape
    signer.verify(getattr(msg, "signature"), signing_bytes(msg))  # noqa: B009
    return signer
