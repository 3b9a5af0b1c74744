"""Host side of the runtime shim protocol: one persistent asyncio connection to one shim.

The framing is defined in `runtime/shim.py` (length-prefixed JSON header, then a raw body). This
module speaks it over `asyncio.open_unix_connection` and validates everything it reads: the
function runs in the shim's process and can write anything to the socket, so responses are
untrusted, size-capped, and a malformed one breaks the connection with `ExecutorError`.

It does not start, kill or diagnose instances (the warm pool and the executors do), and it sends
one request at a time: after a timeout, cancellation or error the connection is out of step with
the shim and refuses further use (`broken`); the owner must replace the instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from p2pfaas.clock import off_loop
from p2pfaas.errors import ExecutorError, InvokeTimeout, LocalError
from p2pfaas.exec.base import ExecResult

PROTOCOL_VERSION = 1
DEFAULT_MAX_RESPONSE_BYTES = 6 * 1024 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# The shim caps tracebacks at 32k characters; JSON escaping can grow that a few times over.
MAX_HEADER_BYTES = 256 * 1024
MAX_LOG_BYTES = 64 * 1024 + 256  # the shim keeps 64 KiB of a call's output, then a line on what it dropped
_CLOSE_TIMEOUT_S = 1.0

_LENGTH = struct.Struct(">I")
_TEXT_FIELDS = ("error_type", "error_message", "traceback")


def _framed_header(op: str) -> bytes:
    header = json.dumps({"v": PROTOCOL_VERSION, "op": op}).encode()
    return _LENGTH.pack(len(header)) + header


# The request headers are constant: framed once, not per invocation.
_REQUEST_HEADERS = {op: _framed_header(op) for op in ("invoke", "ping")}


class ShimConnection:
    """An open connection to a shim. Driven by its owner: one `invoke` or `ping` at a time."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_response_bytes = max_response_bytes
        self._max_payload_bytes = max_payload_bytes
        self._in_flight = False
        self.broken = False  # out of step with the shim: never use again
        self.lost = False  # the shim's end went away (closed, reset): the instance likely died

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        timeout_s: float,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> ShimConnection:
        """Connect to the shim listening at `path`; `ExecutorError` if nothing accepts there."""
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_unix_connection(str(path))
        except (OSError, TimeoutError) as exc:
            raise ExecutorError(f"cannot connect to the runtime at {path}: {exc!r}") from exc
        return cls(reader, writer, max_response_bytes=max_response_bytes, max_payload_bytes=max_payload_bytes)

    async def invoke(self, payload: bytes, *, timeout_s: float) -> ExecResult:
        """Run the function on `payload`. `InvokeTimeout` after `timeout_s`; `ExecutorError` if the
        connection breaks or the answer is malformed. The function's own errors come back as
        `ExecResult(ok=False)`."""
        if len(payload) > self._max_payload_bytes:
            limit = self._max_payload_bytes
            raise LocalError(f"payload of {len(payload)} bytes exceeds the limit of {limit}")
        return await self._roundtrip("invoke", payload, timeout_s=timeout_s)

    async def ping(self, *, timeout_s: float) -> None:
        """Check that the shim answers (it imports the handler before it listens)."""
        result = await self._roundtrip("ping", b"", timeout_s=timeout_s)
        if not result.ok:
            raise ExecutorError(f"runtime refused ping: {result.error_type}: {result.error_message}")

    async def aclose(self) -> None:
        self.broken = True
        self._writer.close()
        # The shim may already be dead; closing is best effort and must not hang teardown.
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await self._writer.wait_closed()

    async def _roundtrip(self, op: str, body: bytes, *, timeout_s: float) -> ExecResult:
        if self.broken:
            raise ExecutorError("the runtime connection is broken and cannot be reused")
        assert not self._in_flight, "one request at a time per shim connection"
        self._in_flight = True
        # Broken until a whole response has been read: a timeout, a cancellation or an error
        # anywhere below leaves an unread (or half-read) response in the stream.
        self.broken = True
        try:
            async with asyncio.timeout(timeout_s):
                # One write (one syscall, one wakeup of the shim) for the whole request.
                self._writer.writelines((_REQUEST_HEADERS[op], _LENGTH.pack(len(body)), body))
                await self._writer.drain()
                raw_header = await self._read_frame(MAX_HEADER_BYTES, what="response header")
                raw_body = await self._read_frame(self._max_response_bytes, what="result")
                header = _header(raw_header)
                logs = b""
                if header.get("logs"):  # the call printed: its output follows
                    logs = await self._read_frame(MAX_LOG_BYTES, what="call's output")
        except TimeoutError:
            raise InvokeTimeout(f"no answer from the runtime within {timeout_s:g} s") from None
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            self.lost = True
            raise ExecutorError(f"the runtime closed the connection during {op}: {exc!r}") from exc
        finally:
            self._in_flight = False
        result = parse_response(header, raw_body, logs)
        self.broken = False
        return result

    async def _read_frame(self, max_bytes: int, *, what: str) -> bytes:
        (size,) = _LENGTH.unpack(await self._reader.readexactly(_LENGTH.size))
        if size > max_bytes:
            raise ExecutorError(f"runtime sent a {what} of {size} bytes; the limit is {max_bytes}")
        return await self._reader.readexactly(size)


