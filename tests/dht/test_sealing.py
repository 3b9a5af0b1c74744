"""The datagram sealing shortcut is byte-for-byte the general signing path, and verifies the same."""

from __future__ import annotations

import dataclasses

import pytest

from p2pfaas import codec, signing
from p2pfaas.dht import wire
from p2pfaas.dht.sealing import seal, verify_datagram
from p2pfaas.errors import SignatureError
from p2pfaas.identity import KeyPair

KEYS = KeyPair.from_seed(b"sealer")


@pytest.mark.parametrize(
    "msg",
    [
        wire.Ping(b"\x01" * 8, False, b"", b""),
        wire.FindNode(b"\x02" * 8, True, b"\x03" * 20, b"", b""),
        wire.Reply(
            b"\x04" * 8,
            (0.1, 0.2, 0.01),
            0.5,
            (wire.Contact(b"\x05" * 20, "10.0.0.1", 4000),),
            (),
            False,
            True,
            b"",
            b"",
        ),
    ],
)
def test_seal_equals_sign_then_encode_and_verifies(msg: codec.Message) -> None:
    data = seal(msg, KEYS)
    assert data == codec.encode(signing.sign(msg, KEYS))
    decoded = codec.decode(data)
    verify_datagram(decoded, data)
    forged = dataclasses.replace(decoded, signer=KeyPair.from_seed(b"other").public.raw)  # type: ignore[type-var]
    with pytest.raises(SignatureError):
        verify_datagram(forged, codec.encode(forged))
    flipped = bytearray(data)
    flipped[3] ^= 1
    with pytest.raises(SignatureError):
        verify_datagram(decoded, bytes(flipped))


def test_a_signature_of_the_wrong_length_is_refused_by_the_general_path() -> None:
    data = seal(wire.Ping(b"\x01" * 8, False, b"", b""), KEYS)
    short = dataclasses.replace(codec.decode(data), signature=b"\x00" * 63)  # type: ignore[type-var]
    with pytest.raises(SignatureError):
        verify_datagram(short, codec.encode(short))
