"""Property tests for the wire codec: every message round-trips; random bytes never crash the decoder."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import pkgutil
import typing
from typing import Any, get_args, get_origin

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import p2pfaas
from p2pfaas import codec, messages
from p2pfaas.codec import MaxLen, Message
from p2pfaas.errors import DecodeError
from p2pfaas.money import MAX_AMOUNT_MICRO

# Wire messages live in `p2pfaas/messages.py` and in each subsystem's `wire.py` (p2pfaas/dht/wire.py,
# p2pfaas/ledger/wire.py, ...): import them all so that every registered message is tested.
for _module in pkgutil.walk_packages(p2pfaas.__path__, "p2pfaas."):
    if _module.name.rsplit(".", 1)[-1] in ("messages", "wire"):
        importlib.import_module(_module.name)

HEX = "0123456789abcdef"


def _strategy_for(hint: Any, field_name: str, cap: int | None = None) -> st.SearchStrategy[Any]:
    origin = get_origin(hint)
    if origin is typing.Annotated:
        base, *extras = get_args(hint)
        caps = [e.limit for e in extras if isinstance(e, MaxLen)]
        return _strategy_for(base, field_name, caps[0] if caps else cap)
    if origin in (typing.Union, __import__("types").UnionType):
        (inner,) = [a for a in get_args(hint) if a is not type(None)]
        return st.none() | _strategy_for(inner, field_name, cap)
    if origin is tuple:
        return st.lists(_strategy_for(get_args(hint)[0], field_name), max_size=min(cap or 4, 4)).map(tuple)
    if isinstance(hint, type) and issubclass(hint, Message):
        return message_strategy(hint)
    # Fields whose __post_init__ checks a format get values of that format.
    if field_name == "node_id" and hint is bytes:  # DHT ids (p2pfaas/dht/wire.py) are raw 20 bytes
        return st.binary(min_size=20, max_size=20)
    if field_name == "port":
        return st.integers(min_value=1, max_value=65535)
    if hint is int and (field_name in ("cores", "free_slots") or field_name.startswith("price_per_")):
        return st.integers(min_value=0, max_value=2**53)
    if field_name == "digest":
        return st.text(HEX, min_size=64, max_size=64)
    if field_name in ("node_id", "owner_key_id", "payee", "to"):
        return st.text(HEX, min_size=40, max_size=40)
    if field_name == "invocation_id":
        return st.text(min_size=1, max_size=min(cap or 64, 64))
    if field_name == "timeout_s":
        return st.floats(min_value=0.001, max_value=3600)
    if field_name.endswith("_micro"):  # amounts are positive and bounded (p2pfaas/money.py)
        return st.integers(min_value=1, max_value=MAX_AMOUNT_MICRO)
    if field_name.endswith(("_ms", "_mb")):  # usage is positive
        return st.integers(min_value=1, max_value=2**53)
    if field_name in ("warm", "queued", "capacity", "free_slots", "queue_length", "seq"):  # placement
        return st.integers(min_value=0, max_value=2**31)
    if field_name == "hops":
        return st.integers(min_value=1, max_value=8)
    if field_name == "drain_deadline_s":
        return st.floats(min_value=0.001, max_value=3600)
    if field_name == "callback_url":
        return st.sampled_from(["", "http://127.0.0.1:9/cb"])
    if field_name == "job_state":
        return st.sampled_from(["queued", "running", "done", "failed"])
    if field_name == "request_sha256":  # Receipt: a SHA-256, or absent
        return st.just(b"") | st.binary(min_size=32, max_size=32)
    if field_name == "size_bytes":
        return st.integers(min_value=1, max_value=messages.MAX_ARCHIVE_BYTES)
    if hint is str:
        return st.text(max_size=min(cap or 64, 64))
    if hint is bytes:
        return st.binary(max_size=min(cap or 64, 64))
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(min_value=-(2**63), max_value=2**64 - 1)
    if hint is float:
        return st.floats(allow_nan=False, allow_infinity=False)  # the codec refuses those
    raise AssertionError(f"no strategy for {hint}")


# Fields a message's __post_init__ constrains more than its name tells `_strategy_for`.
_FIELD_OVERRIDES: dict[type[Message], dict[str, st.SearchStrategy[Any]]] = {
    messages.SpendTicket: {
        "voucher_id": st.text(min_size=1, max_size=64),
        "request_sha256": st.binary(min_size=32, max_size=32),
    },
    messages.ChannelTicket: {
        "voucher_id": st.text(min_size=1, max_size=64),
        "seq": st.integers(min_value=1, max_value=10**15),
    },
}


def message_strategy(cls: type[Message]) -> st.SearchStrategy[Message]:
    hints = typing.get_type_hints(cls, include_extras=True)
    overrides = _FIELD_OVERRIDES.get(cls, {})
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    return st.builds(
        cls,
        **{name: overrides.get(name, _strategy_for(hints[name], name)) for name in names},
    )


ALL_MESSAGES = st.sampled_from(codec.registered()).flatmap(message_strategy)


@given(ALL_MESSAGES)
@settings(max_examples=500)
def test_every_message_round_trips(msg: Message) -> None:
    data = codec.encode(msg)
    assert codec.decode(data) == msg
    assert codec.decode_as(type(msg), data) == msg
    assert codec.encode(codec.decode(data)) == data  # deterministic encoding


@given(ALL_MESSAGES, st.data())
@settings(max_examples=300)
def test_replacing_a_scalar_reuses_the_wire_form_and_encodes_like_a_fresh_message(
    msg: Message, data: st.DataObject
) -> None:
    """The shortcut signing uses (the kept wire form with one field swapped) gives the very bytes a
    freshly built message does, for every scalar field, and leaves the original's encoding alone."""
    before = codec.encode(msg)
    for f in dataclasses.fields(msg):  # type: ignore[arg-type]
        old = getattr(msg, f.name)
        if type(old) not in (str, bytes, int, float, bool):
            continue
        value = data.draw(st.from_type(type(old)))
        if isinstance(value, float) and value != value:
            continue  # NaN is never equal to itself
        with contextlib.suppress(ValueError, TypeError, OverflowError):  # invalid, or too big for int64
            fresh = dataclasses.replace(msg, **{f.name: value})  # type: ignore[type-var]
            swapped = codec.replace_scalar(msg, f.name, value)
            assert swapped == fresh
            assert codec.encode(swapped) == codec.encode(fresh)
    assert codec.encode(msg) == before


