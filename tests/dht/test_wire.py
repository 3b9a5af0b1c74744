"""The DHT's wire messages: each round-trips through the codec, and bytes outside their shapes and size
limits are refused with `DecodeError`, the only error `codec.decode` raises on untrusted bytes."""

from __future__ import annotations

import msgpack
import pytest

from p2pfaas import codec
from p2pfaas.codec import Message
from p2pfaas.dht import wire
from p2pfaas.errors import DecodeError

CONTACT = wire.Contact(b"\x05" * 20, "10.0.0.1", 4000)
CAPACITY = wire.Capacity(("python3.11",), 4, 8192, 3, 10, 20, 0.25, (0.01, 0.02, 0.001), 0.3, False)
RECORD = wire.Record(b"\x07" * 20, 3, 2e9, "10.0.0.2", 8000, CAPACITY, b"k" * 32, b"s" * 64)
SIGNED = {"signer": b"k" * 32, "signature": b"s" * 64}

EVERY_MESSAGE: list[Message] = [
    CONTACT,
    CAPACITY,
    wire.Capacity(("nodejs",), 1, 512, 0, 0, 0, 0.0, (), 0.0, True, unpaid="owners", url="http://r:1/n"),
    RECORD,
    wire.Record(b"\x07" * 20, 1, 2e9, "h", 1, None, b"k" * 32, b"s" * 64),
    wire.Ping(b"\x01" * 8, False, **SIGNED),
    wire.FindNode(b"\x02" * 8, True, b"\x03" * 20, **SIGNED),
    wire.FindValue(b"\x04" * 8, False, b"\x03" * 20, b"\x09" * 20, **SIGNED),
    wire.Store(b"\x06" * 8, False, RECORD, **SIGNED),
    wire.Reply(b"\x08" * 8, (0.1, 0.2, 0.01), 0.5, (CONTACT,) * 3, (RECORD,), True, False, **SIGNED),
]


def test_every_dht_message_is_in_the_list_below() -> None:
    declared = {cls for cls in codec.registered() if cls.__module__ == wire.__name__}
    assert declared == {type(msg) for msg in EVERY_MESSAGE}


@pytest.mark.parametrize("msg", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_each_message_round_trips_through_the_codec(msg: Message) -> None:
    data = codec.encode(msg)
    assert codec.decode(data) == msg
    assert codec.decode_as(type(msg), data) == msg
    assert codec.encode(codec.decode(data)) == data  # one canonical encoding


def test_a_capacity_without_its_optional_tail_encodes_as_before_the_tail_existed() -> None:
    assert len(msgpack.unpackb(codec.encode(CAPACITY))) == 2 + 10
    assert len(msgpack.unpackb(codec.encode(EVERY_MESSAGE[2]))) == 2 + 12


def _tampered(msg: Message, index: int, value: object) -> bytes:
    """`msg` on the wire with its field `index` (0 = the first field) replaced by `value`."""
    fields = msgpack.unpackb(codec.encode(msg))
    fields[2 + index] = value
    data: bytes = msgpack.packb(fields, use_bin_type=True)
    return data


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (_tampered(CONTACT, 0, b"\x05" * 19), "20-byte id"),  # ids are exactly 20 bytes
        (_tampered(CONTACT, 0, b"\x05" * 21), "exceeds"),
        (_tampered(CONTACT, 2, 0), "port"),
        (_tampered(CONTACT, 2, 65536), "port"),
        (_tampered(CONTACT, 1, "h" * 65), "exceeds"),  # Host is at most 64 characters
        (_tampered(CAPACITY, 1, -1), ">= 0"),  # negative cores
        (_tampered(CAPACITY, 0, ["r"] * 9), "exceed"),  # at most 8 runtimes
        (_tampered(RECORD, 6, b"k" * 33), "exceeds"),  # a signer is a 32-byte key
        (_tampered(wire.Ping(b"\x01" * 8, False, **SIGNED), 0, b"\x01" * 9), "exceeds"),  # rpc ids: 8 bytes
        (_tampered(wire.Ping(b"\x01" * 8, False, **SIGNED), 1, 1), "expected bool"),
    ],
)
def test_a_malformed_message_is_refused_with_decode_error(data: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment):
        codec.decode(data)


def test_a_reply_with_more_contacts_or_records_than_allowed_is_refused() -> None:
    reply = wire.Reply(b"\x08" * 8, (), 0.0, (), (), False, False, **SIGNED)
    contact_wire = msgpack.unpackb(codec.encode(CONTACT))
    record_wire = msgpack.unpackb(codec.encode(RECORD))
    ok = _tampered(reply, 3, [contact_wire] * wire.MAX_CONTACTS)
    assert len(codec.decode_as(wire.Reply, ok).contacts) == wire.MAX_CONTACTS
    with pytest.raises(DecodeError, match="exceed"):
        codec.decode(_tampered(reply, 3, [contact_wire] * (wire.MAX_CONTACTS + 1)))
    with pytest.raises(DecodeError, match="exceed"):
        codec.decode(_tampered(reply, 4, [record_wire] * (wire.MAX_RECORDS_PER_REPLY + 1)))


def test_a_request_decoded_as_a_reply_is_refused() -> None:
    with pytest.raises(DecodeError, match="expected Reply, got Ping"):
        codec.decode_as(wire.Reply, codec.encode(EVERY_MESSAGE[5]))


def test_the_request_types_are_the_four_requests() -> None:
    assert set(wire.REQUEST_TYPES) == {wire.Ping, wire.FindNode, wire.FindValue, wire.Store}
    assert wire.Reply not in wire.REQUEST_TYPES
