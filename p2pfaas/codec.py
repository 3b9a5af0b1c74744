"""The wire codec: typed, versioned, frozen dataclasses <-> MessagePack bytes.

Every message on the wire is a frozen dataclass registered here with `@message(tag)`. It is encoded as
a MessagePack array `[tag, version, field1, field2, ...]`; nested messages are encoded the same way.
Field types are limited to `int`, `float`, `bool`, `str`, `bytes`, `X | None`, `tuple[X, ...]` and
other registered messages; `Annotated[str | bytes | tuple, MaxLen(n)]` caps a field's length.

Decoding untrusted bytes checks the overall size, the MessagePack limits, the tag, the version, every
field's type and every length cap (floats must be finite: no NaN, no infinity), and raises only
`DecodeError`. It never executes anything chosen by
the peer: no pickle, no extension types, no `getattr` on remote names.

This module knows nothing of HTTP, signatures or the meaning of any message (see `messages.py`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

import msgpack

from p2pfaas.errors import DecodeError

KiB = 1024
MiB = 1024 * KiB

MAX_MESSAGE_BYTES = 10 * MiB  # the largest message: a bundle upload (8 MiB archive + header)
DEFAULT_MAX_STR = 1 * KiB
DEFAULT_MAX_BYTES = 64 * KiB
DEFAULT_MAX_ITEMS = 256


@dataclass(frozen=True)
class MaxLen:
    """A length cap for a str (characters), bytes (octets) or tuple (items) field."""

    limit: int


class Message:
    """Base class of wire messages: subclasses are frozen dataclasses registered with `@message`."""

    TAG: ClassVar[int]
    VERSION: ClassVar[int] = 1
    # Fields added after a message was first signed: the last OPTIONAL_TAIL fields (each with a
    # default) are left off the wire while they hold their defaults, so older encodings, and
    # signatures over them, stay valid. Decoding refuses them spelled out at their defaults.
    OPTIONAL_TAIL: ClassVar[int] = 0


M = TypeVar("M", bound=Message)


# --- field schemas ------------------------------------------------------------------------------
# A schema is compiled once per message class from its type hints. Each field becomes a checker:
# `check(value_from_wire) -> python_value`, raising DecodeError with the field path on mismatch.

Checker = Callable[[Any, str], Any]


def _scalar(kind: type[Any], cap: int | None) -> Checker:
    def check(value: Any, path: str) -> Any:
        if kind is float and type(value) is int:
            value = float(value)  # MessagePack may carry an integral float as int
        if type(value) is not kind:
            raise DecodeError(f"{path}: expected {kind.__name__}, got {type(value).__name__}")
        if kind is float and not math.isfinite(value):
            # NaN compares false with everything: a NaN time or amount would slip past every bound.
            raise DecodeError(f"{path}: {value!r} is not a finite number")
        if cap is not None and len(value) > cap:  # only str and bytes carry a cap here
            raise DecodeError(f"{path}: length {len(value)} exceeds {cap}")
        return value

    return check


def _optional(inner: Checker) -> Checker:
    def check(value: Any, path: str) -> Any:
        return None if value is None else inner(value, path)

    return check


def _tuple_of(inner: Checker, cap: int) -> Checker:
    def check(value: Any, path: str) -> Any:
        if type(value) is not list:
            raise DecodeError(f"{path}: expected array, got {type(value).__name__}")
        if len(value) > cap:
            raise DecodeError(f"{path}: {len(value)} items exceed {cap}")
        return tuple(inner(item, f"{path}[{i}]") for i, item in enumerate(value))

    return check


def _nested(cls: type[Message]) -> Checker:
    def check(value: Any, path: str) -> Any:
        return _from_wire(cls, value, path)

    return check


def _compile(hint: Any, cap: int | None, owner: str) -> Checker:
    origin = get_origin(hint)
    if origin is typing.Annotated:
        base, *extras = get_args(hint)
        caps = [e.limit for e in extras if isinstance(e, MaxLen)]
        return _compile(base, caps[0] if caps else cap, owner)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) != 1 or len(get_args(hint)) != 2:
            raise TypeError(f"{owner}: only `X | None` unions are supported, not {hint}")
        return _optional(_compile(args[0], cap, owner))
    if origin is tuple:
        item_hints = get_args(hint)
        if len(item_hints) != 2 or item_hints[1] is not Ellipsis:
            raise TypeError(f"{owner}: tuples must be tuple[X, ...], not {hint}")
        return _tuple_of(_compile(item_hints[0], None, owner), cap or DEFAULT_MAX_ITEMS)
    if isinstance(hint, type) and issubclass(hint, Message):
        return _nested(hint)
    if hint is str:
        return _scalar(str, cap or DEFAULT_MAX_STR)
    if hint is bytes:
        return _scalar(bytes, cap or DEFAULT_MAX_BYTES)
    if hint in (int, float, bool):
        return _scalar(hint, None)
    raise TypeError(f"{owner}: unsupported field type {hint!r}")


@dataclass(frozen=True)
class _Schema:
    cls: type[Message]
    names: tuple[str, ...]
    checkers: tuple[Checker, ...]
    tail_defaults: tuple[Any, ...] = ()  # defaults of the last OPTIONAL_TAIL fields, in wire form
    plain: tuple[bool, ...] = ()  # per field: a scalar that goes on the wire as it is
    floats: tuple[bool, ...] = ()  # per field: declared `float` (an int given for it goes as a float)


_BY_TAG: dict[int, _Schema] = {}
_BY_CLASS: dict[type[Message], _Schema] = {}


def message(tag: int) -> Callable[[type[M]], type[M]]:
    """Register a frozen dataclass as a wire message with a unique, never reused `tag`."""

    def register(cls: type[M]) -> type[M]:
        if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):
            raise TypeError(f"{cls.__name__} must be a frozen dataclass")
        if "__slots__" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must not use slots: it keeps its wire form on itself")
        if tag in _BY_TAG:
            raise TypeError(f"tag {tag} already used by {_BY_TAG[tag].cls.__name__}")
        cls.TAG = tag
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = dataclasses.fields(cls)
        schema = _Schema(
            cls=cls,
            names=tuple(f.name for f in fields),
            checkers=tuple(_compile(hints[f.name], None, f"{cls.__name__}.{f.name}") for f in fields),
            tail_defaults=tuple(_value_to_wire(f.default) for f in fields[len(fields) - cls.OPTIONAL_TAIL :])
            if cls.OPTIONAL_TAIL
            else (),
            plain=tuple(_is_plain(hints[f.name]) for f in fields),
            floats=tuple(_unannotated(hints[f.name]) is float for f in fields),
        )
        if any(d is dataclasses.MISSING for d in schema.tail_defaults):
            raise TypeError(f"{cls.__name__}: its last {cls.OPTIONAL_TAIL} fields need defaults")
        _BY_TAG[tag] = schema
        _BY_CLASS[cls] = schema
        return cls

    return register


# --- encoding ----------------------------------------------------------------------------------


def _unannotated(hint: Any) -> Any:
    return get_args(hint)[0] if get_origin(hint) is typing.Annotated else hint


def _is_plain(hint: Any) -> bool:
    """Whether a field of this type is a scalar (str, bytes, int, float, bool) MessagePack takes as is."""
    return _unannotated(hint) in (str, bytes, int, float, bool)


_WIRE = "_codec_wire"  # where an instance keeps its wire form (messages are immutable)


def _to_wire(msg: Message) -> list[Any]:
    """The message as a MessagePack-ready list, computed once per instance and kept on it.

    Messages are frozen and hold only immutable values, so the form cannot go stale; a node encodes
    the same receipt to sign it, inside the result it signs and inside the reply it sends.
    """
    cached: list[Any] | None = msg.__dict__.get(_WIRE)
    if cached is not None:
        return cached
    schema = _BY_CLASS[type(msg)]
    out: list[Any] = [schema.cls.TAG, schema.cls.VERSION]  # fields follow in declaration order
    values = msg.__dict__
    for name, plain, is_float in zip(schema.names, schema.plain, schema.floats, strict=True):
        value = values[name]
        if is_float and type(value) is int:
            # Canonical: the decoder makes it a float, so a signature over an int here would never
            # verify again once the message is decoded (a lessee's `timeout_s=5` did just that).
            value = float(value)
        out.append(value if plain else _value_to_wire(value))
    for default in reversed(schema.tail_defaults):
        if out[-1] != default or type(out[-1]) is not type(default):
            break
        out.pop()
    object.__setattr__(msg, _WIRE, out)
    return out


def _value_to_wire(value: Any) -> Any:
    if isinstance(value, Message):
        return _to_wire(value)
    if isinstance(value, tuple):
        return [_value_to_wire(v) for v in value]
    return value


def replace_scalar(msg: M, name: str, value: Any) -> M:
    """`dataclasses.replace(msg, name=value)` for a scalar field, reusing `msg`'s wire form.

    Signing swaps one field (the signature) of an otherwise encoded message; this spares encoding
    it again and running its checks again (they passed when `msg` was made). Falls back to
    `dataclasses.replace` for a field of the optional tail or a value of another type.
    """
    schema = _BY_CLASS[type(msg)]
    i = schema.names.index(name)
    old = msg.__dict__[name]
    if (
        not schema.plain[i]
        or i >= len(schema.names) - len(schema.tail_defaults)
        or type(value) is not type(old)
    ):
        return dataclasses.replace(msg, **{name: value})  # type: ignore[type-var]
    wire = list(_to_wire(msg))
    wire[2 + i] = value
    new = object.__new__(type(msg))
    new.__dict__.update(msg.__dict__)
    object.__setattr__(new, name, value)
    object.__setattr__(new, _WIRE, wire)
    return new


def encode(msg: Message) -> bytes:
    """Encode a registered message. Encoding is deterministic: equal messages give equal bytes."""
    if type(msg) not in _BY_CLASS:
        raise TypeError(f"{type(msg).__name__} is not a registered message")
    data: bytes = msgpack.packb(_to_wire(msg), use_bin_type=True)
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"{type(msg).__name__} encodes to {len(data)} bytes, over {MAX_MESSAGE_BYTES}")
    return data


# --- decoding ----------------------------------------------------------------------------------


def _from_wire(expected: type[Message] | None, value: Any, path: str) -> Message:
    if type(value) is not list or len(value) < 2:
        raise DecodeError(f"{path}: expected a message array")
    tag, version = value[0], value[1]
    if type(tag) is not int or tag not in _BY_TAG:
        raise DecodeError(f"{path}: unknown message tag {tag!r}")
    schema = _BY_TAG[tag]
    if expected is not None and schema.cls is not expected:
        raise DecodeError(f"{path}: expected {expected.__name__}, got {schema.cls.__name__}")
    if version != schema.cls.VERSION or type(version) is not int:
        raise DecodeError(f"{path}: {schema.cls.__name__} version {version!r} is not supported")
    fields = value[2:]
    if schema.tail_defaults:
        fields = _fill_tail(schema, fields, path)
    if len(fields) != len(schema.names):
        raise DecodeError(
            f"{path}: {schema.cls.__name__} needs {len(schema.names)} fields, got {len(fields)}"
        )
    kwargs = {
        name: check(item, f"{path}.{name}")
        for name, check, item in zip(schema.names, schema.checkers, fields, strict=True)
    }
    try:
        return schema.cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a message's own __post_init__ validation
        raise DecodeError(f"{path}: invalid {schema.cls.__name__}: {exc}") from None


def _fill_tail(schema: _Schema, fields: list[Any], path: str) -> list[Any]:
    """Add the omitted defaults of the optional tail; refuse a tail not in its one canonical form."""
    tail = schema.tail_defaults
    omitted = len(schema.names) - len(fields)
    if not 0 <= omitted <= len(tail):
        return fields  # the length check names the error
    filled = [*fields, *tail[len(tail) - omitted :]]
    at_default = 0
    while at_default < len(tail):
        value, default = filled[-1 - at_default], tail[-1 - at_default]
        if value != default or type(value) is not type(default):
            break
        at_default += 1
    if omitted != at_default:
        raise DecodeError(f"{path}: {schema.cls.__name__} spells out fields at their defaults")
    return filled


def _no_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"MessagePack extension type {code} is not allowed")


def _unpack(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            ext_hook=_no_ext,
            max_str_len=MAX_MESSAGE_BYTES,
            max_bin_len=MAX_MESSAGE_BYTES,
            max_array_len=64 * KiB,
            max_map_len=KiB,
        )
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises many types (ExtraData, ValueError, UnicodeDecodeError...)
        raise DecodeError(f"not valid MessagePack: {type(exc).__name__}: {exc}") from None


def decode(data: bytes) -> Message:
    """Decode any registered message from untrusted bytes; raises only `DecodeError`."""
    try:
        return _from_wire(None, _unpack(data), "$")
    except RecursionError:
        raise DecodeError("message nested too deeply") from None


def decode_as(cls: type[M], data: bytes) -> M:
    """Decode untrusted bytes that must be a `cls`; raises only `DecodeError`."""
    try:
        msg = _from_wire(cls, _unpack(data), "$")
    except RecursionError:
        raise DecodeError("message nested too deeply") from None
    assert isinstance(msg, cls)
    return msg


def registered() -> tuple[type[Message], ...]:
    """Every registered message class (for tests that must cover them all)."""
    return tuple(schema.cls for schema in _BY_TAG.values())
