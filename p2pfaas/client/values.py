"""Python values that travel safely from an untrusted node: MessagePack with typed extensions.

STANDARD LIBRARY AND MSGPACK ONLY (numpy when the value holds arrays): this file is copied as it is
into every bundle that `p2pfaas.client.callables` packs, where `encode` turns the callable's return
value into bytes inside the sandbox; the lessee's client turns them back with `decode`.

Results come from strangers' machines, so they are never unpickled: `decode` builds only the types
below, from plain data, and a hostile node can make it raise `ValueError` (the caller turns that
into a typed error), never run code. `encode` refuses any other type with `UnencodableResult`,
naming the type and where in the value it sits.

    None, bool, int, float, str, bytes, list, dict    MessagePack's own (dicts may have any of
                                                      these keys, and tuples)
    tuple, set, frozenset, complex, int beyond 64 bits  extensions 1-5
    numpy.ndarray (numeric and bool dtypes), numpy scalars   extensions 6-7
"""

from __future__ import annotations

import functools
import math
from typing import Any

import msgpack

__all__ = ["UnencodableResult", "decode", "encode"]

TUPLE, SET, FROZENSET, COMPLEX, BIG_INT, NDARRAY, NUMPY_SCALAR = range(1, 8)
MAX_BIG_INT_HEX = 8192  # hex digits of an integer beyond 64 bits (32,768 bits)
MAX_EXT_DEPTH = 32  # tuples, sets and arrays nested in each other
MAX_SET_ITEMS = 10_000  # colliding hashes make a set quadratic to build: keep it short
# Dtypes an array may have: numbers and booleans, little- or big-endian. Never object ("O"), whose
# items would be pickled, nor structured or string dtypes.
_KINDS = frozenset("biufc")
_MAX_ITEMSIZE = 16


class UnencodableResult(TypeError):
    """The function returned a value that cannot travel safely (raised inside the sandbox)."""


def encode(value: Any) -> bytes:
    """`value` as MessagePack bytes; raises `UnencodableResult` for a type outside the table."""
    data: bytes = msgpack.packb(value, default=_default, strict_types=True, use_bin_type=True)
    return data


def decode(data: bytes) -> Any:
    """The value `encode` made; raises `ValueError` for bytes that are not one."""
    value = _Decoder(budget=2 * len(data) + 1024).decode(data, depth=0)
    _check_types(value)
    return value


class _Decoder:
    """One decode: extensions nest at most MAX_EXT_DEPTH deep (each level is a C call into Python:
    bounded before the C stack is), and their payloads, which nesting makes the decoder read once per
    level, total at most `budget` bytes (so nesting cannot multiply memory)."""

    def __init__(self, *, budget: int) -> None:
        self.budget = budget

    def decode(self, data: bytes, *, depth: int) -> Any:
        if depth > MAX_EXT_DEPTH:
            raise ValueError(f"the value nests more than {MAX_EXT_DEPTH} tuples, sets or arrays")
        try:
            return msgpack.unpackb(
                data, ext_hook=functools.partial(self.ext, depth + 1), raw=False, strict_map_key=False
            )
        except RecursionError:
            raise ValueError("the value is nested too deeply") from None
        except ValueError:
            raise
        except Exception as error:  # msgpack raises several types; unhashable keys raise TypeError
            raise ValueError(f"not a p2pfaas value: {type(error).__name__}: {error}") from None

    def ext(self, depth: int, code: int, data: bytes) -> Any:
        self.budget -= len(data)
        if self.budget < 0:
            raise ValueError("the value's extensions hold more bytes than the value itself")
        if code == BIG_INT:
            return _big_int(data)
        inner = self.decode(data, depth=depth)
        if code in (TUPLE, SET, FROZENSET):
            if not isinstance(inner, list):
                raise ValueError(f"extension {code} holds {type(inner).__name__}, not a list")
            if code != TUPLE and len(inner) > MAX_SET_ITEMS:  # hashing colliding keys is quadratic
                raise ValueError(f"a set of more than {MAX_SET_ITEMS} items")
            return tuple(inner) if code == TUPLE else set(inner) if code == SET else frozenset(inner)
        if code == COMPLEX:
            if not (isinstance(inner, list) and len(inner) == 2 and all(isinstance(x, float) for x in inner)):
                raise ValueError("a complex number is two floats")
            return complex(inner[0], inner[1])
        if code in (NDARRAY, NUMPY_SCALAR):
            return _array(code, inner)
        raise ValueError(f"unknown extension type {code}")


