"""Signing a DHT datagram as it is encoded, and checking one as it was received, each encoding once.

A datagram is one `wire` message whose last field is its 64-byte Ed25519 signature over the encoding with
an empty signature (`signing.py`). So `seal` encodes the message once and splices the signature into the
final field, and `verify_datagram` checks the signature against the received bytes with that field emptied,
instead of encoding the decoded message a second time; a message encoded any other way takes the general
`signing.verify` path. Both are byte-for-byte the general path (tests/dht/test_sealing.py).

Pure functions: it sends nothing and does not decode (`protocol.py` does both).
"""

from __future__ import annotations

import dataclasses

from p2pfaas import codec, signing
from p2pfaas.identity import KeyPair, PublicKey

_EMPTY_BIN = b"\xc4\x00"  # MessagePack for b"": the signature field while signing
_SIGNATURE_BIN = b"\xc4\x40"  # MessagePack header of a 64-byte bin: the signature field once signed


def seal(msg: codec.Message, keys: KeyPair) -> bytes:
    """`codec.encode(signing.sign(msg, keys))`, encoding once: the signature is the last field, so the
    signed encoding is the unsigned one with its final empty bin replaced by the 64-byte signature."""
    unsigned = codec.encode(dataclasses.replace(msg, signer=keys.public.raw, signature=b""))  # type: ignore[type-var]
    assert unsigned.endswith(_EMPTY_BIN)
    return unsigned[: -len(_EMPTY_BIN)] + _SIGNATURE_BIN + keys.sign(unsigned)


def verify_datagram(msg: codec.Message, data: bytes) -> None:
    """`signing.verify(msg)` for a message decoded from `data`, without encoding it again."""
    signature: bytes = getattr(msg, "signature")  # noqa: B009
    tail = _SIGNATURE_BIN + signature
    if len(signature) != 64 or not data.endswith(tail):
        signing.verify(msg)  # an unusual encoding: take the slow, general path
        return
    PublicKey(getattr(msg, "signer")).verify(signature, data[: -len(tail)] + _EMPTY_BIN)  # noqa: B009
