"""A call's output in the shim: what the thread running a call writes to `sys.stdout` and
`sys.stderr` is that call's, capped. STANDARD LIBRARY ONLY (see `shim.py`).

What this does not see: writes below Python's streams (`os.write(1, ...)`, a child process,
`sys.stdout.buffer`), which go to the container's own log.
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False  # mypy takes this name as typing.TYPE_CHECKING; importing typing costs a cold start
if TYPE_CHECKING:
    from typing import Any

DEFAULT_MAX_LOG_BYTES = 64 * 1024  # a call's output kept; the rest is counted and dropped


class Output:
    """What one call printed: up to `limit` bytes kept, the rest counted and dropped, so a call
    that prints a gigabyte costs its own time, not the shim's memory."""

    __slots__ = ("data", "dropped", "limit")

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.dropped = 0
        self.limit = limit

    def add(self, text: str) -> None:
        raw = text.encode("utf-8", "replace")
        room = max(self.limit - len(self.data), 0)
        if len(raw) <= room:
            self.data += raw
        else:
            self.data += raw[:room]
            self.dropped += len(raw) - room

    def encoded(self) -> bytes:
        if not self.dropped:
            return bytes(self.data)
        note = f"\n[p2pfaas: output truncated at {self.limit} bytes; {self.dropped} more bytes dropped]\n"
        return bytes(self.data) + note.encode()


calls_output = threading.local()  # .out: the `Output` of the call this thread runs, if any


class RoutedStream:
    """`sys.stdout` and `sys.stderr` in the shim: a write from a thread running a call goes to that
    call's `Output`; any other write to the real stream."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def write(self, text: str) -> int:
        out = getattr(calls_output, "out", None)
        if out is None:
            return int(self._real.write(text))
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        out.add(text)
        return len(text)

    def flush(self) -> None:
        if getattr(calls_output, "out", None) is None:
            self._real.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer: the real stream's
        return getattr(self._real, name)
