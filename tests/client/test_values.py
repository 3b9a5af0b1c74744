"""Values that travel back from untrusted nodes (`p2pfaas.client.values`): what round-trips, what
is refused at the source, and that hostile bytes only ever raise ValueError, never run code."""

from __future__ import annotations

import enum
import pickle
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pfaas.client import values
from p2pfaas.client.values import UnencodableResult, decode, encode

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
hashables = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=4
)
trees = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.sets(hashables, max_size=4)
        | st.complex_numbers(allow_nan=False)
    ),
    max_leaves=12,
)


@given(trees)
def test_every_value_of_the_table_round_trips(value: Any) -> None:
    back = decode(encode(value))
    assert back == value and type(back) is type(value)


def test_arrays_and_numpy_scalars_round_trip_with_dtype_and_shape() -> None:
    for array in (
        np.arange(12, dtype=np.int64).reshape(3, 4),
        np.linspace(0, 1, 7, dtype=np.float32),
        np.array([[True, False]]),
        np.zeros((0, 3), dtype=">f8"),
        np.arange(6, dtype=np.complex128)[::2],  # not contiguous
    ):
        back = decode(encode({"a": array}))["a"]
        assert back.dtype == array.dtype and back.shape == array.shape and (back == array).all()
        assert back.flags.writeable
    scalar = decode(encode(np.float64(2.5)))
    assert isinstance(scalar, np.float64) and scalar == 2.5


class Colour(enum.IntEnum):
    RED = 1


def test_subclasses_travel_as_their_base_and_other_types_are_refused_by_name() -> None:
    assert decode(encode([Colour.RED, 2**70, -(2**80)])) == [1, 2**70, -(2**80)]
    for value, named in [
        (object(), "builtins.object"),
        (np.array([object()]), "numpy.ndarray"),
        (Path("/"), "Path"),
    ]:
        with pytest.raises(UnencodableResult, match=named):
            encode(value)


def test_a_pickle_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> Any:
            return (Path.touch, (marker,))

    crafted = pickle.dumps(Exploit())
    for data in (crafted, msgpack.packb(msgpack.ExtType(values.TUPLE, crafted)), msgpack.packb([crafted])):
        try:
            decoded = decode(data)
        except ValueError:
            continue
        assert decoded == [crafted]  # bytes stay bytes
    assert not marker.exists()


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb(msgpack.ExtType(99, b"")),  # unknown extension
        msgpack.packb(msgpack.ExtType(values.NDARRAY, msgpack.packb(["|O", [1], b"\0" * 8]))),  # object dtype
        msgpack.packb(msgpack.ExtType(values.NDARRAY, msgpack.packb(["<f8", [2], b"\0" * 8]))),  # short data
        msgpack.packb(msgpack.ExtType(values.NDARRAY, msgpack.packb(["<U4", [1], b"\0" * 16]))),  # strings
        msgpack.packb(msgpack.ExtType(values.NDARRAY, msgpack.packb(["<f8", [-1], b""]))),  # negative shape
        msgpack.packb(msgpack.ExtType(values.BIG_INT, b"1" * 10_001)),  # too many digits
        msgpack.packb(msgpack.ExtType(values.BIG_INT, b"12a")),  # fits 64 bits: not a big int
        msgpack.packb(msgpack.ExtType(values.BIG_INT, b"12G")),
        b"\xd6\xff\x00\x00\x00\x01",  # a MessagePack timestamp: not in the table
        msgpack.packb(msgpack.ExtType(values.SET, msgpack.packb(list(range(10_001))))),  # too long a set
        msgpack.packb(msgpack.ExtType(values.COMPLEX, msgpack.packb([1]))),
        msgpack.packb(msgpack.ExtType(values.SET, msgpack.packb({"a": 1}))),
        msgpack.packb({msgpack.ExtType(values.SET, msgpack.packb([[1]])): 1}),  # unhashable set item
        b"\xc1",  # a byte MessagePack never uses
        b"\x92\x01",  # truncated
    ],
)
def test_hostile_bytes_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode(data)


def test_nesting_cannot_multiply_memory_and_huge_ints_do_not_travel() -> None:
    data = encode(b"x" * 100_000)
    for _ in range(30):  # within the depth bound, but each level re-reads the whole payload
        data = msgpack.packb(msgpack.ExtType(values.TUPLE, b"\x91" + data))
    with pytest.raises(ValueError, match="more bytes than the value itself"):
        decode(data)
    assert decode(encode(-(2**5000))) == -(2**5000)  # past Python's 4,300-digit str limit: hex
    with pytest.raises(UnencodableResult, match="too large"):
        encode(2**40_000)


def test_deep_nesting_raises_value_error() -> None:
    data = encode(1)
    for _ in range(5_000):
        data = msgpack.packb(msgpack.ExtType(values.TUPLE, b"\x91" + data))
    with pytest.raises(ValueError):
        decode(data)
