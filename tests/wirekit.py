"""The kit of the wire modules' tests: a message's encoding with one field changed on the wire, as
a hostile peer would send it (the constructor's checks never ran on it)."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack

from p2pfaas import codec


def rewired(msg: codec.Message, field: str, value: Any) -> bytes:
    """`codec.encode(msg)` with `field` set to `value` in the encoding itself."""
    names = [f.name for f in dataclasses.fields(msg)]  # type: ignore[arg-type]
    wire = msgpack.unpackb(codec.encode(msg))
    wire[2 + names.index(field)] = value  # after the tag and the version
    return bytes(msgpack.packb(wire, use_bin_type=True))