def test_every_registered_message_is_covered() -> None:
    assert len(codec.registered()) >= 12
    assert len({cls.TAG for cls in codec.registered()}) == len(codec.registered())


@given(st.binary(max_size=2048))
@settings(max_examples=2000)
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode(data)


@given(ALL_MESSAGES, st.data())
@settings(max_examples=500)
def test_mutated_messages_raise_only_decode_error(msg: Message, data: st.DataObject) -> None:
    encoded = bytearray(codec.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(encoded) - 1))
        encoded[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    with contextlib.suppress(DecodeError):
        codec.decode(bytes(encoded[:cut]))


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
        lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids),
        max_leaves=30,
    )
)
def test_random_msgpack_values_raise_only_decode_error(value: Any) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode(msgpack.packb(value, use_bin_type=True))


def _ack_wire(*fields: Any, tag: int = messages.Ack.TAG, version: int = 1) -> bytes:
    return msgpack.packb([tag, version, *fields], use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (_ack_wire("x", tag=9999), "unknown message tag"),
        (_ack_wire("x", version=2), "version 2 is not supported"),
        (_ack_wire(), "needs 1 fields"),
        (_ack_wire(b"bytes-not-str"), "expected str"),
        (_ack_wire("x" * 2000), "exceeds"),
        (msgpack.packb(msgpack.ExtType(1, b"x")), "extension type"),
        (b"\xc1", "not valid MessagePack"),
        (b"\x91" * 100_000, "not valid MessagePack"),
        (b"", "not valid MessagePack"),
        (b"\x00" * (codec.MAX_MESSAGE_BYTES + 1), "exceeds"),
    ],
)
def test_specific_bad_inputs_name_the_problem(data: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment):
        codec.decode(data)


def test_decode_as_rejects_the_wrong_message_type() -> None:
    with pytest.raises(DecodeError, match="expected ErrorReply, got Ack"):
        codec.decode_as(messages.ErrorReply, codec.encode(messages.Ack("hi")))


