"""The shim's side of the wire: frames read from a connection, answers written to it, requests
checked. STANDARD LIBRARY ONLY (see `shim.py`).

A frame is a 4-byte big-endian length followed by that many bytes; a message is two frames, a JSON
header then a raw body, and an answer may carry a third frame, the call's output (`shim.py` says
what each header holds). What this does not do: run anything, or decide what a request means
beyond its op.
"""

from __future__ import annotations

import json
import socket
import struct

TYPE_CHECKING = False  # mypy takes this name as typing.TYPE_CHECKING; importing typing costs a cold start
if TYPE_CHECKING:
    from typing import Any

    Header = dict[str, Any]

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024

_LENGTH = struct.Struct(">I")
_CHUNK = 64 * 1024  # bytes asked of one recv; results up to this size go out in one send


class ProtocolError(Exception):
    """The peer broke the framing; the connection is dropped, the shim carries on."""


class Receiver:
    """Frames from one connection, read in chunks: a whole request (header and payload frames)
    usually arrives in one `recv`, not four."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._buf = bytearray()

    def _fill(self, size: int, *, at_frame_start: bool) -> bool:
        """At least `size` bytes buffered (True), or False on a clean end of stream before a frame."""
        buf = self._buf
        while len(buf) < size:
            chunk = self._conn.recv(min(max(size - len(buf), _CHUNK), 1 << 20))
            if not chunk:
                if at_frame_start and not buf:
                    return False
                raise ProtocolError("connection closed in the middle of a frame")
            buf += chunk
        return True

    def frame(self, *, max_bytes: int, at_message_start: bool = False) -> bytes | None:
        """One frame's bytes; None on a clean end of stream at a message boundary."""
        if not self._fill(_LENGTH.size, at_frame_start=at_message_start):
            return None
        (size,) = _LENGTH.unpack_from(self._buf)
        if size > max_bytes:
            raise ProtocolError(f"frame of {size} bytes exceeds the limit of {max_bytes}")
        end = _LENGTH.size + size
        self._fill(end, at_frame_start=False)
        data = bytes(self._buf[_LENGTH.size : end])
        del self._buf[:end]
        return data


def send_message(conn: socket.socket, header: Header, body: bytes, logs: bytes = b"") -> None:
    if logs:
        header["logs"] = len(logs)
    raw = json.dumps(header, separators=(",", ":")).encode()
    framed = _LENGTH.pack(len(raw)) + raw + _LENGTH.pack(len(body))
    tail = _LENGTH.pack(len(logs)) + logs if logs else b""
    if len(body) <= _CHUNK:
        conn.sendall(framed + body + tail)  # one send: one wakeup of the host
    else:
        conn.sendall(framed)
        conn.sendall(body)  # separately, so a large result is not copied once more
        if tail:
            conn.sendall(tail)


def parse_request(raw: bytes) -> str:
    """A request header's op (`invoke` or `ping`); `ProtocolError` for anything else."""
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"request header is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported request header {header!r:.200}")
    op = header.get("op")
    if op not in ("invoke", "ping"):
        raise ProtocolError(f"unknown op {op!r:.100}")
    return str(op)