_PLAIN = (type(None), bool, int, float, str, bytes, complex)


def _check_types(value: Any) -> None:
    """Only the table's types came back (MessagePack's own timestamps, for one, are not in it)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _PLAIN) and type(item) in _PLAIN:
            continue
        if type(item) in (list, tuple, set, frozenset):
            stack.extend(item)
        elif type(item) is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
        elif type(item).__module__.split(".")[0] != "numpy":  # arrays were checked by `_array`
            raise ValueError(f"a {type(item).__name__} is not a p2pfaas value")


def _default(value: Any) -> Any:
    numpy = _numpy_of(value)  # first: numpy.float64 is a float, numpy.bool_ is not a bool
    if numpy is not None:
        if isinstance(value, numpy.ndarray) and value.dtype.kind in _KINDS:
            array = numpy.ascontiguousarray(value)
            return msgpack.ExtType(NDARRAY, encode([array.dtype.str, list(array.shape), array.tobytes()]))
        if isinstance(value, numpy.generic) and value.dtype.kind in _KINDS:
            return msgpack.ExtType(NUMPY_SCALAR, encode([value.dtype.str, value.tobytes()]))
    if isinstance(value, tuple):
        return msgpack.ExtType(TUPLE, encode(list(value)))
    if isinstance(value, frozenset):
        return msgpack.ExtType(FROZENSET, encode(list(value)))
    if isinstance(value, set):
        return msgpack.ExtType(SET, encode(list(value)))
    if isinstance(value, complex):
        return msgpack.ExtType(COMPLEX, encode([value.real, value.imag]))
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return int(value)  # an int subclass, such as an IntEnum: its plain value
        if int(value).bit_length() > 4 * MAX_BIG_INT_HEX:
            raise UnencodableResult(f"an integer of {int(value).bit_length()} bits is too large to travel")
        return msgpack.ExtType(BIG_INT, format(int(value), "x").encode())
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    raise UnencodableResult(
        f"a {kind} cannot travel back from a node (results are never pickled): return None, bool, int, "
        "float, str, bytes, lists, tuples, sets, dicts, complex numbers or numeric numpy arrays"
    )


def _numpy_of(value: Any) -> Any:
    if type(value).__module__.split(".")[0] != "numpy":
        return None
    import numpy

    return numpy


def _big_int(data: bytes) -> int:
    text = data.decode("ascii", "replace")
    digits = text[1:] if text[:1] == "-" else text
    if not (0 < len(digits) <= MAX_BIG_INT_HEX and all(c in "0123456789abcdef" for c in digits)):
        raise ValueError(f"a big integer is up to {MAX_BIG_INT_HEX} lowercase hex digits")
    value = int(text, 16)
    if -(2**63) <= value < 2**64:
        raise ValueError("a big integer extension holds an integer MessagePack carries itself")
    return value


def _array(code: int, inner: Any) -> Any:
    import numpy

    if code == NDARRAY:
        if not (isinstance(inner, list) and len(inner) == 3):
            raise ValueError("an array is [dtype, shape, bytes]")
        dtype_str, shape, raw = inner
        if not (
            isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape) and len(shape) <= 32
        ):
            raise ValueError("an array's shape is up to 32 non-negative integers")
    else:
        if not (isinstance(inner, list) and len(inner) == 2):
            raise ValueError("a numpy scalar is [dtype, bytes]")
        dtype_str, raw = inner
        shape = []
    if not (isinstance(dtype_str, str) and len(dtype_str) <= 8 and isinstance(raw, bytes)):
        raise ValueError("an array's dtype is a short string and its data bytes")
    try:
        dtype = numpy.dtype(dtype_str)
    except TypeError:
        raise ValueError(f"unknown dtype {dtype_str!r}") from None
    if dtype.kind not in _KINDS or dtype.itemsize > _MAX_ITEMSIZE or dtype.fields is not None:
        raise ValueError(f"dtype {dtype_str!r} is not a number or a boolean")
    if math.prod(shape) * dtype.itemsize != len(raw):
        raise ValueError(f"{len(raw)} bytes do not make an array of shape {shape} and dtype {dtype_str}")
    array = numpy.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return array if code == NDARRAY else array[()]