def test_semantic_validation_runs_on_decode() -> None:
    bad_digest = msgpack.packb(
        [messages.InvokeRequest.TAG, 1, "id", "not-a-digest", b"{}", 1.0, None, b"k" * 32, b"s" * 64]
    )
    with pytest.raises(DecodeError, match="digest must be 64"):
        codec.decode(bad_digest)


def test_bool_is_not_accepted_as_int() -> None:
    data = msgpack.packb([messages.NodeStatus.TAG, 1, "a" * 40, "u", "e", True, True, 0, 0])
    with pytest.raises(DecodeError, match="expected int, got bool"):
        codec.decode(data)


def _receipt(**tail: Any) -> messages.Receipt:
    return messages.Receipt(
        "inv", "ab" * 32, b"l" * 32, "v1", True, 1, 2, 3, 4, b"r" * 32, 5.0, b"n" * 32, b"s" * 64, **tail
    )


def test_an_optional_tail_of_two_fields_keeps_old_encodings_and_one_canonical_form() -> None:
    ticket = messages.SpendTicket("inv", "v1", b"h" * 32, "ab" * 20, 100, b"l" * 32, b"t" * 64)
    head = msgpack.unpackb(codec.encode(_receipt()))
    assert len(head) == 2 + 13  # a receipt without either tail field encodes as it always did
    for tail in (
        {"request_sha256": b"h" * 32},
        {"ticket": ticket},
        {"request_sha256": b"h" * 32, "ticket": ticket},
    ):
        msg = _receipt(**tail)
        assert codec.decode(codec.encode(msg)) == msg
    assert msgpack.unpackb(codec.encode(_receipt(request_sha256=b"h" * 32))) == [*head, b"h" * 32]
    # The only spelling of an empty tail is none at all.
    for spelled_out in ([*head, b""], [*head, b"", None], [*head, b"h" * 32, None]):
        with pytest.raises(DecodeError, match="spells out fields at their defaults"):
            codec.decode(msgpack.packb(spelled_out, use_bin_type=True))
    # An unpaid request keeps its encoding; a ticket must be a SpendTicket.
    request = messages.InvokeRequest("i", "ab" * 32, b"{}", 1.0, None, b"k" * 32, b"s" * 64)
    assert len(msgpack.unpackb(codec.encode(request))) == 2 + 7
    wrong = [*msgpack.unpackb(codec.encode(request)), codec_wire(messages.Ack("x"))]
    with pytest.raises(DecodeError, match="expected SpendTicket, got Ack"):
        codec.decode(msgpack.packb(wrong, use_bin_type=True))


def codec_wire(msg: Message) -> Any:
    return msgpack.unpackb(codec.encode(msg))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_float_field_must_be_finite(bad: float) -> None:
    """Found by fuzzing (#22, fuzz/targets.py `codec`): a receipt decoded with issued_at NaN, which
    compares false with every bound (a NaN time passes "not after expiry"). Floats must be finite."""
    receipt = messages.Receipt(
        "i", "ab" * 32, b"k" * 32, "v", True, 1, 1, 1, 1, b"", 1234.5, b"s" * 32, b"x" * 64
    )
    wire = codec.encode(receipt)
    forged = wire.replace(msgpack.packb(1234.5), msgpack.packb(bad))
    assert forged != wire
    with pytest.raises(DecodeError, match="not a finite number"):
        codec.decode(forged)


def test_an_int_given_for_a_float_field_is_encoded_as_the_float_it_decodes_to() -> None:
    """Found by tests/node/test_lending.py: `client.invoke(..., timeout_s=5)` signed `5` as an int;
    the node decodes every float field as a float and re-encodes `5.0`, so the lessee's signature
    never verified (403). The encoding of a float field is now a float whatever it was given."""
    from p2pfaas import signing
    from p2pfaas.identity import KeyPair

    keys = KeyPair.generate()
    request = messages.InvokeRequest("i", "ab" * 32, b"{}", 5, None, signer=b"", signature=b"")
    signed = signing.sign(request, keys)
    received = codec.decode(codec.encode(signed))
    assert signing.verify(received).key_id == keys.key_id
    assert codec.encode(received) == codec.encode(signed)