def _header(raw_header: bytes) -> dict[str, Any]:
    try:
        header: Any = json.loads(raw_header)
    except ValueError as exc:
        raise ExecutorError(f"runtime sent a response header that is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("v") != PROTOCOL_VERSION:
        raise ExecutorError(f"runtime sent an unsupported response header: {raw_header[:200]!r}")
    return header


def parse_response(header: dict[str, Any] | bytes, body: bytes, logs: bytes = b"") -> ExecResult:
    """Validate a response header from an untrusted shim (decoded, or its raw bytes) and build the
    result; `logs` is what the call printed (kept as text, undecodable bytes replaced)."""
    if isinstance(header, bytes):
        header = _header(header)
    ok = header.get("ok")
    duration_s = header.get("duration_s")
    texts = [header.get(name, "") for name in _TEXT_FIELDS]
    if not isinstance(ok, bool) or not all(isinstance(text, str) for text in texts):
        raise ExecutorError(f"runtime sent a malformed response header: {json.dumps(header)[:200]}")
    if (
        not isinstance(duration_s, int | float)
        or isinstance(duration_s, bool)
        or not math.isfinite(duration_s)
        or duration_s < 0
    ):
        raise ExecutorError(f"runtime sent an invalid duration_s: {duration_s!r:.50}")
    error_type, error_message, traceback = texts
    printed = logs.decode("utf-8", "replace")
    if ok:
        return ExecResult(ok=True, output=body, duration_s=float(duration_s), logs=printed)
    return ExecResult(
        ok=False,
        error_type=error_type or "Exception",
        error_message=error_message,
        traceback=traceback,
        duration_s=float(duration_s),
        logs=printed,
    )


async def connect_when_ready(
    path: Path,
    *,
    timeout_s: float,
    exit_reason: Callable[[], Awaitable[str | None]],
    check_every_s: float,
    poll_s: float = 0.02,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    on_connect: Callable[[], None] | None = None,
) -> ShimConnection:
    """Poll until the shim at `path` accepts a connection, then ping it: the shim imports the
    handler on its first request, so the ping returns once the function is loaded. Fails fast if
    `exit_reason()` reports that the runtime has died, and with `ExecutorError` after `timeout_s`
    (connecting and importing together). `exit_reason` may be costly (a Docker call): it runs at
    most every `check_every_s`. `on_connect` runs between the connection and the ping, while no
    code of the function has run yet (the Docker executor seals the socket's directory there)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    next_check = loop.time() + check_every_s
    while True:
        try:
            connection = await ShimConnection.open(
                path, timeout_s=max(deadline - loop.time(), poll_s), max_response_bytes=max_response_bytes
            )
            break
        except ExecutorError as exc:
            last_error = exc
        now = loop.time()
        if now >= next_check or now >= deadline:
            reason = await exit_reason()
            if reason is not None:
                raise ExecutorError(f"the runtime exited during startup: {reason}")
            next_check = now + check_every_s
        if now >= deadline:
            raise ExecutorError(f"the runtime did not start within {timeout_s:g} s ({last_error})")
        await asyncio.sleep(poll_s)
    try:
        if on_connect is not None:
            on_connect()
        with off_loop():  # it waits on the shim's import, not on a timer
            await connection.ping(timeout_s=max(deadline - loop.time(), poll_s))
    except BaseException as exc:
        await connection.aclose()
        if isinstance(exc, InvokeTimeout):
            raise ExecutorError(
                f"the runtime did not load the function within {timeout_s:g} s of starting"
            ) from None
        if isinstance(exc, ExecutorError):
            reason = await exit_reason()
            if reason is not None:
                raise ExecutorError(f"the runtime exited during startup: {reason}") from exc
        raise
    return connection
